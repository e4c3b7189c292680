"""``lndeploy check``."""

from __future__ import annotations

import sys

import click

from lndeploy.cli.options import FINITE_NONNEGATIVE, MAX_SAMPLES, MAX_SEED, debug_flag
from lndeploy.parity import format_stat
from lndeploy.plugin_spec import MIN_OPSET


@click.command("check")
@click.argument("model", required=False)
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), help="An exported ONNX file to check.")
@click.option("--engine", type=click.Path(dir_okay=False), help="A TensorRT engine to check.")
@click.option("--backend", type=click.Choice(["onnxruntime", "onnx-reference", "tensorrt"]),
              help="What runs the artifact [default: onnxruntime for ONNX, tensorrt for engines].")
@click.option("--atol", type=FINITE_NONNEGATIVE, help="Max abs error allowed on every element [default: 1e-4 fp32, 1e-2 fp16/bf16].")
@click.option("--rtol", type=FINITE_NONNEGATIVE, help="Also pass elements within this relative error (not gated by default).")
@click.option("--samples", type=click.IntRange(min=1, max=MAX_SAMPLES),
              help=f"Input sets to run, at most {MAX_SAMPLES} [default: one per size combination].")
@click.option("--seed", type=click.IntRange(min=0, max=MAX_SEED), default=0, show_default=True,
              help="Seed of the generated inputs (0 to 2**32-1).")
@click.option("--report", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write a JSON report here (also on failure); '-' prints it to stdout, the rest to stderr.")
@click.option("--ln", type=click.Choice(["native", "plugin"]),
              help="When exporting: LN as native node or plugin node [default: native; with an artifact: its own].")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]),
              help="When exporting: the precision plan [default: fp32; with an artifact: its own]. Sets the default atol.")
@click.option("--opset", type=click.IntRange(min=1),
              help=f"When exporting: the ONNX opset (>= {MIN_OPSET}) [default: 18].")
@click.option("--url", help="A KServe v2 server (http://HOST:PORT or grpc://HOST:PORT) that serves the artifact.")
@click.option("--model-name", help="With --url: the served model's name.")
@click.option("--layers", type=click.Choice(["norms", "all"]), is_flag=False, flag_value="norms",
              help="Compare intermediate tensors with PyTorch's modules also when the check passes: every "
                   "normalization (--layers, --layers norms) or every module (--layers all). A failed check "
                   "always compares the normalizations.")
@click.option("--plots", type=click.Path(file_okay=False), help="Write PNGs of the error here (needs matplotlib).")
@click.option("--budget", type=click.Choice(["auto", "fixed"]),
              help="auto: pass within max(atol, 3 x PyTorch's own fp16/bf16 error on the same inputs); fixed: "
                   "atol alone [default: auto for fp16/bf16 without --atol, else fixed].")
@click.option("--plugin-impl", type=click.Choice(["onnx", "kernel"]),
              help="What runs plugin nodes on the CPU: onnx (ONNX's LayerNormalization) or kernel (lndeploy's "
                   "Triton kernel under the Triton interpreter; on --backend onnx-reference) [default: onnx].")
@click.option("--config", type=click.Path(dir_okay=False),
              help="A TOML matrix (models x precisions x LN forms x backends) checked in one process; replaces MODEL (docs/ci.md).")
@click.option("--junit", type=click.Path(dir_okay=False), help="Write JUnit XML: one test case per cell and output.")
@click.option("--summary", type=click.Path(dir_okay=False),
              help="Write a Markdown table of the cells (also appended to $GITHUB_STEP_SUMMARY when set).")
@click.option("--inputs", type=click.Path(), help="Input sets to use as given: FILE.npz, FILE.npy (one input) or a folder of them.")
@click.option("--save-outputs", type=click.Path(file_okay=False),
              help="Write PyTorch's outputs and the inputs used to this folder (for --golden).")
@click.option("--golden", type=click.Path(file_okay=False),
              help="Compare --onnx/--engine against a --save-outputs folder instead of PyTorch (no torch needed; no MODEL).")
