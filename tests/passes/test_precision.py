"""Precision planning: fp16/bf16 in the ONNX types, every LN an fp32 island, parity with PyTorch fp32.

The zoo is exported once in fp32 (no verification) and planned here the way ``export`` plans it
(plugin rewrite first for ``--ln plugin``), then checked by the export's own verification. The overflow
model goes through ``export`` end to end. TensorRT-RTX parses the plans on the CPU: the layer types it
reads are the evidence that the islands survive into a strongly typed network.
"""

from __future__ import annotations

import re
import textwrap
import warnings

import ml_dtypes
import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import lndeploy
from lndeploy import inputs as gen
from lndeploy import modelfile, plugin_spec
from lndeploy.errors import BadInputError, ParityError
from lndeploy.exporter import verify
from lndeploy.pipeline import export, verification_runner
from lndeploy.passes import ln_to_plugin
from lndeploy.passes.precision import FLOAT, FLOAT16, BFLOAT16, plan_precision, tensor_types
from tests.conftest import ZOO, naive_fp16, zoo_model

LOW = {"fp16": FLOAT16, "bf16": BFLOAT16}
# bf16 keeps 8 significant bits. The recurrent zoo models miss SPEC's 1e-2 in bf16 (measured at the
# example sizes: rnn 1.03e-2, gru 1.44e-2, lstm 1.82e-2): the state is rounded to bf16 at every step,
# and PyTorch's own bf16 autocast misses 1e-2 on them too. Strict xfail: the day they pass, it says so.
BF16_OVER_SPEC = {"rnn", "lstm", "gru"}
BF16_SANE = 5e-2  # what every bf16 plan must still meet on the reference evaluator


def nodes(model):
    return [n for g in plugin_spec.iter_graphs(model.graph) for n in g.node]


def ln_nodes(model):
    return [n for n in nodes(model) if n.op_type == "LayerNormalization" or plugin_spec.is_plugin_node(n)]


def initializers(model) -> dict:
    return {t.name: t for g in plugin_spec.iter_graphs(model.graph) for t in g.initializer}


@pytest.fixture(scope="module")
def fp32(zoo_export):
    """name -> (ModelSpec, fp32 native export, fp32 plugin rewrite)."""
    out = {}
    for name in ZOO + ["overflow"]:
        spec = modelfile.load(zoo_model(name))
        model = onnx.load(zoo_export(name).path)  # this module's own copy of the session's export
        out[name] = (spec, model, ln_to_plugin.rewrite(model)[0])
    return out


@pytest.fixture(scope="module")
def plans(fp32):
    """(name, ln, precision) -> planned model, as ``export`` plans it."""
    cache = {}

    def get(name, ln, precision):
        key = (name, ln, precision)
        if key not in cache:
            _, native, plugin = fp32[name]
            cache[key] = plan_precision(native if ln == "native" else plugin, precision)
        return cache[key]

    return get


# --- the plan's types -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("ln", ["native", "plugin"])
@pytest.mark.parametrize("name", ZOO)
def test_plan_types_io_fp32_ln_islands_fp32_matmuls_reduced(plans, fp32, name, ln, precision):
    planned = plans(name, ln, precision)
    source = fp32[name][1 if ln == "native" else 2]
    types = tensor_types(onnx.shape_inference.infer_shapes(planned))
    assert [v.type.tensor_type.elem_type for v in planned.graph.input] == [FLOAT]
    assert {v.type.tensor_type.elem_type for v in planned.graph.output} == {FLOAT}
    assert len(ln_nodes(planned)) == len(ln_nodes(source))
    original = {n: numpy_helper.to_array(t) for n, t in initializers(source).items()}
    planned_inits = initializers(planned)
    for node in ln_nodes(planned):
        assert {types[i] for i in node.input if i} == {FLOAT}, node.name  # the island's inputs
        assert types[node.output[0]] == FLOAT, node.name
        for param in node.input[1:]:  # Scale/B initializers: the export's own fp32 values, not rounded
            if param in planned_inits:
                base = re.sub(r"_fp32(_\d+)?$", "", param)
                assert np.array_equal(numpy_helper.to_array(planned_inits[param]), original[base]), param
    heavy = [n for n in nodes(planned) if n.op_type in ("MatMul", "Gemm", "Conv")]
    assert heavy and all(types[n.input[0]] == LOW[precision] and types[n.input[1]] == LOW[precision] for n in heavy)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("ln", ["native", "plugin"])
@pytest.mark.parametrize("name", ZOO)
def test_plan_reads_back_as_its_precision(plans, tmp_path, name, ln, precision):
    """check --onnx takes precision (so its default atol) from the artifact: the fp32 LN islands'
    gain and bias must not outvote the reduced weights (cnn's LN over (C,H,W) holds 49152 fp32
    elements against 5418 fp16 conv weights, and read back as fp32, gating fp16 at 1e-4)."""
    from lndeploy.inspection import artifact_form

    path = tmp_path / "plan.onnx"
    onnx.save(plans(name, ln, precision), str(path))
    form = artifact_form(path)
    assert (form["ln"], form["precision"]) == (ln, precision)


