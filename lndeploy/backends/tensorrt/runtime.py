"""Which TensorRT is installed, imported lazily: full TensorRT (``tensorrt``, 10.x/11.x) or TensorRT-RTX
(``tensorrt_rtx``). Both expose the same Builder/OnnxParser/Runtime API under different module names.

Nothing here imports a TensorRT module at import time; a missing one is an ``UnavailableError``
(exit 3) whose one line says what to install.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

from lndeploy.errors import UnavailableError, first_line
from lndeploy.trt_env import INSTALL, LABELS, MODULES, RUNTIMES


@dataclass(frozen=True)
class Runtime:
    """One importable TensorRT flavour: ``name`` (tensorrt | tensorrt-rtx), the module, its version."""

    name: str
    trt: object  # the imported module
    version: str

    @property
    def label(self) -> str:
        return LABELS[self.name]

    @property
    def is_rtx(self) -> bool:
        return self.name == "tensorrt-rtx"

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def installed(name: str) -> bool:
    """True when ``name``'s module can be imported (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec(MODULES[name]) is not None


def resolve_name(runtime: str | None) -> str:
    """``None``/``"auto"`` -> full TensorRT if installed, else TensorRT-RTX; else validate the name."""
    from lndeploy.errors import BadInputError

    if runtime in (None, "auto"):
        for name in RUNTIMES:
            if installed(name):
                return name
        raise UnavailableError("no TensorRT runtime is installed; install one: "
                               + " or ".join(INSTALL[n] for n in RUNTIMES))
    if runtime not in RUNTIMES:
        raise BadInputError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    return runtime


@functools.lru_cache(maxsize=None)
def load(runtime: str | None = None) -> Runtime:
    """Import the requested runtime (``tensorrt``, ``tensorrt-rtx`` or auto); UnavailableError if absent."""
    name = resolve_name(runtime)
    try:
        module = importlib.import_module(MODULES[name])
    except ImportError as err:  # also a broken install: the bindings load native libraries
        raise UnavailableError(f"{LABELS[name]} is not installed here ({first_line(err)}); "
                               f"install it with: {INSTALL[name]}") from err
    version = str(getattr(module, "__version__", "0"))
    if name == "tensorrt" and int(version.split(".")[0]) < 10:
        raise UnavailableError(f"TensorRT {version} is too old: lndeploy needs TensorRT >= 10 "
                               f"(strongly typed networks); upgrade with: {INSTALL[name]}")
    return Runtime(name, module, version)
