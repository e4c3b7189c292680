"""The ``check --config FILE.toml`` file: which models, and per model which cells (docs/ci.md "The matrix").

    [defaults]                      # optional; every [[model]] inherits these keys
    precisions = ["fp32", "fp16"]
    ln = ["native", "plugin"]
    backends = ["onnxruntime"]

    [[model]]
    path = "../models/lstm.py"      # relative to the config file
    atol = { fp16 = 0.06 }          # a number, or one per precision
    # name, rtol, samples, seed, opset, inputs, budget, plugin_impl; or onnx / engine: that artifact

Read with the standard library's ``tomllib``; anything it does not know or cannot use is a
``BadInputError`` naming the file, the model and the key (exit 2), before any model is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lndeploy.errors import BadInputError, UnavailableError

PRECISIONS = ("fp32", "fp16", "bf16")
LN_FORMS = ("native", "plugin")
BACKENDS = ("onnxruntime", "onnx-reference", "tensorrt")
CELL_KEYS = ("precisions", "ln", "backends", "atol", "rtol", "samples", "seed", "opset", "inputs", "budget",
             "plugin_impl")
MODEL_KEYS = ("path", "name", "onnx", "engine", *CELL_KEYS)
DEFAULTS = {"precisions": ["fp32"], "ln": ["native"], "backends": ["onnxruntime"]}


@dataclass
class ModelEntry:
    """One ``[[model]]``, defaults applied and paths resolved against the config file's folder."""

    name: str
    path: str
    precisions: list = field(default_factory=list)  # empty with an artifact: its own
    ln: list = field(default_factory=list)
    backends: list = field(default_factory=list)
    atol: dict = field(default_factory=dict)  # precision -> atol ("*": every precision)
    rtol: dict = field(default_factory=dict)
    samples: int | None = None
    seed: int | None = None  # None: the command's --seed (default 0)
    opset: int | None = None
    inputs: str | None = None
    onnx: str | None = None
    engine: str | None = None
    budget: str | None = None  # None: check's default (auto for fp16/bf16 without atol)
    plugin_impl: str | None = None

    def tolerance(self, precision: str | None) -> tuple[float | None, float | None]:
        """(atol, rtol) for a precision; None: the precision's default (lndeploy.parity's table)."""
        return (self.atol.get(precision, self.atol.get("*")), self.rtol.get(precision, self.rtol.get("*")))


