"""``lndeploy serve``."""

from __future__ import annotations

import click


@click.command("serve")
@click.argument("artifacts", metavar="ARTIFACT...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--port", type=click.IntRange(1, 65533), default=8000, show_default=True,
              help="HTTP port; gRPC listens on PORT+1 and metrics on PORT+2.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--max-batch", type=click.IntRange(min=0), default=8, show_default=True,
              help="Largest batch dynamic batching forms (0: no batching).")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="Model instances, each with its own session.")
@click.option("--queue-delay-us", type=click.IntRange(min=0), default=100, show_default=True,
              help="Dynamic batching: how long the server waits to fill a batch.")
@click.option("--backend", type=click.Choice(["onnxruntime", "onnx-reference", "tensorrt"]),
              help="What runs each artifact [default: onnxruntime for ONNX, tensorrt for engines].")
def command(artifacts, port, host, max_batch, instances, queue_delay_us, backend):
    """Serve ARTIFACTs (.onnx or engines) with a local Triton Inference Server, until SIGINT/SIGTERM.

    Each model is named after its file's stem and answers the KServe v2 protocol (HTTP on --port, gRPC
    on the next port; health at /v2/health/ready, metrics on --port + 2). Needs the serve extra, which
    lives in an environment of its own (PyTriton pins numpy<2): see docs/serving.md.

    \b
    Example:
      .venv-serve/bin/lndeploy serve out/transformer.onnx --port 8000
      lndeploy check models/transformer.py --url http://127.0.0.1:8000 --model-name transformer
    """
    from lndeploy.serving.server import serve

    serve(artifacts, port=port, host=host, max_batch=max_batch, instances=instances, queue_delay_us=queue_delay_us,
          backend=backend, on_ready=lambda message: click.echo(message, nl=True) or _flush())
    click.echo("stopped")


def _flush() -> None:
    import sys

    sys.stdout.flush()
