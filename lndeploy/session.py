"""``lndeploy.Session``: one ``run`` over every backend."""

from __future__ import annotations

import os
from pathlib import Path

from lndeploy.errors import BadInputError


PLUGIN_IMPLS = ("onnx", "kernel")


def _open(artifact, backend: str | None, plugin_impl: str = "onnx", **options):
    if backend is None and isinstance(artifact, str) and artifact.startswith(("http://", "grpc://")):
        backend = "kserve"  # a served model: Session("http://127.0.0.1:8000", model_name="rnn")
    if backend is None:
        suffix = Path(artifact).suffix if isinstance(artifact, (str, os.PathLike)) else ""
        from lndeploy.backends.tensorrt.sidecar import ENGINE_SUFFIXES

        backend = "tensorrt" if suffix in ENGINE_SUFFIXES else "onnxruntime"
    if plugin_impl not in PLUGIN_IMPLS:
        raise BadInputError(f"plugin_impl must be one of {', '.join(PLUGIN_IMPLS)}, got {plugin_impl!r}")
    if plugin_impl == "kernel":
        if backend != "onnx-reference":
            raise BadInputError(f"plugin_impl='kernel' runs lndeploy's Triton kernel inside ONNX's reference "
                                f"evaluator: use backend='onnx-reference', not {backend!r}")
        options["plugin_impl"] = plugin_impl
    if backend == "onnxruntime":
        from lndeploy.backends.onnxruntime import OrtSession
        from lndeploy.backends.ort_optimized import disabled_optimizers

        # the session bench times: on the CPU provider without ORT's SkipLayerNormFusion, whose
        # kernel is 3.5-7x slower than the Add + LayerNormalization it replaces (docs/bench.md)
        options.setdefault("disabled_optimizers", disabled_optimizers(options.get("providers")))
        return OrtSession(artifact, **options)
    if backend == "onnx-reference":
        from lndeploy.backends.reference import ReferenceSession

        return ReferenceSession(artifact, **options)
    if backend == "tensorrt":
        if isinstance(artifact, (str, os.PathLike)) and Path(artifact).suffix == ".onnx":
            raise BadInputError(f"the tensorrt backend runs an engine; build one first: "
                                f"lndeploy build {artifact} -o model.engine")
        from lndeploy.backends.tensorrt import TrtSession

        return TrtSession(artifact, **options)
    if backend == "kserve":
        from lndeploy.backends.kserve import KServeSession

        return KServeSession(artifact, **options)
    raise BadInputError(f"unknown backend {backend!r}; choose onnxruntime, onnx-reference, tensorrt or kserve")


class Session:
    """Run a deployed artifact: ``Session("m.onnx").run({"x": array})`` -> ``{name: numpy array}``.

    ``backend``: ``onnxruntime`` (default for .onnx), ``onnx-reference`` (ONNX's reference evaluator:
    slow, exact dtype semantics), ``tensorrt`` (default for .engine) or ``kserve`` (default for an
    ``http://`` or ``grpc://`` URL: a model on a KServe v2 server, ``model_name=`` required).
    ``provider`` tells what ran.
    ONNX Runtime sessions are the ones ``lndeploy bench`` times (``providers``, ``threads`` and
    ``disabled_optimizers`` may be given as keywords). ``plugin_impl``: what runs plugin nodes, ``onnx``
    (ONNX's ``LayerNormalization``, any CPU backend) or ``kernel`` (lndeploy's Triton kernel under the
    Triton interpreter, ``onnx-reference`` only). A context manager: ``with Session(p) as s:`` closes it
    on leaving. The backend's runner (``lndeploy.backends.base.Runner``) is ``runner``."""

    def __init__(self, artifact, backend: str | None = None, **options):
        self.runner = _open(artifact, backend, **options)
        self.backend = self.runner.backend

    @property
    def provider(self) -> str:
        return self.runner.provider

    @property
    def inputs(self):
        return self.runner.inputs

    @property
    def outputs(self):
        return self.runner.outputs

    @property
    def input_names(self) -> list[str]:
        return self.runner.input_names

    @property
    def output_names(self) -> list[str]:
        return self.runner.output_names

    def run(self, inputs) -> dict:
        """``inputs``: name -> array, or a sequence in input order (numpy arrays or torch tensors)."""
        if inputs is None:
            raise BadInputError("no inputs given")
        return self.runner.run(inputs)

    def bind(self, feed: dict):
        """A zero-argument call running ``feed`` on buffers prepared once (what bench times)."""
        return self.runner.bind(feed)

    def info(self) -> dict:
        return self.runner.info()

    def close(self) -> None:
        self.runner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
