"""Options and helpers shared by several commands."""

from __future__ import annotations

import click

from lndeploy.plugin_spec import MIN_OPSET

ln_option = click.option("--ln", "ln", type=click.Choice(["native", "plugin"]), default="native",
                         show_default=True, help="LayerNorm as one LayerNormalization node, or one plugin node.")
precision_option = click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32",
                                 show_default=True, help="Precision of the exported graph (LN statistics stay fp32).")
opset_option = click.option("--opset", type=int, default=18, show_default=True, help=f"ONNX opset (>= {MIN_OPSET}).")


def debug_flag(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.obj and root.obj.get("debug"))
