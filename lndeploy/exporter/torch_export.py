"""PyTorch -> ONNX through torch's dynamo exporter, with its silent traps turned into errors."""

from __future__ import annotations

import contextlib
import io
import re
import warnings

from lndeploy.errors import BadInputError, LndeployError, interrupt_in
from lndeploy.modelfile import ModelSpec

MIN_OPSET = 17  # the first opset with LayerNormalization


def output_names(spec: ModelSpec) -> list[str]:
    """Names for the model's outputs (``lndeploy.exporter.outputs``): ``output`` for one tensor,
    ``output_0..`` for several, the keys of a returned dict or ``ModelOutput``."""
    import torch

    from lndeploy.exporter import outputs

    try:
        with torch.inference_mode():
            result = spec.call(spec.inputs)
    except Exception as err:  # on its own example inputs: the model's fault, not lndeploy's
        first = next((line for line in str(err).splitlines() if line.strip()), "").strip()[:300]
        raise BadInputError(f"{spec.source}: forward() on its example inputs raised {type(err).__name__}: "
                            f"{first}") from err
    return outputs.output_names(result)


def dynamic_shapes(spec: ModelSpec) -> dict:
    """torch.export dims from the model's named dynamic axes; one ``Dim`` per name, shared."""
    import torch

    dims = {}
    shapes = {}
    for name in spec.inputs:
        axes = spec.dynamic_axes.get(name, {})
        shapes[name] = {i: dims.setdefault(label, torch.export.Dim(_dim_ident(label))) for i, label in axes.items()}
    # keyword inputs are matched by name, positional ones by position (their names are ours)
    return shapes if spec.as_kwargs else tuple(shapes.values())


def _dim_ident(label: str) -> str:
    """torch.export needs identifiers: a label like "seq-len" becomes "seq_len" (also in the ONNX dims)."""
    ident = re.sub(r"\W", "_", label)
    return ident if ident.isidentifier() else f"d_{ident}"


def run_exporter(spec: ModelSpec, opset: int, debug: bool = False, custom_translation_table=None):
    """Return the exported ``onnx.ModelProto``; exporter chatter is kept unless ``debug``."""
    import torch

    if opset < MIN_OPSET:
        raise BadInputError(
            f"opset {opset} is below {MIN_OPSET}: LayerNormalization needs opset >= {MIN_OPSET} "
            f"(torch's dynamo exporter would silently write opset 18 instead)"
        )
    names = output_names(spec)  # the model's first run: its faults are the model file's (exit 2)
    chatter = io.StringIO()
    redirect = contextlib.nullcontext() if debug else _quiet(chatter)
    try:
        with redirect, torch.no_grad():
            program = torch.onnx.export(
                spec.module,
                () if spec.as_kwargs else tuple(spec.inputs.values()),
                kwargs=dict(spec.inputs) if spec.as_kwargs else None,
                dynamo=True,
                input_names=list(spec.inputs),
                output_names=names,
                dynamic_shapes=dynamic_shapes(spec) if spec.dynamic_axes else None,
                opset_version=opset,
                external_data=False,
                optimize=True,
                verbose=False,
                report=False,
                custom_translation_table=custom_translation_table,
            )
    except KeyboardInterrupt:
        raise
    except Exception as err:
        interrupt = interrupt_in(err)
        if interrupt is not None:  # torch wraps a Ctrl-C during tracing in its own errors
            raise interrupt from None
        raise _explain(err, spec) from err
    except BaseException as err:  # the model's forward() called sys.exit while being traced
        from lndeploy.modelfile import ModelFaultError

        raise ModelFaultError(f"{spec.source}: forward() raised {type(err).__name__} while being exported "
                              f"({err!r}): a model must not end the process") from err
    model = program.model_proto
    got = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if got != opset:
        raise BadInputError(f"asked for opset {opset} but the exporter wrote opset {got}: refusing a silent change")
    return model


@contextlib.contextmanager
def _quiet(buffer):
    import logging

    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        # torch logs its export failures at ERROR through handlers bound to the real stderr
        logging.disable(logging.CRITICAL)
        try:
            yield
        finally:
            logging.disable(previous)


def _explain(err: Exception, spec: ModelSpec) -> LndeployError:
    """One line a person can act on, for the exporter's long messages."""
    text = str(err)
    specialised = re.search(r"(Not all values of|specialized|Constraints violated|marked as dynamic but)", text)
    if specialised:
        dims = sorted({label for axes in spec.dynamic_axes.values() for label in axes.values()})
        hint = _specialised_dim(text) or ", ".join(dims)
        return BadInputError(
            f"a dynamic dim ({hint}) was specialised by the trace: the model's code fixes its size "
            f"(e.g. a Python loop over it; use lndeploy.nn.Recurrent / torch scan for sequences), "
            f"or declare it static in dynamic_axes()"
        )
    root = _root_cause(err)
    first = next((line for line in str(root).splitlines() if line.strip()), type(root).__name__)
    return BadInputError(f"torch.onnx.export failed: {type(root).__name__}: {first.strip()[:300]}")


def _root_cause(err: BaseException) -> BaseException:
    """The innermost exception: torch wraps the cause (a guard, an unsupported op) in generic errors."""
    seen = set()
    while (err.__cause__ or err.__context__) is not None and id(err) not in seen:
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return err


def _specialised_dim(text: str) -> str | None:
    found = re.findall(r"Not all values of (\w+)", text) or re.findall(r"(\w+) was marked as dynamic", text)
    return ", ".join(dict.fromkeys(found)) or None
