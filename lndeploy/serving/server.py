"""``lndeploy serve``: a local Triton Inference Server over lndeploy ``Session``s, through PyTriton.

PyTriton (the ``serve`` extra) ships a real Triton Inference Server binary with its Python backend;
each artifact becomes one model, named after its file's stem, whose instances each run their own
``Session``. HTTP on ``port``, gRPC on ``port + 1``, metrics on ``port + 2``; dynamic batching when
every input and output starts with one dynamic dim. SIGINT/SIGTERM stop the server and its Python
backend stubs before the process exits.

PyTriton 0.7.0 declares numpy<2 and answers with empty tensors under numpy 2, while lndeploy's core
wants numpy 2 (the onnx-reference backend's fp16 fidelity), so the extra lives in an environment of its
own (docs/serving.md, "Two environments"). Its Python-backend stub links the interpreter's shared
libpython: the folder of the running interpreter's is put first on the server's ``LD_LIBRARY_PATH``.
"""

from __future__ import annotations

import os
import signal
import sys
import sysconfig
import threading
from dataclasses import dataclass
from pathlib import Path

from lndeploy.errors import BadInputError, UnavailableError
from lndeploy.serving import signature as sig_mod

SERVE_ENV_HINT = ("python -m venv .venv-serve && .venv-serve/bin/pip install 'lndeploy[serve]' (in a clone: "
                  "make serve-env), then run .venv-serve/bin/lndeploy serve")


@dataclass
class ServedModel:
    name: str
    artifact: Path
    max_batch_size: int
    inputs: list  # signature.Tensor
    outputs: list


def plan(artifacts, max_batch: int) -> list[ServedModel]:
    """What each artifact is served as: its name, batching and tensors (as ``lndeploy package`` reads them)."""
    models, names = [], set()
    for path in map(Path, artifacts):
        if path.stem in names:
            raise BadInputError(f"two artifacts would both be model {path.stem!r} (the model name is the file's stem)")
        names.add(path.stem)
        sig = sig_mod.read(path)
        batch = sig.batch_label() if max_batch > 0 else None
        models.append(ServedModel(path.stem, path, max_batch if batch else 0, sig.inputs, sig.outputs))
    return models


def serve(artifacts, *, port: int = 8000, host: str = "127.0.0.1", max_batch: int = 8, instances: int = 1,
          queue_delay_us: int = 100, backend: str | None = None, on_ready=None) -> None:
    """Serve ``artifacts`` until SIGINT or SIGTERM; ``on_ready(message)`` is called once it answers."""
    if instances < 1 or max_batch < 0 or not 0 < port < 65534:
        raise BadInputError("--instances must be >= 1, --max-batch >= 0 and --port in 1..65533")
    models = plan(artifacts, max_batch)
    _check_ports_free(host, (port, port + 1, port + 2))
    pytriton = _import_pytriton()
    _put_libpython_on_path()
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    sessions = []
    try:
        config = pytriton.TritonConfig(http_address=host, http_port=port, grpc_address=host, grpc_port=port + 1,
                                       metrics_address=host, metrics_port=port + 2, exit_timeout_secs=5)
        with pytriton.Triton(config=config) as triton:
            for model in models:
                _bind(triton, pytriton, model, instances, queue_delay_us, backend, sessions)
            triton.run()
            if on_ready is not None:
                on_ready(f"serving {', '.join(m.name for m in models)} on http://{host}:{port} "
                         f"(gRPC {host}:{port + 1}, metrics http://{host}:{port + 2}/metrics)")
            while not stop.wait(0.5):
                if not triton.is_alive():
                    raise UnavailableError("the Triton server stopped unexpectedly (its log is above)")
    finally:
        for session in sessions:
            session.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _bind(triton, pytriton, model: ServedModel, instances: int, queue_delay_us: int, backend, sessions) -> None:
    import numpy as np

    from lndeploy.session import Session

    def tensors(items):
        dims = (lambda t: t.dims[1:]) if model.max_batch_size else (lambda t: t.dims)
        return [pytriton.Tensor(name=t.name, dtype=np.dtype(t.dtype),
                                shape=tuple(d if isinstance(d, int) else -1 for d in dims(t))) for t in items]

    functions = []
    for _ in range(instances):
        session = Session(str(model.artifact), backend=backend)
        sessions.append(session)
        functions.append(_infer_function(session, model.max_batch_size > 0, pytriton.batch))
    batching = model.max_batch_size > 0
    config = pytriton.ModelConfig(batching=batching, max_batch_size=model.max_batch_size or 1,
                                  batcher=pytriton.DynamicBatcher(max_queue_delay_microseconds=queue_delay_us))
    triton.bind(model_name=model.name, infer_func=functions, inputs=tensors(model.inputs),
                outputs=tensors(model.outputs), config=config, strict=True)


def _infer_function(session, batched: bool, batch_decorator):
    """Batched: PyTriton's ``@batch`` hands one concatenated feed; else one call per request."""
    if batched:
        @batch_decorator
        def infer(**feed):
            return session.run(feed)

        return infer

    def infer_each(requests):
        return [session.run({name: request[name] for name in session.input_names}) for request in requests]

    return infer_each


class _PyTriton:
    """The PyTriton names ``serve`` uses, imported once."""

    def __init__(self):
        from pytriton.decorators import batch
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig

        self.batch, self.DynamicBatcher, self.ModelConfig, self.Tensor = batch, DynamicBatcher, ModelConfig, Tensor
        self.Triton, self.TritonConfig = Triton, TritonConfig


def _import_pytriton() -> _PyTriton:
    import numpy as np

    try:
        pytriton = _PyTriton()
    except ImportError as err:
        raise UnavailableError(f"lndeploy serve needs PyTriton (the serve extra) in an environment of its own: "
                               f"{SERVE_ENV_HINT}") from err
    if int(np.__version__.split(".")[0]) >= 2:
        # measured: PyTriton 0.7.0 under numpy 2 answers every request with an empty tensor
        raise UnavailableError(f"PyTriton needs numpy<2 (this environment has numpy {np.__version__}, where it "
                               f"answers with empty tensors): {SERVE_ENV_HINT}")
    return pytriton


def libpython_dir() -> Path | None:
    """The folder holding the running interpreter's shared libpython, or None when it has none."""
    folder, name = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if folder and name and (Path(folder) / name).is_file():
        return Path(folder)
    return None


def _put_libpython_on_path() -> None:
    """The Python-backend stub must load this interpreter's libpython, not another one the loader
    finds first (a system libpython of another patch release fails in ``multiprocessing``)."""
    folder = libpython_dir()
    if folder is None:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        raise UnavailableError(f"the Triton Python backend needs this interpreter's shared libpython{version}, "
                               f"which {sys.executable} does not have (built without --enable-shared): use an "
                               f"interpreter built with it (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared pyenv "
                               f"install {sys.version.split()[0]}), or set LD_LIBRARY_PATH to a folder holding "
                               f"libpython{version} of exactly this release")
    current = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([str(folder)] + [p for p in current if p != str(folder)])


def _check_ports_free(host: str, ports) -> None:
    from lndeploy.serving.process import port_free

    busy = [p for p in ports if not port_free(host, p)]
    if busy:
        raise BadInputError(f"cannot listen on {host}:{busy[0]} (in use); the server needs --port, --port + 1 (gRPC) "
                            "and --port + 2 (metrics) free: choose another --port")
