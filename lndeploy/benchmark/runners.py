"""One runner per backend: ``bind(feed)`` returns the zero-argument call that the timing core times.

What is timed is the backend's own call on input buffers made once and reused (``torch.from_numpy``
shares the numpy memory, ORT reads the same arrays every call): no input conversion, no validation,
no copy. That is the steady state of a long-lived server, which is what a deployment choice is about.
Output buffers are whatever each backend allocates per call, as in real use.

* ``pytorch``: eager, under ``torch.inference_mode``, ``torch.set_num_threads(threads)``.
* ``onnxruntime``: the native-LN export, ``intra_op_num_threads = threads``, the session options of
  :func:`lndeploy.backends.ort_optimized.tuned_session` (ORT's defaults minus SkipLayerNormFusion on
  CPU: the fastest of the variants measured, see docs/bench.md), or ORT's plain defaults.
* ``onnxruntime-fused``: the same with the ORT-only fused graph of
  :mod:`lndeploy.backends.ort_optimized` (in memory), only where it is proven equal.
* ``onnxruntime-plugin``: the plugin-node export, plugin resolved to the CPU reference function.
* ``tensorrt``: an engine per batch size, built at that exact shape (as ``trtexec --shapes`` does),
  run through ``TrtSession`` (host->device and device->host copies included).
"""

from __future__ import annotations

from dataclasses import dataclass, field


BACKENDS = ("pytorch", "onnxruntime", "onnxruntime-fused", "onnxruntime-plugin", "tensorrt")


@dataclass
class Skipped:
    """A backend that cannot run here, and the one line that says why."""

    name: str
    reason: str


@dataclass
class Runner:
    name: str
    provider: str
    info: dict = field(default_factory=dict)

    def bind(self, feed: dict):  # pragma: no cover - interface
        raise NotImplementedError

    def outputs(self, feed: dict) -> list:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class TorchRunner(Runner):
    def __init__(self, spec, threads: int):
        import torch

        self._previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)  # process-wide: restored by close()
        super().__init__("pytorch", "torch eager (CPU)", {
            "mode": "eager, torch.inference_mode", "threads": torch.get_num_threads()})
        self.spec = spec

    def close(self) -> None:
        import torch

        torch.set_num_threads(self._previous_threads)

    def _tensors(self, feed: dict) -> dict:
        import torch

        return {name: torch.from_numpy(array) for name, array in feed.items()}

    def bind(self, feed: dict):
        tensors, call = self._tensors(feed), self._call

        def run():
            call(tensors)

        return run

    def outputs(self, feed: dict) -> list:
        from lndeploy.exporter.verify import flatten_outputs

        return flatten_outputs(self._call(self._tensors(feed)))

    def _call(self, tensors: dict):
        """The model on ``tensors``; its own exception is the model file's fault (exit 2), named."""
        import torch

        from lndeploy.errors import BadInputError, LndeployError

        try:
            with torch.inference_mode():
                return self.spec.call(tensors)
        except LndeployError:
            raise
        except Exception as err:
            shapes = ", ".join(f"{k}:{tuple(v.shape)}" for k, v in tensors.items())
            raise BadInputError(f"{self.spec.source}: forward() raised {type(err).__name__} on inputs {shapes} "
                                f"while being timed: {str(err).strip()[:200]}") from err


class OrtRunner(Runner):
    def __init__(self, name: str, model, threads: int, info: dict | None = None, tuned: bool = True):
        from lndeploy.backends import ort_optimized
        from lndeploy.backends.onnxruntime import OrtSession

        disabled = ort_optimized.disabled_optimizers() if tuned else ()
        self.session = OrtSession(model, threads=threads, disabled_optimizers=disabled)
        super().__init__(name, self.session.provider, {**self.session.info(), **(info or {})})
        self.input_names = self.session.input_names
        self.output_names = self.session.output_names

    def _feed(self, feed: dict) -> dict:
        # the exporter drops inputs the graph does not use; ORT refuses unknown names
        return {name: feed[name] for name in self.input_names}

    def bind(self, feed: dict):
        return self.session.bind(self._feed(feed))

    def outputs(self, feed: dict) -> list:
        result = self.session.run(self._feed(feed))
        return [result[name] for name in self.output_names]

    def close(self) -> None:
        self.session.close()


