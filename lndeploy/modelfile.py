"""Load a model file (README 'The model file'): ``build()``, ``example_inputs()``, optional ``dynamic_axes()``
and ``sample_inputs()`` (real input sets for ``check``, used instead of generated ones).

``MODEL`` is a path to a ``.py`` file, an importable module name, or ``FILE_OR_MODULE:FACTORY``.
Loading a model file executes its code; nothing is loaded implicitly.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from lndeploy.errors import BadInputError, first_line


class ModelFaultError(BadInputError):
    """The model's own code ended the call in a way no input explains: ``sys.exit``, a
    ``BaseException`` of its own. Never a size to skip: whoever probes sizes re-raises it (exit 2)."""


@dataclass
class ModelSpec:
    """A loaded model: the module in eval mode, named example inputs, and named dynamic dims."""

    module: object  # torch.nn.Module
    inputs: dict  # name -> torch.Tensor, in forward's order
    dynamic_axes: dict  # name -> {dim index: dim name}
    source: str
    as_kwargs: bool = False  # example_inputs() was a dict: forward takes the inputs by keyword
    sample_inputs: object = None  # the model file's optional sample_inputs(): yields input sets

    def given_input_sets(self):
        """The sets ``sample_inputs()`` yields (dicts name -> tensor or array), drawn lazily; what the
        function raises, also mid-way, is a model fault (exit 2)."""
        try:
            for given in self.sample_inputs():
                yield given
        except (KeyboardInterrupt, GeneratorExit):  # Ctrl-C; the consumer closing the generator
            raise
        except BaseException as err:
            raise _fault(f"{self.source}: sample_inputs()", err) from err

    @property
    def input_names(self) -> list[str]:
        return list(self.inputs)

    def call(self, tensors: dict):
        """Run the module on name -> tensor, the way its example inputs were given. An ``Exception``
        passes as raised (the caller knows whether it means "sizes not supported"); ``sys.exit`` or
        another ``BaseException`` from the model becomes ``ModelFaultError`` (Ctrl-C stays Ctrl-C)."""
        try:
            if self.as_kwargs:
                return self.module(**tensors)
            return self.module(*(tensors[name] for name in self.inputs))
        except (Exception, KeyboardInterrupt):
            raise
        except BaseException as err:
            raise ModelFaultError(f"{self.source}: forward() {_ended(err)}") from err


def split_reference(ref: str) -> tuple[str, str]:
    """``file.py:factory`` -> (``file.py``, ``factory``); no colon -> factory ``build``."""
    head, sep, tail = ref.rpartition(":")
    if sep and tail.isidentifier() and head:
        return head, tail
    return ref, "build"


def import_model_module(target: str):
    """Import a model file by path or a module by dotted name; failures become ``BadInputError``."""
    looks_like_file = target.endswith(".py") or "/" in target or Path(target).exists()
    if looks_like_file:
        return _import_file(Path(target), target)
    # like ``python -m``: modules in the current folder are importable
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(target)
    except KeyboardInterrupt:
        raise
    except ModuleNotFoundError as err:
        if err.name and not target.startswith(err.name) and err.name != target:
            raise BadInputError(f"importing {target} failed: ModuleNotFoundError: {first_line(err)}") from err
        raise BadInputError(f"model not found: {target} is neither a file nor an importable module") from err
    except BaseException as err:
        raise _fault(f"importing {target}", err, "failed:") from err
    finally:
        sys.path.remove(os.getcwd())


def _import_file(path: Path, target: str):
    if not path.is_file():
        raise BadInputError(f"model file not found: {target}")
    if path.suffix != ".py":
        raise BadInputError(f"model file must be a Python file (.py): {target}")
    try:
        path.read_bytes()
    except OSError as err:
        raise BadInputError(f"model file not readable: {target} ({err.strerror})") from err
    name = f"lndeploy_model_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # registered while it runs, as an import would: dataclasses and pickling look modules up by name
    sys.modules[name] = module
    # the model's own folder first, so a user's model can import its sibling files
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except BaseException as err:
        sys.modules.pop(name, None)
        if isinstance(err, KeyboardInterrupt):
            raise
        raise _fault(f"loading {target}", err, "failed:") from err
    finally:
        sys.path.remove(folder)
    return module


def load(ref: str) -> ModelSpec:
    """Load ``ref`` per README 'The model file' and validate everything it defines."""
    import torch

    target, factory = split_reference(ref)
    module = import_model_module(target)
    build = _callable(module, factory, target, required=True)
    try:
        model = build()
    except KeyboardInterrupt:
        raise
    except BaseException as err:
        raise _fault(f"{target}: {factory}()", err) from err
    if not isinstance(model, torch.nn.Module):
        raise BadInputError(f"{target}: {factory}() must return a torch.nn.Module, got {type(model).__name__}")
    model.eval()
    examples = _call(module, "example_inputs", target, required=True)
    inputs = name_inputs(model, examples, target)
    axes_fn = _callable(module, "dynamic_axes", target, required=False)
    if axes_fn:
        axes = validate_dynamic_axes(_call(module, "dynamic_axes", target), inputs, target)
    else:
        axes = validate_dynamic_axes(default_axes(inputs), inputs, f"{target} (no dynamic_axes(): dim 0 of "
                                                                     f"every input is 'batch'; define "
                                                                     f"dynamic_axes() to say which are)")
    samples = _callable(module, "sample_inputs", target, required=False)
    return ModelSpec(model, inputs, axes, source=ref, as_kwargs=isinstance(examples, dict), sample_inputs=samples)


def from_module(module, example_inputs, dynamic_axes=None, source: str = "<module>") -> ModelSpec:
    """A ``ModelSpec`` from an in-memory module, validated like a model file's definitions."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise BadInputError(f"expected a torch.nn.Module, got {type(module).__name__}")
    module.eval()
    inputs = name_inputs(module, example_inputs, source)
    axes = validate_dynamic_axes(dynamic_axes if dynamic_axes is not None else default_axes(inputs), inputs, source)
    return ModelSpec(module, inputs, axes, source=source, as_kwargs=isinstance(example_inputs, dict))