@pytest.mark.slow
def test_bf16_weights_come_from_fp32_once_rounded_and_opset_is_raised_for_conv(plans, fp32):
    planned, source = plans("cnn", "native", "bf16"), fp32["cnn"][1]
    assert planned.opset_import[0].version == 22  # ONNX types Conv in bf16 from opset 22 on
    weight = next(n for n in planned.graph.node if n.op_type == "Conv").input[1]
    got = numpy_helper.to_array(initializers(planned)[weight])
    assert got.dtype == ml_dtypes.bfloat16
    assert np.array_equal(got, numpy_helper.to_array(initializers(source)[weight]).astype(ml_dtypes.bfloat16))
    assert plans("fnn", "native", "bf16").opset_import[0].version == 18  # nothing to raise there


@pytest.mark.slow
def test_bad_precision_and_already_reduced_models_are_refused(plans, fp32):
    with pytest.raises(BadInputError, match="precision"):
        plan_precision(fp32["fnn"][1], "int8")
    with pytest.raises(BadInputError, match="already holds reduced-precision"):
        plan_precision(plans("fnn", "native", "fp16"), "fp16")


# --- parity: the export's own verification ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("ln", ["native", "plugin"])
@pytest.mark.parametrize("name", ZOO)
def test_zoo_fp16_plans_pass_export_verification(plans, fp32, name, ln):
    runs = verify.verify(plans(name, ln, "fp16"), fp32[name][0], "fp16", open_runner=verification_runner)  # raises beyond 1e-2
    assert max(max(run.max_abs.values()) for run in runs) <= 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_zoo_bf16_plans_verify_on_the_reference_evaluator(plans, fp32, name, request):
    if name in BF16_OVER_SPEC:
        request.applymarker(pytest.mark.xfail(raises=ParityError, strict=True,
                                              reason="bf16 misses SPEC's 1e-2 on this model (BF16_OVER_SPEC)"))
    planned, spec = plans(name, "native", "bf16"), fp32[name][0]
    sane = verify.run_both(planned, spec, None, verification_runner, precision="bf16")
    assert max(sane.max_abs.values()) <= BF16_SANE
    verify.verify(planned, spec, "bf16", open_runner=verification_runner)


@pytest.mark.slow
@pytest.mark.parametrize("name, precision, lns", [("gru", "fp16", 2), ("transformer", "bf16", 3)])
def test_plugin_export_end_to_end_in_reduced_precision(tmp_path, name, precision, lns):
    """fp16 with plugin nodes inside a Scan body (gru), bf16 with plugin nodes (transformer): the
    written file keeps fp32 I/O and one plugin node per LN, and its verification ran within 1e-2."""
    result = export(zoo_model(name), tmp_path / "m.onnx", ln="plugin", precision=precision)
    written = onnx.load(tmp_path / "m.onnx")
    assert written.graph.input[0].type.tensor_type.elem_type == FLOAT
    assert len(plugin_spec.plugin_nodes(written)) == len(ln_nodes(written)) == lns
    assert result.verification and max(max(run.max_abs.values()) for run in result.verification) <= 1e-2


def test_the_models_own_casts_to_float_are_retargeted_to_fp16(tmp_path):
    """Integer and bool inputs cast to float (Cast(to=FLOAT) in the graph) feed fp16 ops after planning."""
    model = tmp_path / "casts.py"
    model.write_text(textwrap.dedent("""
        import torch
        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin, self.ln = torch.nn.Linear(8, 16), torch.nn.LayerNorm(16)
            def forward(self, ids, mask):
                h = self.lin(ids.float()) * mask.to(torch.float32).unsqueeze(-1)
                return self.ln(h + torch.zeros(h.shape[0], 1, 16))
        def build(): return M()
        def example_inputs():
            return {"ids": torch.randint(0, 5, (2, 3, 8)), "mask": torch.ones(2, 3, dtype=torch.bool)}
        def dynamic_axes(): return {"ids": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}}
    """))
    result = export(str(model), None, precision="fp16")
    casts = [_attr(n, "to") for n in result.model.graph.node if n.op_type == "Cast"]
    assert FLOAT16 in casts and max(max(r.max_abs.values()) for r in result.verification) <= 1e-2


def _attr(node, name):
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


# --- the overflow model -----------------------------------------------------------------------


def _feeds(spec):
    specs = gen.specs_from_examples(spec.inputs, spec.dynamic_axes)
    example = {n: t.numpy() for n, t in spec.inputs.items()}
    return [example, gen.generate(specs, {"batch": 3, "seq": 5}, 7), gen.generate(specs, {"batch": 1, "seq": 33}, 8)]


def _max_abs(model, spec, backend) -> float:
    session = lndeploy.Session(model, backend=backend)
    worst = 0.0
    for feed in _feeds(spec):
        with torch.inference_mode():
            expected = spec.module(torch.from_numpy(feed["x"])).numpy()
        got = session.run(feed)["output"].astype(np.float64)
        err = float(np.max(np.abs(got - expected)))
        worst = err if np.isnan(err) else max(worst, err)
    return worst