@click.pass_context
def command(ctx, model, onnx_path, engine, backend, atol, rtol, samples, seed, report, ln, precision, opset, url,
            model_name, layers, plots, budget, plugin_impl, config, junit, summary, inputs, save_outputs, golden):
    """Run MODEL in PyTorch and its deployed artifact on the same generated inputs; compare every output.

    Without --onnx or --engine, MODEL is exported first (with --ln, --precision, --opset). Inputs vary
    every dynamic dim (batch 1 and 3; other dynamic dims 1, 7 and 64). Exit 0 when every output is
    within tolerance on every sample, 1 when not, 2 on bad input, 3 when the backend cannot run here.

    \b
    Example:
      lndeploy check models/rnn.py --report report.json
      lndeploy check models/cnn.py --onnx cnn.onnx --atol 1e-5
      lndeploy check models/transformer.py --onnx t.onnx --plots plots --layers
      lndeploy check models/rnn.py --url http://127.0.0.1:8000 --model-name rnn
      lndeploy check models/transformer.py --precision bf16 --backend onnx-reference --budget auto
      lndeploy check models/transformer.py --ln plugin --plugin-impl kernel
      lndeploy check --config examples/zoo.toml --junit parity.xml --summary parity.md
      lndeploy check models/fnn.py --save-outputs golden/ && lndeploy check --golden golden/ --onnx fnn.onnx
    """
    import time

    from lndeploy.checker import check, ci_outputs

    echo = (lambda line: click.echo(line, err=True)) if report == "-" else click.echo
    from lndeploy.outpaths import model_file, prepare_outputs

    prepare_outputs({"--report": report, "--junit": junit, "--summary": summary},
                    {"MODEL": model_file(model) if model else None, "--config": config, "--inputs": inputs,
                     "--golden": golden, "--onnx": onnx_path, "--engine": engine})
    given = {k: v for k, v in locals().items() if v is not None and k in (*_PER_CHECK, "plots")}
    if config is not None:
        from lndeploy.checker import matrix

        _refuse(given, "--config (the config file sets it per model; docs/ci.md)", *_PER_CHECK)
        run = matrix.run(config, samples=samples, seed=seed, debug=debug_flag(ctx), plots=plots,
                         progress=lambda cell: echo(ci_outputs.progress_line(cell)))
        sys.exit(ci_outputs.finish(run, junit, summary, report, echo))
    if golden is not None:
        _refuse(given, "--golden", "inputs", "save_outputs", "ln", "precision", "opset", "url", "model_name",
                "layers", "plots", "budget", "plugin_impl")
    if golden is None and model is None:
        raise click.UsageError("give MODEL (or --config FILE.toml, or --golden DIR with --onnx/--engine)")
    if golden is not None and model is not None:
        raise click.UsageError("--golden compares against saved outputs: drop MODEL (torch is not used)")
    start = time.perf_counter()
    try:
        if golden is not None:
            from lndeploy.checker import golden as goldens

            result = goldens.check(golden, onnx=onnx_path, engine=engine, backend=backend, atol=atol, rtol=rtol,
                                   samples=samples, report=report)
        else:
            result = check(model, onnx=onnx_path, engine=engine, backend=backend, atol=atol, rtol=rtol,
                           samples=samples, report=report, ln=ln, precision=precision, opset=opset, seed=seed,
                           debug=debug_flag(ctx), url=url, model_name=model_name, layers=layers, plots=plots,
                           budget=budget, plugin_impl=plugin_impl, inputs=inputs, save_outputs=save_outputs)
    except Exception as err:
        _write_single(model or golden, backend, junit, summary, echo, error=err, seconds=time.perf_counter() - start)
        raise
    for name, stats in result.outputs.items():
        echo(f"  {name}: max abs {format_stat(stats['max_abs'])}  max rel {format_stat(stats['max_rel'])}  "
             f"mean abs {format_stat(stats['mean_abs'])}  over tolerance {stats['over_tolerance']}/{stats['elements']} "
             f"({stats['over_fraction']:.2%})" + _worst(stats))
    if result.layers:
        from lndeploy.checker.layers import describe, table

        for line in table(result.layers, result.first_divergence):
            echo(line)
        if result.first_divergence:
            echo(f"  {describe(result.first_divergence)}")
    if result.plugin_impl:
        echo(f"  plugin nodes ran on: {result.plugin_impl}")
    for note in result.notes:
        echo(f"  note: {note}")
    for skip in result.skipped:
        echo(f"  skipped sizes {skip['sizes']}: PyTorch itself fails ({skip['reason']})")
    echo(result.summary())
    for path in result.plots:
        echo(f"wrote {path}")
    if report and report != "-":
        echo(f"wrote {report}")
    if save_outputs:
        echo(f"wrote {save_outputs}")
    _write_single(model or golden, result.backend, junit, summary, echo, result=result,
                  seconds=time.perf_counter() - start)
    if not result.passed:
        sys.exit(1)


# options of one check that a --config file sets per model instead (--plots: one subfolder per cell)
_PER_CHECK = ("model", "onnx_path", "engine", "backend", "atol", "rtol", "ln", "precision", "opset", "inputs",
              "save_outputs", "golden", "url", "model_name", "layers", "budget", "plugin_impl")


def _refuse(given: dict, mode: str, *names) -> None:
    for name in names:
        if name in given:
            option = "MODEL" if name == "model" else "--" + name.replace("_path", "").replace("_", "-")
            raise click.UsageError(f"{option} does not go with {mode}")


def _write_single(model, backend, junit, summary, echo, result=None, error=None, seconds=0.0) -> None:
    """--junit/--summary of a single check: a one-cell run."""
    if junit is not None or summary is not None:
        from lndeploy.checker import ci_outputs, matrix

        for line in ci_outputs.write_all(matrix.single(model, backend or "onnxruntime", result, error, seconds),
                                         junit, summary):
            echo(line)



def _worst(stats: dict) -> str:
    """Where a failing output is worst: the element, both values, the sample."""
    if not stats["over_tolerance"] or stats.get("worst_index") is None:
        return ""
    return (f"; worst at {stats['worst_index']} (sample {stats.get('worst_sample')}): "
            f"{format_stat(stats['worst_actual'], 6)} vs PyTorch {format_stat(stats['worst_expected'], 6)}")

