"""``lndeploy fuse``."""

from __future__ import annotations

import click


@click.command("fuse")
@click.argument("input_path", metavar="IN.onnx", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The ONNX file to write.")
@click.option("--to", type=click.Choice(["native", "plugin"]), default="native", show_default=True,
              help="One LayerNormalization node per LN, or one lndeploy plugin node (existing "
                   "LayerNormalization nodes too).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Run input and output on ONNX Runtime (optimisations off for both) with the same inputs; "
                   "refuse (exit 1) a change above abs 1e-5 or rel 1e-5 (fp32).")
@click.option("--report", type=click.Path(dir_okay=False), help="Also write the report as JSON here.")
@click.option("--opset", type=click.IntRange(min=1), default=None,
              help="Opset of the output [default: the input's, raised to 17 where an LN node is made]. "
                   "23 or more lets RMS norm become RMSNormalization.")
def command(input_path, output, to, verify, report, opset):
    """Rewrite LayerNorm written as primitive ops in IN.onnx into one node.

    Finds mean / variance / eps / root chains (ReduceMean with axes as attribute or input, Pow(2) or
    Mul, Sqrt+Div, Reciprocal+Mul or Pow(-0.5)), over any set of trailing axes or over the channel
    axis of NCHW (rewritten with a Transpose on either side), folds the scale and bias that follow,
    and only where the math is the same. RMS norm becomes RMSNormalization at opset >= 23.
    Nothing is written when verification fails (exit 1).

    \b
    Example:
      lndeploy fuse legacy.onnx -o fused.onnx --report fuse.json
      lndeploy fuse legacy.onnx -o plugin.onnx --to plugin
    """
    from lndeploy.pipeline import fuse
    from lndeploy.passes.fuse.report import format_report

    result = fuse(input_path, output, to=to, verify=verify, report=report, opset=opset)
    for line in format_report(result):
        click.echo(line)
    click.echo(f"wrote {output} (opset {result.opset_before} -> {result.opset_after}, {to})")
    if report:
        click.echo(f"wrote {report}")
