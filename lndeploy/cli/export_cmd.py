"""``lndeploy export``."""

from __future__ import annotations

import click

from lndeploy.cli.options import FINITE_NONNEGATIVE, debug_flag, ln_option, opset_option, precision_option


@click.command("export")
@click.argument("model")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The ONNX file to write.")
@ln_option
@precision_option
@opset_option
@click.option("--atol", type=FINITE_NONNEGATIVE, help="Verification: max abs error allowed on every element "
              "[default: 1e-4 fp32, 1e-2 fp16/bf16].")
@click.option("--rtol", type=FINITE_NONNEGATIVE, help="Verification: also pass elements within this relative "
              "error.")
@click.pass_context
def command(ctx, model, output, ln, precision, opset, atol, rtol):
    """Export MODEL (a model file, module, or FILE:FACTORY) to ONNX.

    The export is verified before it is written: onnx.checker, dynamic dims still dynamic, and ONNX
    Runtime against PyTorch at the example's sizes and at a second size of every dynamic dim.

    \b
    Example:
      lndeploy export models/cnn.py -o cnn.onnx
      lndeploy export models/rnn.py -o rnn-plugin.onnx --ln plugin
    """
    from lndeploy.pipeline import export

    result = export(model, output, ln=ln, precision=precision, opset=opset, debug=debug_flag(ctx), atol=atol,
                    rtol=rtol)
    for run in result.verification:
        worst = max(run.max_abs.values(), default=0.0)
        where = ", ".join(f"{k}={v}" for k, v in run.sizes.items()) or "example sizes"
        click.echo(f"verified against PyTorch at {where}: max abs error {worst:.2e} ({result.tolerance})")
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"wrote {output} (opset {result.opset}, ln {ln}, {precision})")