class TrtRunner(Runner):
    """Engines built per batch size from an ONNX file, or one given engine."""

    def __init__(self, onnx_path=None, engine_path=None, workdir=None):
        from lndeploy.backends.tensorrt.runtime import load

        rt = load(None)
        super().__init__("tensorrt", rt.label, {"runtime": rt.name, "version": rt.version})
        self.onnx_path, self.engine_path, self.workdir = onnx_path, engine_path, workdir
        self._sessions = {}
        self._onnx_inputs = None
        if onnx_path is not None:
            from lndeploy.backends.tensorrt.shapes import onnx_inputs
            from lndeploy.onnxfile import load_model

            self._onnx_inputs = [i.name for i in onnx_inputs(load_model(onnx_path, load_external_data=False))]

    def _session(self, feed: dict):
        from lndeploy.backends.tensorrt import TrtSession, build_engine

        key = "engine" if self.engine_path else tuple((n, a.shape) for n, a in sorted(feed.items()))
        if key not in self._sessions:
            path = self.engine_path
            if path is None:
                from pathlib import Path

                path = Path(self.workdir) / f"bench-{len(self._sessions)}.engine"
                shapes = {name: (feed[name].shape,) * 3 for name in self._onnx_inputs}
                build_engine(self.onnx_path, path, shapes=shapes, progress=False)
            session = TrtSession(path)
            self.provider = session.provider
            self._sessions[key] = session
        return self._sessions[key]

    def input_specs(self) -> list:
        """InputSpecs of a given engine (dynamic dims by their sidecar label, else ``NAME_dimINDEX``
        as lndeploy.inputs.onnx_dim names them)."""
        from lndeploy.inputs import InputSpec

        session = self._session({})
        return [InputSpec(m.name, m.dtype, tuple(d if isinstance(d, (int, str)) else f"{m.name}_dim{i}"
                                                 for i, d in enumerate(m.shape)), 0.0, 1.0)
                for m in session.inputs]

    def bind(self, feed: dict):
        return self._session(feed).bind(feed)

    def outputs(self, feed: dict) -> list:
        session = self._session(feed)
        result = session.run({m.name: feed[m.name] for m in session.inputs})
        return [result[m.name] for m in session.outputs]


def tensorrt_unavailable() -> str | None:
    """Why TensorRT cannot run here (one line), or None when it can."""
    from lndeploy.backends.tensorrt import runtime
    from lndeploy.errors import UnavailableError

    try:
        rt = runtime.load(None)
    except UnavailableError as err:
        return str(err)
    if runtime.cuda_gpu() is None:
        return f"{rt.label} {rt.version} is installed, but there is no NVIDIA GPU here " \
               "(torch.cuda.is_available() is False)"
    try:
        from lndeploy.backends.tensorrt import TrtSession, build_engine  # noqa: F401
    except (ImportError, AttributeError) as err:
        return f"lndeploy's TensorRT session is not available in this build ({err})"
    return None


def max_abs_difference(reference: list, got: list) -> float | None:
    """Worst max abs error over all outputs (``lndeploy.parity``'s statistics: NaN where one side has
    NaN/inf the other does not, inf where a shape differs); None if the output counts differ."""
    from lndeploy import parity

    if len(reference) != len(got):
        return None
    worst = 0.0
    for ref, out in zip(reference, got):
        stats = parity.compare_arrays(out, ref, parity.tolerance("fp32"))
        if stats.error and "shape" in stats.error:
            return float("inf")
        if not stats.max_abs <= worst:  # NaN wins: it is the worst
            worst = stats.max_abs
    return worst
