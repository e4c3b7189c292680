"""Shared fixtures: run the CLI in-process (fast: torch is imported once) and find the zoo."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ZOO = ["fnn", "cnn", "rnn", "lstm", "gru", "transformer"]


@dataclass
class CliRun:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys):
    """``run_cli("check", "models/fnn.py")`` -> CliRun(code, out, err), exactly as the command exits."""
    from lndeploy.cli import main

    def run(*args) -> CliRun:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        captured = capsys.readouterr()
        return CliRun(code, captured.out, captured.err)

    return run


def zoo_model(name: str) -> str:
    return str(REPO / "models" / f"{name}.py")


@pytest.fixture(scope="session")
def zoo_export(tmp_path_factory):
    """``zoo_export(name)`` -> the ExportResult of ``export(zoo_model(name), PATH)`` (native LN, fp32,
    verified), made once per session: the zoo's default export is read by many modules and each
    export costs a second or more. Read it (``onnx.load(result.path)`` for a copy to change); never
    write to its path."""
    folder = tmp_path_factory.mktemp("zoo-exports")
    cache = {}

    def get(name: str):
        if name not in cache:
            from lndeploy.pipeline import export

            cache[name] = export(zoo_model(name), folder / f"{name}.onnx")
        return cache[name]

    return get


def naive_fp16(spec):
    """The naive fp16 plan of a model: legacy opset-16 export (LN as 9 primitive ops) + onnxconverter-common's
    plain fp16 conversion, so (x - mean)^2 overflows in fp16 on models/overflow.py. The foil that
    lndeploy's precision plan and check's budget are measured against."""
    import io
    import warnings

    import onnx
    import torch
    from onnxconverter_common import float16

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(spec.module, (spec.inputs["x"],), buffer, dynamo=False, opset_version=16,
                          input_names=["x"], output_names=["output"], dynamic_axes=spec.dynamic_axes)
        return float16.convert_float_to_float16(onnx.load_from_string(buffer.getvalue()), keep_io_types=True)


def ln_model_source(on_call: str = "", head: str = "", after_class: str = "", in_build: str = "") -> str:
    """A model file (README "The model file") around ``torch.nn.LayerNorm(8)`` on a (2, 8) example whose
    forward counts its calls in ``self.calls`` and then runs ``on_call``; ``head`` runs before the class,
    ``after_class`` after it, ``in_build`` inside ``build()``. The tests that make a model misbehave at
    one moment (a fault, a stall, a slowdown) write only that moment."""
    def block(code: str, indent: int) -> str:
        return textwrap.indent(textwrap.dedent(code).strip("\n"), " " * indent) if code.strip() else ""

    return "\n".join(line for line in [
        "import pathlib, sys, time, torch",
        block(head, 0),
        "class M(torch.nn.Module):",
        "    def __init__(self):",
        "        super().__init__()",
        "        self.ln, self.calls = torch.nn.LayerNorm(8), 0",
        "    def forward(self, x):",
        "        self.calls += 1",
        block(on_call, 8),
        "        return self.ln(x)",
        block(after_class, 0),
        "def build():",
        block(in_build, 4),
        "    return M()",
        "def example_inputs(): return (torch.randn(2, 8),)",
        "",
    ] if line != "")