@pytest.fixture(scope="module")
def overflow(tmp_path_factory):
    spec = modelfile.load(zoo_model("overflow"))
    path = tmp_path_factory.mktemp("overflow") / "overflow_fp16.onnx"
    export(zoo_model("overflow"), path, precision="fp16")
    return spec, str(path)


def test_overflow_model_spreads_past_fp16_before_ln_and_is_o1_after(overflow):
    spec, _ = overflow
    module = spec.module
    with torch.inference_mode():
        x = spec.inputs["x"]
        stream = module.embed(x) + module.offset
        centred = stream - stream.mean(-1, keepdim=True)
        assert float((centred**2).max()) > 65504  # d*d overflows fp16
        assert float(module(x).abs().max()) < 3


def test_overflow_fp16_plan_passes_on_ort_and_on_the_reference_evaluator(overflow):
    spec, path = overflow
    errors = {backend: _max_abs(path, spec, backend) for backend in ("onnxruntime", "onnx-reference")}
    print("overflow fp16 plan max abs:", errors)  # measured: ORT 1.7e-4, reference 6.2e-4
    assert len(errors) == 2 and all(err <= 1e-2 for err in errors.values()), errors


def test_overflow_naive_fp16_conversion_fails_on_the_reference_evaluator(overflow):
    """Legacy opset-16 export (LN as 9 primitive ops) + plain fp16 conversion: d*d = inf in fp16."""
    spec, _ = overflow
    naive = naive_fp16(spec)
    assert "Pow" in [n.op_type for n in naive.graph.node]
    with np.errstate(over="ignore", invalid="ignore"):
        reference = _max_abs(naive, spec, "onnx-reference")
    ort = _max_abs(naive, spec, "onnxruntime")
    print("naive fp16 max abs: reference", reference, "ORT", ort)  # measured: 0.72 and 3.9e-4
    assert np.isnan(reference) or reference > 1e-2
    assert ort <= 1e-2  # ONNX Runtime's CPU provider upcasts and hides it: why onnx-reference exists


def test_overflow_fp16_ln_with_stash_type_but_no_island_fails_on_the_reference_evaluator(fp32):
    """The island is what holds: an fp16 LayerNormalization with stash_type=1 overflows there."""
    from onnxconverter_common import float16

    spec, model, _ = fp32["overflow"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        no_island = float16.convert_float_to_float16(model, keep_io_types=True)
    (ln,) = [n for n in no_island.graph.node if n.op_type == "LayerNormalization"]
    assert {a.name: a.i for a in ln.attribute if a.name == "stash_type"} == {"stash_type": 1}
    with np.errstate(over="ignore", invalid="ignore"):
        err = _max_abs(no_island, spec, "onnx-reference")
    assert np.isnan(err) or err > 1e-2


# --- TensorRT-RTX: the islands survive into a strongly typed network --------------------------


def _trt_layers(model):
    import tensorrt_rtx as trt  # the dev extra installs it; it builds without a GPU
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT-RTX networks are always strongly typed
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(model.SerializeToString()), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    keep = (builder, network, parser)  # layers live only as long as their network
    return trt, layers, keep


def _types(layer):
    inputs = [layer.get_input(i).dtype for i in range(layer.num_inputs) if layer.get_input(i) is not None]
    return inputs, layer.get_output_type(0)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("name", ["fnn", "cnn", "rnn", "transformer", "overflow"])
def test_tensorrt_rtx_reads_fp32_normalization_and_reduced_matmuls(plans, name, precision):
    trt, layers, _keep = _trt_layers(plans(name, "native", precision))
    low = {"fp16": trt.DataType.HALF, "bf16": trt.DataType.BF16}[precision]
    norms = [layer for layer in layers if layer.type == trt.LayerType.NORMALIZATION]
    heavy = [layer for layer in layers if layer.type in (trt.LayerType.MATRIX_MULTIPLY, trt.LayerType.CONVOLUTION)]
    assert len(norms) == {"fnn": 2, "cnn": 2, "rnn": 1, "transformer": 3, "overflow": 1}[name]
    for layer in norms:
        assert _types(layer) == ([trt.DataType.FLOAT] * 3, trt.DataType.FLOAT), layer.name
    assert heavy and all(set(_types(layer)[0]) == {low} and _types(layer)[1] == low for layer in heavy)


def test_tensorrt_rtx_gives_stash_type_alone_an_fp16_normalization_layer(fp32):
    """Why islands: with stash_type=1 on fp16 input, nothing in the network says fp32 (the layer has
    no compute-precision setting in TensorRT-RTX), unlike the island's fp32 layer above."""
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        no_island = float16.convert_float_to_float16(fp32["overflow"][1], keep_io_types=True)
    trt, layers, _keep = _trt_layers(no_island)
    (norm,) = [layer for layer in layers if layer.type == trt.LayerType.NORMALIZATION]
    assert _types(norm) == ([trt.DataType.HALF] * 3, trt.DataType.HALF)
    assert not hasattr(norm, "compute_precision")
