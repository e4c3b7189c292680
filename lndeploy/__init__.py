"""lndeploy: ship PyTorch models with LayerNorm to ONNX Runtime and TensorRT, with parity proven.

The public API is imported lazily, so ``import lndeploy`` (and ``lndeploy --help``) loads neither
torch nor onnxruntime nor TensorRT.
"""

from lndeploy.errors import BadInputError, LndeployError, ParityError, UnavailableError

__version__ = "0.1.0"

_LAZY = {
    "export": ("lndeploy.pipeline", "export"),
    "check": ("lndeploy.checker", "check"),
    "fuse": ("lndeploy.pipeline", "fuse"),
    "build_engine": ("lndeploy.backends.tensorrt", "build_engine"),
    "bench": ("lndeploy.benchmark", "bench"),
    "Session": ("lndeploy.session", "Session"),
    "package": ("lndeploy.serving.repository", "package"),
    "serve": ("lndeploy.serving.server", "serve"),
    "load_model": ("lndeploy.modelfile", "load"),
    "ModelSpec": ("lndeploy.modelfile", "ModelSpec"),
}

__all__ = ["LndeployError", "BadInputError", "ParityError", "UnavailableError", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lndeploy' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
