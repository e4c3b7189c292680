"""Polygraphy runners: PyTorch (the reference) and any lndeploy ``Session``.

Polygraphy's own ``PytRunner`` (0.53.6) calls ``.cuda()`` unconditionally, zips single outputs over
the batch dim and mishandles dtypes, so PyTorch gets a small runner of ours. Deployed artifacts run
through ``lndeploy.Session``, which reports the provider that actually ran.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata


class TorchRunner(BaseRunner):
    """Runs a loaded ``ModelSpec`` in eval mode under ``torch.inference_mode`` on the CPU."""

    def __init__(self, spec, output_names: list[str], name: str = "pytorch"):
        super().__init__(name=name, prefix="pytorch-runner")
        self.spec = spec
        self.output_names = output_names

    def activate_impl(self):
        self.spec.module.eval()

    def get_input_metadata_impl(self):
        meta = TensorMetadata()
        for name, tensor in self.spec.inputs.items():
            axes = self.spec.dynamic_axes.get(name, {})
            shape = [axes.get(i, int(n)) for i, n in enumerate(tensor.shape)]
            meta.add(name, dtype=tensor.detach().cpu().numpy().dtype, shape=shape)
        return meta

    def infer_impl(self, feed_dict):
        import torch

        from lndeploy.exporter.verify import flatten_outputs

        tensors = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in feed_dict.items()}
        start = time.perf_counter()
        try:
            with torch.inference_mode():
                values = flatten_outputs(self.spec.call(tensors))
        except Exception as err:  # these sizes ran before the comparison: the model is what changed
            from lndeploy.errors import BadInputError, LndeployError

            if isinstance(err, LndeployError):
                raise
            shapes = ", ".join(f"{k}:{tuple(v.shape)}" for k, v in feed_dict.items())
            raise BadInputError(f"{self.spec.source}: forward() raised {type(err).__name__} on inputs {shapes} "
                                f"during the comparison: {str(err).strip()[:200]}") from err
        self.inference_time = time.perf_counter() - start
        return OrderedDict(zip(self.output_names, (v.astype(np.float32) if v.dtype.kind == "f" else v
                                                   for v in values)))

    def deactivate_impl(self):
        pass


class SessionRunner(BaseRunner):
    """Runs an artifact through an open ``lndeploy.Session`` (ONNX Runtime, reference evaluator,
    TensorRT), which its owner closes: activating this runner for each input set costs nothing."""

    def __init__(self, session, name: str, names: dict | None = None, ranks: dict | None = None):
        super().__init__(name=name, prefix="lndeploy-runner")
        self.session = session
        # artifact input declared without a shape -> the rank it is fed at (Polygraphy needs a shape)
        self._ranks = ranks or {}
        # model input name -> artifact input name: the feeds carry the model's names
        self._names = names or {}
        self._model_name = {v: k for k, v in self._names.items()}

    def activate_impl(self):
        pass

    def get_input_metadata_impl(self):
        meta = TensorMetadata()
        for m in self.session.inputs:
            shape = [-1] * self._ranks[m.name] if m.shape is None else [d if d is not None else -1 for d in m.shape]
            meta.add(self._model_name.get(m.name, m.name), dtype=m.dtype, shape=shape)
        return meta

    def infer_impl(self, feed_dict):
        from lndeploy.errors import LndeployError, ParityError

        used = set(self.session.input_names)
        feed = {self._names.get(k, k): v for k, v in feed_dict.items()}
        start = time.perf_counter()
        try:
            outputs = self.session.run({k: v for k, v in feed.items() if k in used})
        except LndeployError as err:
            # PyTorch runs these inputs (check filters out sizes it cannot): the artifact is what fails
            shapes = ", ".join(f"{k}:{tuple(v.shape)}" for k, v in feed_dict.items())
            raise ParityError(f"{self.name} failed on inputs {shapes}, which PyTorch runs: {err}") from err
        self.inference_time = time.perf_counter() - start
        return OrderedDict((k, v.astype(np.float32) if v.dtype in (np.float16,) else v) for k, v in outputs.items())

    def deactivate_impl(self):
        pass


def artifact_runner(session, backend: str, names: dict | None = None, ranks: dict | None = None) -> BaseRunner:
    """The runner for the deployed artifact. A full-TensorRT engine runs through Polygraphy's own
    ``TrtRunner`` (``session``, an lndeploy ``TrtSession``, has already checked the sidecar, the GPU
    and registered the plugin). Polygraphy's runner imports ``tensorrt`` only, so TensorRT-RTX
    engines, ONNX Runtime and the reference evaluator run through ``lndeploy.Session``."""
    if backend == "tensorrt" and not session.runner.is_rtx:
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        from lndeploy.errors import BadInputError

        if any(k != v for k, v in (names or {}).items()):
            raise BadInputError(f"the engine's inputs {sorted(names.values())} are not named like the model's "
                                f"{sorted(names)}: rebuild it from an ONNX file with the model's input names")

        return TrtRunner(EngineFromBytes(session.runner.path.read_bytes()), name="tensorrt")
    return SessionRunner(session, name=backend, names=names, ranks=ranks)
