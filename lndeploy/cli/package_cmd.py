"""``lndeploy package``."""

from __future__ import annotations

import click


@click.command("package")
@click.argument("artifacts", metavar="ARTIFACT...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--triton-repo", required=True, type=click.Path(file_okay=False),
              help="The Triton model repository to write into (created if missing).")
@click.option("--max-batch", type=click.IntRange(min=0), default=8, show_default=True,
              help="max_batch_size when every input and output starts with one dynamic dim (0: no batching).")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="Model instances (instance_group count).")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True,
              help="instance_group kind: auto (GPU when the server has one), cpu or gpu.")
@click.option("--accelerator", type=click.Choice(["none", "cuda", "tensorrt"]), default="none", show_default=True,
              help="ONNX models: ONNX Runtime's CUDA or TensorRT execution provider on the server's GPU.")
@click.option("--fp16", is_flag=True, help="With --accelerator tensorrt: FP16, LayerNorm kept fp32 "
                                           "(trt_layer_norm_fp32_fallback).")
@click.option("--queue-delay-us", type=click.IntRange(min=0), default=100, show_default=True,
              help="Dynamic batching: how long the server waits to fill a batch.")
def command(artifacts, triton_repo, max_batch, instances, device, accelerator, fp16, queue_delay_us):
    """Write a Triton Inference Server model repository: one folder per ARTIFACT (.onnx or engine).

    Each model is named after its file's stem: NAME/config.pbtxt and NAME/1/model.onnx (or model.plan).
    Inputs and outputs, data types and dims come from the artifact (an engine's from its sidecar and
    profile); each config is parsed back and checked against the artifact before its folder is renamed
    into place. Layout, GPUs and plugins: docs/serving.md.

    \b
    Example:
      lndeploy export models/transformer.py -o out/transformer.onnx
      lndeploy package out/*.onnx --triton-repo repo/
      docker run --gpus all -p8000:8000 -v $PWD/repo:/models nvcr.io/nvidia/tritonserver:<yy.mm>-py3 \\
          tritonserver --model-repository=/models
    """
    from lndeploy.serving import package

    for model in package(artifacts, triton_repo, max_batch=max_batch, instances=instances, device=device,
                         accelerator=accelerator, fp16=fp16, queue_delay_us=queue_delay_us):
        batching = f"max_batch_size {model.max_batch_size}" if model.max_batch_size else "no batching"
        click.echo(f"wrote {model.folder}/ ({model.platform}, {batching})")
        for note in model.notes:
            click.echo(f"  note: {note}")