def resolve(model, example_inputs=None, dynamic_axes=None) -> ModelSpec:
    """What the API accepts as a model: a model-file reference (str or path), a ``ModelSpec``, or a
    ``torch.nn.Module`` together with ``example_inputs`` (and optionally ``dynamic_axes``)."""
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load(str(model))
    if hasattr(model, "forward") and hasattr(model, "eval"):
        if example_inputs is None:
            raise BadInputError("a torch.nn.Module needs example_inputs= (a tuple of tensors or a dict)")
        return from_module(model, example_inputs, dynamic_axes)
    raise BadInputError(f"model must be a model-file path, a module name, or a torch.nn.Module, "
                        f"got {type(model).__name__}")


def default_axes(inputs: dict) -> dict:
    """README 'The model file': without ``dynamic_axes()``, dim 0 of every input is ``batch``."""
    return {name: {0: "batch"} for name, tensor in inputs.items() if tensor.dim()}


def name_inputs(model, examples, where: str) -> dict:
    """Name the example tensors: dict keys, or else the names of ``forward``'s parameters."""
    import torch

    if isinstance(examples, torch.Tensor):
        examples = (examples,)
    if isinstance(examples, dict):
        items = list(examples.items())
    elif isinstance(examples, (tuple, list)):
        names = _forward_parameter_names(model, len(examples))
        if len(examples) > len(names):
            raise BadInputError(
                f"{where}: example_inputs() returned {len(examples)} tensors but forward() takes {len(names)}"
            )
        items = list(zip(names, examples))
    else:
        raise BadInputError(
            f"{where}: example_inputs() must return a tuple of tensors or a dict of name -> tensor, "
            f"got {type(examples).__name__}"
        )
    for name, value in items:
        if not isinstance(value, torch.Tensor):
            kind = type(value).__name__
            article = "an" if kind[:1].lower() in "aeiou" else "a"
            raise BadInputError(f"{where}: example input {name!r} is {article} {kind}, not a torch.Tensor")
        _check_example_dtype(value, name, where)
    return dict(items)