def load(path) -> list[ModelEntry]:
    path = Path(path)
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise UnavailableError("--config needs Python 3.11 (tomllib) or the tomli package") from None
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BadInputError(f"--config: no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BadInputError(f"--config {path}: not readable ({err})") from err
    except tomllib.TOMLDecodeError as err:
        raise BadInputError(f"--config {path}: not valid TOML: {err}") from err
    return parse(data, path)


def parse(data: dict, path: Path) -> list[ModelEntry]:
    unknown = [k for k in data if k not in ("defaults", "model")]
    if unknown:
        raise BadInputError(f"{path}: unknown top-level key {unknown[0]!r} (known: defaults, model)")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise BadInputError(f"{path}: key 'defaults' must be a table ([defaults])")
    _known(defaults, CELL_KEYS, f"{path}: [defaults]")
    models = data.get("model")
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
        raise BadInputError(f"{path}: key 'model' must be one or more [[model]] tables")
    entries = [_entry(raw, defaults, path.parent, f"{path}: model[{i}]") for i, raw in enumerate(models)]
    names = [e.name for e in entries]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise BadInputError(f"{path}: two models are named {duplicate!r}; give one of them a 'name'")
    return entries


def _entry(raw: dict, defaults: dict, folder: Path, where: str) -> ModelEntry:
    if not isinstance(raw.get("path"), str):
        raise BadInputError(f"{where}: key 'path' (the model file) is required and must be a string")
    name = raw.get("name", Path(raw["path"].split(":")[0]).stem)
    where = f"{where} ({name})"
    _known(raw, MODEL_KEYS, where)
    artifact = [k for k in ("onnx", "engine") if k in raw]
    if len(artifact) > 1:
        raise BadInputError(f"{where}: give key 'onnx' or key 'engine', not both")
    merged = {**DEFAULTS, **defaults, **raw}
    if artifact:  # the artifact has its own precision and LN form
        for key in ("precisions", "ln"):
            if key in raw:
                raise BadInputError(f"{where}: key {key!r} contradicts key {artifact[0]!r}: an artifact has its own")
        merged["precisions"], merged["ln"] = [], []
        if artifact[0] == "engine" and "backends" not in raw:
            merged["backends"] = ["tensorrt"]
    entry = ModelEntry(name=_string(name, "name", where), path=_resolve(raw["path"], folder, model=True))
    entry.precisions = _choices(merged["precisions"], PRECISIONS, "precisions", where, allow_empty=bool(artifact))
    entry.ln = _choices(merged["ln"], LN_FORMS, "ln", where, allow_empty=bool(artifact))
    entry.backends = _choices(merged["backends"], BACKENDS, "backends", where)
    entry.atol = _per_precision(merged.get("atol"), "atol", where)
    entry.rtol = _per_precision(merged.get("rtol"), "rtol", where)
    entry.samples = _integer(merged.get("samples"), "samples", where, low=1)
    entry.seed = _integer(merged.get("seed"), "seed", where, low=0)
    entry.opset = _integer(merged.get("opset"), "opset", where, low=17)
    for key in ("inputs", "onnx", "engine"):
        if merged.get(key) is not None:
            setattr(entry, key, _resolve(_string(merged[key], key, where), folder))
    if merged.get("budget") is not None:
        entry.budget = _choices(merged["budget"], ("fixed", "auto"), "budget", where)[0]
    if merged.get("plugin_impl") is not None:
        entry.plugin_impl = _choices(merged["plugin_impl"], ("onnx", "kernel"), "plugin_impl", where)[0]
    return entry


def _known(table: dict, keys, where: str) -> None:
    for key in table:
        if key not in keys:
            raise BadInputError(f"{where}: unknown key {key!r} (known: {', '.join(keys)})")


def _resolve(value: str, folder: Path, model: bool = False) -> str:
    """Relative to the config file's folder. A model reference may be ``FILE:FACTORY`` or a module
    name (importable as it is, not a path)."""
    from lndeploy.modelfile import split_reference

    target, factory = split_reference(value) if model else (value, None)
    if model and not (target.endswith(".py") or "/" in target):
        return value
    resolved = target if Path(target).is_absolute() else os.path.normpath(folder / target)
    return f"{resolved}:{factory}" if model and value != target else resolved


def _string(value, key: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadInputError(f"{where}: key {key!r} must be a non-empty string, got {value!r}")
    return value


def _choices(value, allowed, key: str, where: str, allow_empty: bool = False) -> list:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or (not value and not allow_empty) or any(v not in allowed for v in value):
        raise BadInputError(f"{where}: key {key!r} must be a list of {'|'.join(allowed)}, got {value!r}")
    return list(dict.fromkeys(value))


def _per_precision(value, key: str, where: str) -> dict:
    if value is None:
        return {}
    table = value if isinstance(value, dict) else {"*": value}
    out = {}
    for precision, number in table.items():
        if precision not in (*PRECISIONS, "*") or isinstance(number, bool) or not isinstance(number, (int, float)) \
                or not 0 <= number < float("inf"):
            raise BadInputError(f"{where}: key {key!r} must be a number >= 0 or a table precision -> number "
                                f"(e.g. {{ fp16 = 0.05 }}), got {value!r}")
        out[precision] = float(number)
    return out


def _integer(value, key: str, where: str, low: int):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise BadInputError(f"{where}: key {key!r} must be an integer >= {low}, got {value!r}")
    return value
