"""``lndeploy inspect``."""

from __future__ import annotations

import json

import click


@click.command("inspect")
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def command(artifact, as_json):
    """What ARTIFACT (an .onnx file or an .engine) holds: inputs and outputs with their dynamic dims,
    LN nodes and their form (native or plugin), precision, plugins, loops.

    \b
    Example:
      lndeploy inspect cnn.onnx
      lndeploy inspect model.engine --json
    """
    from lndeploy.inspection import format_text, inspect_artifact

    info = inspect_artifact(artifact)
    click.echo(json.dumps(info, indent=2) if as_json else format_text(info))
