"""TensorRT backend: build engines (full TensorRT 10.x/11.x or TensorRT-RTX) and run them.

* :func:`build_engine` — ONNX -> engine + JSON sidecar (``OUT.engine.json``), written atomically.
* :class:`TrtSession` — ``run(inputs) -> {name: numpy}``; refuses engines of another runtime or GPU.
* :func:`parse_network`, :func:`network_layers` — what the parsed network holds (layer types, names,
  element types), e.g. one ``NORMALIZATION`` or ``PLUGIN_V3`` layer per LayerNorm, a Scan as
  ``TRIP_LIMIT``/``RECURRENCE``/``ITERATOR``/``LOOP_OUTPUT`` layers.
* :func:`load_runtime` — the installed runtime; a missing one raises ``UnavailableError`` (exit 3).

TensorRT itself is imported only when one of these is called.
"""

_LAZY = {
    "build_engine": ("builder", "build_engine"),
    "BuildResult": ("builder", "BuildResult"),
    "DEFAULT_RTX_ARCHS": ("builder", "DEFAULT_RTX_ARCHS"),
    "TrtSession": ("session", "TrtSession"),
    "parse_network": ("network", "parse_network"),
    "network_layers": ("network", "network_layers"),
    "LayerInfo": ("network", "LayerInfo"),
    "load_runtime": ("runtime", "load"),
    "read_sidecar": ("sidecar", "read"),
    "parse_shapes_option": ("shapes", "parse_shapes_option"),
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
