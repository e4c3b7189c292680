"""Real exports: the zoo and a ConvNeXt block by torch's legacy exporter at opsets 14 and 16 fuse to
the expected number of LN nodes, with no ReduceMean of theirs left, and compute the same outputs
(<= 1e-5 against the unfused graph on ONNX Runtime, <= 1e-4 against PyTorch)."""

import numpy as np
import onnx
import pytest

from lndeploy.backends.onnxruntime import OrtSession
from lndeploy.passes.fuse import histogram
from lndeploy.pipeline import fuse
from tests.conftest import ZOO, zoo_model
from tests.passes.conftest import CONVNEXT, example_feed, torch_outputs

pytestmark = pytest.mark.slow  # every zoo model exported at two opsets, fused and compared

# LN modules per forward: the recurrent models are unrolled over the example's 8 steps
LN_NODES = {"fnn": 2, "cnn": 2, "rnn": 8, "lstm": 24, "gru": 16, "transformer": 3}
OTHER_REDUCE_MEAN: dict = {}  # reductions that are not LNs (none: cnn pools with AveragePool)


def assert_same_outputs(unfused, fused, spec):
    feed = example_feed(spec)
    before, after = OrtSession(str(unfused)).run(feed), OrtSession(str(fused)).run(feed)
    for name in before:
        assert np.max(np.abs(after[name] - before[name])) <= 1e-5, name
    want_all = torch_outputs(spec)
    assert len(after) == len(want_all) >= 1
    for got, want in zip(after.values(), want_all):
        assert np.max(np.abs(got - want)) <= 1e-4


@pytest.mark.parametrize("opset", [14, 16])
@pytest.mark.parametrize("name", ZOO)
def test_zoo_legacy_export_fuses(legacy, tmp_path, name, opset):
    path, spec = legacy(zoo_model(name), opset)
    assert histogram(onnx.load(path)).get("ReduceMean") == 2 * LN_NODES[name] + OTHER_REDUCE_MEAN.get(name, 0)
    out = tmp_path / "fused.onnx"
    result = fuse(path, out)
    ops = histogram(onnx.load(out))
    assert ops.get("LayerNormalization") == LN_NODES[name] == result.ln_nodes
    assert ops.get("ReduceMean", 0) == OTHER_REDUCE_MEAN.get(name, 0)
    assert not {"Pow", "Sqrt"} & set(ops)
    assert result.counts["layer_norm"] == result.counts["ln_scale"] == LN_NODES[name]  # every gain folded
    assert result.opset_after == 17 and result.unconverted == []
    assert_same_outputs(path, out, spec)


@pytest.mark.parametrize("opset", [14, 16])
def test_convnext_block_channel_first_ln(legacy, tmp_path, opset):
    path, spec = legacy(CONVNEXT, opset)
    out = tmp_path / "fused.onnx"
    result = fuse(path, out)
    before, after = histogram(onnx.load(path)), histogram(onnx.load(out))
    assert after.get("LayerNormalization") == 1 and after.get("Transpose") == 2
    assert "ReduceMean" not in after and "Sqrt" not in after
    assert after["Mul"] == before["Mul"] - 1 and after["Add"] == before["Add"] - 2  # gain, eps and bias gone
    assert result.counts["channel_first_layer_norm"] == result.counts["ln_scale"] == result.counts["ln_bias"] == 1
    assert result.unconverted == []
    assert_same_outputs(path, out, spec)
