"""Plugin nodes run through lndeploy's own Triton kernel, on the CPU (``plugin_impl="kernel"``).

The kernel that ships with the TensorRT plugin (``lndeploy.plugins.layernorm.kernel``, README "The
LayerNorm plugin") otherwise never takes part in a CPU parity check: ONNX Runtime and the reference
evaluator run plugin nodes as ONNX's own ``LayerNormalization`` (:mod:`lndeploy.plugin_spec`). Here the
reference evaluator gets a custom operator for the plugin's domain and op type instead, which calls the
kernel's own launcher (``layer_norm``: its launch configuration, grid and input checks) under the Triton
interpreter, which runs Triton kernels on torch CPU tensors. The evaluator hands the operator to Scan
bodies too, so plugin nodes inside recurrent models run the kernel as well.

Why a worker process: the interpreter works only when ``TRITON_INTERPRET=1`` is set before triton is
imported (triton's own ``tl.sum`` and friends are decorated at import), and by the time a check runs,
torch's exporter has usually imported triton for the GPU. So the kernel runs in one child process per
session, started with the variable set (as plugins/layernorm/test_kernel.py does), fed over a pipe.

``LNDEPLOY_PLUGIN_KERNEL=FILE`` makes the worker load another kernel file with the same ``layer_norm``
launcher (a candidate kernel, checked before it ships; the tests use it to prove that a wrong kernel
fails the check).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

from lndeploy import plugin_spec
from lndeploy.errors import BadInputError, UnavailableError

KERNEL_MODULE = "lndeploy.plugins.layernorm.kernel"
KERNEL_FILE_ENV = "LNDEPLOY_PLUGIN_KERNEL"


class KernelWorker:
    """A child Python process that runs the kernel under the Triton interpreter, one call at a time."""

    def __init__(self):
        import lndeploy

        package_root = os.path.dirname(os.path.dirname(os.path.abspath(lndeploy.__file__)))
        env = {**os.environ, "TRITON_INTERPRET": "1",
               "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
        self.process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        status, detail = self._receive()
        if status != "ready":
            self.close()
            raise UnavailableError(f"plugin_impl 'kernel' cannot run lndeploy's Triton kernel here: {detail}")
        self.kernel_file = detail

    def layer_norm(self, x, scale, bias, epsilon: float, n: int):
        pickle.dump((_encode(x), _encode(scale), _encode(bias), float(epsilon), int(n)), self.process.stdin)
        self.process.stdin.flush()
        status, value = self._receive()
        if status != "ok":
            raise BadInputError(f"lndeploy's Triton kernel failed on input of shape {list(x.shape)}: {value}")
        return _decode(value)

    def _receive(self):
        try:
            return pickle.load(self.process.stdout)
        except EOFError:
            code = self.process.wait()
            return "error", f"the kernel worker exited with code {code}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if not stream.closed:
                stream.close()


def kernel_layer_norm_op(worker: KernelWorker):
    """An ``onnx.reference`` operator for ``lndeploy.LndeployLayerNorm`` that calls ``worker``."""
    from onnx.reference.op_run import OpRun

    class LndeployLayerNorm(OpRun):
        op_domain = plugin_spec.DOMAIN

        def _run(self, x, scale, bias, epsilon=None, axis=None, plugin_version=None, plugin_namespace=None):
            import numpy as np

            axis = int(axis) % x.ndim  # the plugin's axis is negative: normalised over x.shape[axis:]
            shape = x.shape[axis:]
            flat = [np.broadcast_to(p, shape).reshape(-1) for p in (scale, bias)]
            eps = 1e-5 if epsilon is None else epsilon
            return (worker.layer_norm(x, flat[0], flat[1], eps, int(np.prod(shape, dtype=np.int64))),)

    return LndeployLayerNorm


def _encode(array):
    """numpy -> (dtype name, array numpy can pickle without ml_dtypes): bf16 travels as its bits."""
    import numpy as np

    array = np.ascontiguousarray(array)
    if array.dtype.name == "bfloat16":
        return "bfloat16", array.view(np.uint16)
    return array.dtype.name, array


def _decode(encoded):
    name, array = encoded
    if name == "bfloat16":
        import ml_dtypes

        return array.view(ml_dtypes.bfloat16)
    return array


# --- the worker side (python -m lndeploy.backends.plugin_kernel, TRITON_INTERPRET=1) -----------------


def _load_kernel():
    import importlib
    import importlib.util

    path = os.environ.get(KERNEL_FILE_ENV)
    if not path:
        module = importlib.import_module(KERNEL_MODULE)
        return module, module.__file__
    spec = importlib.util.spec_from_file_location("lndeploy_candidate_layernorm_kernel", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


def _to_torch(encoded):
    import torch

    name, array = encoded
    tensor = torch.from_numpy(array.copy())
    return tensor.view(torch.bfloat16) if name == "bfloat16" else tensor


def _to_wire(tensor):
    import torch

    if tensor.dtype == torch.bfloat16:
        return "bfloat16", tensor.view(torch.int16).numpy().view("uint16")
    return str(tensor.dtype).replace("torch.", ""), tensor.numpy()


def _serve(inbox, outbox) -> None:
    try:
        kernel, path = _load_kernel()
        from triton.runtime.interpreter import InterpretedFunction

        if not isinstance(kernel.layer_norm_fwd_kernel, InterpretedFunction):
            raise RuntimeError("TRITON_INTERPRET=1 did not put the kernel under the Triton interpreter")
        reply = ("ready", path)
    except Exception as err:  # triton missing, or a kernel file that does not load
        reply = ("error", f"{type(err).__name__}: {err}")
    pickle.dump(reply, outbox)
    outbox.flush()
    if reply[0] != "ready":
        return
    while True:
        try:
            x, scale, bias, eps, n = pickle.load(inbox)
        except EOFError:
            return
        try:
            y = kernel.layer_norm(_to_torch(x), _to_torch(scale), _to_torch(bias), eps, normalized_numel=n)
            reply = ("ok", _to_wire(y))
        except Exception as err:
            reply = ("error", f"{type(err).__name__}: {err}")
        pickle.dump(reply, outbox)
        outbox.flush()


if __name__ == "__main__":
    # the pipe is fd 1; anything the kernel or triton prints goes to stderr instead
    _outbox = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _serve(sys.stdin.buffer, _outbox)
