"""``lndeploy build``."""

from __future__ import annotations

import click

RUNTIME_CHOICES = ["auto", "tensorrt", "tensorrt-rtx"]


@click.command("build")
@click.argument("onnx_path", metavar="IN.onnx", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The engine to write; its JSON sidecar goes to OUTPUT.json.")
@click.option("--runtime", type=click.Choice(RUNTIME_CHOICES), default="auto", show_default=True,
              help="tensorrt (full TensorRT, needs a GPU), tensorrt-rtx (builds without a GPU), or auto: "
                   "full TensorRT if installed, else TensorRT-RTX.")
@click.option("--shapes", "shape_items", multiple=True, metavar="NAME:MIN,OPT,MAX",
              help="Size range of a dynamic dim (batch:1,8,32) or an input (x:1x16,4x16,8x16); one size fixes it "
                   "(x:4x16). Repeatable. Default: min 1, opt = max = 8 for batch dims and 64 for others.")
@click.option("--model", "model_ref", metavar="MODEL",
              help="The model file the ONNX came from: its example input sizes become the opt sizes "
                   "(loading it executes its code).")
@click.option("--arch", help="TensorRT-RTX compute capabilities, e.g. sm80,sm86,sm89,sm120, or current "
                             "[default: this GPU, or sm80,sm86,sm89,sm120 without one].")
@click.option("--timing-cache", type=click.Path(dir_okay=False),
              help="Full TensorRT: a timing cache file to reuse and update (TensorRT-RTX has none).")
@click.option("--no-progress", is_flag=True, help="Do not show build progress on stderr.")
def command(onnx_path, output, runtime, shape_items, model_ref, arch, timing_cache, no_progress):
    """Build a TensorRT engine from IN.onnx (exported by lndeploy export, or any ONNX file).

    Precision comes from the ONNX types: export with --precision fp16 for an fp16 engine. Plugin nodes
    (--ln plugin) are registered with the runtime automatically. Next to the engine, OUTPUT.json records
    the source ONNX sha256, runtime and version, targets, profiles, precision and layer types.

    \b
    Example:
      lndeploy export models/rnn.py -o rnn.onnx
      lndeploy build rnn.onnx -o rnn.engine --runtime tensorrt-rtx --arch sm86 --shapes seq:1,32,256
      lndeploy check models/rnn.py --engine rnn.engine
    """
    from lndeploy.backends.tensorrt import build_engine, parse_shapes_option

    result = build_engine(onnx_path, output, runtime=None if runtime == "auto" else runtime,
                          shapes=parse_shapes_option(shape_items), arch=arch, timing_cache=timing_cache,
                          progress=not no_progress, model=model_ref)
    for note in result.notes:
        click.echo(f"note: {note}")
    dims = ", ".join(f"{k} {v[0]}..{v[2]} (opt {v[1]})" for k, v in result.profile["dims"].items()) or "static"
    targets = ", ".join(result.targets.get("compute_capabilities", [])) or result.targets.get("gpu", {}).get("name", "")
    ln = result.precision.get("layernorm", [])
    ln_text = ", ".join(sorted({f"{l['type']} ({l['input_type']}->{l['output_type']})" for l in ln})) or "none"
    click.echo(f"profile: {dims}")
    click.echo(f"LayerNorm layers: {len(ln)} x {ln_text}; precision {result.precision['label']}")
    click.echo(f"wrote {result.engine_path} ({result.size_bytes / 1e6:.1f} MB, {result.runtime} "
               f"{result.runtime_version}, for {targets}, built in {result.seconds:.1f} s) and {result.sidecar_path}")
