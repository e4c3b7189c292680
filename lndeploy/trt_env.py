"""What TensorRT needs from the machine, for the backend and the plugin alike: the CUDA GPU (via torch),
and TensorRT-RTX's library folder with the symlink its ONNX parser needs to load plugins.

A leaf (imports only ``lndeploy.errors``): ``lndeploy.backends.tensorrt`` and the LayerNorm plugin
(``lndeploy.plugins.layernorm.trt_plugin``) both import it, and neither imports the other for it.
Nothing here imports TensorRT or torch at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

from lndeploy.errors import UnavailableError

RUNTIMES = ("tensorrt", "tensorrt-rtx")
MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
LABELS = {"tensorrt": "TensorRT", "tensorrt-rtx": "TensorRT-RTX"}
INSTALL = {
    "tensorrt": "pip install tensorrt --extra-index-url https://pypi.nvidia.com (needs an NVIDIA GPU and driver)",
    "tensorrt-rtx": "pip install tensorrt-rtx",
}
# The ONNX parser of TensorRT-RTX dlopens this unversioned name when it looks up a plugin creator;
# the wheel ships only the .so.1, and without the link the process aborts (terminate, no exception).
RTX_LIB = "libtensorrt_rtx.so.1"
RTX_LINK = "libtensorrt_rtx.so"


def rtx_libs_folder() -> Path:
    """The ``tensorrt_rtx_libs`` folder that holds ``libtensorrt_rtx.so.1``."""
    try:
        import tensorrt_rtx_libs
    except ImportError as err:
        raise UnavailableError(f"TensorRT-RTX's library package tensorrt_rtx_libs is missing; "
                               f"reinstall with: {INSTALL['tensorrt-rtx']}") from err
    return Path(tensorrt_rtx_libs.__file__).resolve().parent


def ensure_rtx_plugin_symlink(folder: Path | None = None) -> Path:
    """Create ``libtensorrt_rtx.so -> libtensorrt_rtx.so.1`` in the libs folder if it is missing.

    Needed before TensorRT-RTX's ONNX parser looks up any plugin creator (see module note). The link
    is made under a temporary name and renamed into place, so a concurrent process never sees a
    half-made link; if the folder is not writable the error says the one command that fixes it.
    """
    folder = Path(folder) if folder is not None else rtx_libs_folder()
    link = folder / RTX_LINK
    if os.path.lexists(link):
        if not link.exists():
            raise UnavailableError(f"{link} is a broken symlink; replace it: ln -sf {RTX_LIB} {link}")
        return link
    if not (folder / RTX_LIB).exists():
        raise UnavailableError(f"{folder} has no {RTX_LIB}; reinstall with: {INSTALL['tensorrt-rtx']}")
    tmp = folder / f".{RTX_LINK}.{os.getpid()}.tmp"
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(RTX_LIB, tmp)
        os.replace(tmp, link)
    except OSError as err:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise UnavailableError(
            f"TensorRT-RTX needs the symlink {link} -> {RTX_LIB} to load plugins and lndeploy cannot "
            f"create it ({err.strerror}); create it once as the folder's owner: ln -s {RTX_LIB} {link}"
        ) from err
    return link


def cuda_gpu() -> dict | None:
    """The current CUDA GPU as ``{"name", "sm"}`` (e.g. sm 86), via torch; None without one."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return {"name": torch.cuda.get_device_name(), "sm": major * 10 + minor}


def require_gpu(what: str) -> dict:
    gpu = cuda_gpu()
    if gpu is None:
        raise UnavailableError(f"{what} needs an NVIDIA GPU with CUDA, and torch sees none here "
                               "(torch.cuda.is_available() is False)")
    return gpu