def _check_example_dtype(tensor, name: str, where: str) -> None:
    """What ONNX export and the generated inputs cannot carry: complex numbers (no ONNX Runtime
    kernels, no exporter support), bf16 inputs (no numpy dtype for the generated inputs)."""
    import torch

    if tensor.dtype.is_complex:
        raise BadInputError(f"{where}: example input {name!r} is {tensor.dtype}: complex-valued inputs are not "
                            f"supported (pass real and imaginary parts as two float inputs)")
    if tensor.dtype == torch.bfloat16:
        raise BadInputError(f"{where}: example input {name!r} is bfloat16: give fp32 example inputs "
                            f"(export --precision bf16 makes the graph bf16 inside)")
    if tensor.is_sparse or tensor.device.type == "meta":
        raise BadInputError(f"{where}: example input {name!r} is a {tensor.layout if tensor.is_sparse else 'meta'} "
                            f"tensor: give dense tensors with data")


def validate_dynamic_axes(axes, inputs: dict, where: str) -> dict:
    if not isinstance(axes, dict):
        raise BadInputError(f"{where}: dynamic_axes() must return a dict, got {type(axes).__name__}")
    out = {}
    for name, dims in axes.items():
        if name not in inputs:
            raise BadInputError(f"{where}: dynamic_axes() names input {name!r}, not one of {list(inputs)}")
        if not isinstance(dims, dict):
            raise BadInputError(f"{where}: dynamic_axes()[{name!r}] must be a dict of dim index -> name")
        rank = inputs[name].dim()
        clean = {}
        for dim, label in dims.items():
            if not isinstance(dim, int) or not -rank <= dim < rank:
                raise BadInputError(f"{where}: dynamic_axes()[{name!r}] has dim {dim!r}, input rank is {rank}")
            clean[dim % rank] = str(label)
        out[name] = clean
    _check_shared_dims(out, inputs, where)
    return out


def _check_shared_dims(axes: dict, inputs: dict, where: str) -> None:
    """Inputs that share a dim name must agree on its example size (the exporter would merge them)."""
    seen = {}
    for name, dims in axes.items():
        for index, label in dims.items():
            size = int(inputs[name].shape[index])
            if label in seen and seen[label][1] != size:
                other, other_size = seen[label]
                raise BadInputError(f"{where}: inputs {other!r} and {name!r} share dynamic dim {label!r} but their "
                                    f"example sizes differ ({other_size} vs {size})")
            seen.setdefault(label, (name, size))


def _forward_parameter_names(model, count: int = 0) -> list[str]:
    """Positional parameter names of ``forward``; a ``*args`` forward names the rest input_<i>."""
    params = list(inspect.signature(model.forward).parameters.values())
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in params if p.kind in kinds]
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        names += [f"input_{i}" for i in range(len(names), count)]
    return names


def _callable(module, name: str, where: str, required: bool):
    fn = getattr(module, name, None)
    if fn is None:
        if required:
            raise BadInputError(f"{where} defines no {name}()")
        return None
    if not callable(fn):
        raise BadInputError(f"{where}: {name} is not callable")
    return fn


def _call(module, name: str, where: str, required: bool = True):
    fn = _callable(module, name, where, required)
    try:
        return fn()
    except KeyboardInterrupt:
        raise
    except BaseException as err:
        raise _fault(f"{where}: {name}()", err) from err


def _fault(what: str, err: BaseException, verb: str = "raised") -> BadInputError:
    """``what`` ("loading m.py", "m.py: build()") failed in the model's own code (exit 2)."""
    if isinstance(err, Exception):
        return BadInputError(f"{what} {verb} {type(err).__name__}: {first_line(err)}")
    return ModelFaultError(f"{what} {_ended(err)}")


def _ended(err: BaseException) -> str:
    """How a model's ``sys.exit`` or own ``BaseException`` is named: it is a fault, whatever the code."""
    if isinstance(err, SystemExit):
        return f"called sys.exit({err.code!r}): a model file must not end the process"
    return f"raised {type(err).__name__} (a BaseException): {first_line(err)}"
