"""Options and helpers shared by several commands."""

from __future__ import annotations

import math

import click

MAX_SAMPLES = 100_000  # input sets; each is run by PyTorch and the artifact
MAX_SEED = 2**32 - 1  # numpy's seeds are non-negative

ln_option = click.option("--ln", "ln", type=click.Choice(["native", "plugin"]), default="native",
                         show_default=True, help="LayerNorm as one LayerNormalization node, or one plugin node.")
precision_option = click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32",
                                 show_default=True, help="Precision of the exported graph (LN statistics stay fp32).")
opset_option = click.option("--opset", type=click.IntRange(min=1), default=18, show_default=True,
                            help="ONNX opset (>= 17).")


def debug_flag(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.obj and root.obj.get("debug"))


class FiniteFloat(click.ParamType):
    """A finite float above ``low`` (click's FloatRange lets NaN and inf through)."""

    name = "float"

    def __init__(self, low: float, low_open: bool = False):
        self.low, self.low_open = low, low_open

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        below = number <= self.low if self.low_open else number < self.low
        if below:  # worded as click's FloatRange words it
            self.fail(f"{number} is not in the range x{'>' if self.low_open else '>='}{self.low:g}.", param, ctx)
        return number


FINITE_NONNEGATIVE = FiniteFloat(low=0.0)
FINITE_POSITIVE = FiniteFloat(low=0.0, low_open=True)
