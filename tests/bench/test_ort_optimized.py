"""The ORT-only fused graph: used only when proven equal to the plain graph, else the plain graph."""

import numpy as np
import onnx

from lndeploy.backends.onnxruntime import OrtSession
from lndeploy.backends.ort_optimized import (
    CPU_DISABLED_OPTIMIZERS, FP32_ATOL, disabled_optimizers, generated_feeds, optimize_for_ort, tuned_session)


def _ops(model):
    return {(n.domain or "ai.onnx", n.op_type) for n in model.graph.node}


def test_transformer_attention_is_fused_and_proven(transformer_onnx):
    model, _path = transformer_onnx
    before = model.SerializeToString()
    fused, report = optimize_for_ort(model)
    assert model.SerializeToString() == before  # the portable model is never modified
    assert report.applied, report.reason
    assert ("com.microsoft", "MultiHeadAttention") in _ops(fused)
    assert ("com.microsoft", "BiasGelu") in _ops(fused)
    assert ("ai.onnx", "Softmax") not in _ops(fused)
    # the residual Add + LN stays two ops: ORT's CPU SkipLayerNormalization is slower than both
    assert ("com.microsoft", "SkipLayerNormalization") not in _ops(fused)
    assert ("ai.onnx", "LayerNormalization") in _ops(fused)
    assert report.fusions.get("sdpa_via_mha", 0) >= 1
    assert report.atol == FP32_ATOL and 0 <= report.max_abs <= FP32_ATOL
    # the proof varied every dynamic dim: batch {1, 3} x seq {1, 7, 64}
    assert sorted({tuple(s["tokens"][:2]) for s in report.samples}) == [
        (b, t) for b in (1, 3) for t in (1, 7, 64)]
    # and it holds on inputs the proof did not see
    feed = {"tokens": np.random.default_rng(5).standard_normal((2, 33, 128)).astype(np.float32)}
    a, b = OrtSession(model).run(feed), OrtSession(fused).run(feed)
    assert float(np.max(np.abs(a["output"] - b["output"]))) <= FP32_ATOL


def test_falls_back_when_the_tolerance_does_not_hold(transformer_onnx):
    model, _path = transformer_onnx
    out, report = optimize_for_ort(model, atol=1e-12)  # the fused kernels round differently
    assert out is model and not report.applied
    assert report.max_abs > 1e-12 and "plain graph used" in report.reason


def test_nothing_to_fuse_keeps_the_plain_graph(fnn_onnx):
    model = onnx.load(str(fnn_onnx))
    out, report = optimize_for_ort(model)
    assert out is model and not report.applied and report.reason.startswith("nothing to fuse")
    assert report.fusions == {}


def test_given_feeds_are_the_ones_checked(transformer_onnx):
    model, _path = transformer_onnx
    feeds = [{"tokens": np.ones((2, 5, 128), np.float32)}]
    _out, report = optimize_for_ort(model, feeds)
    assert report.applied and report.samples == [{"tokens": [2, 5, 128]}]


def test_generated_feeds_follow_the_graph_inputs(transformer_onnx):
    model, _path = transformer_onnx
    feeds = generated_feeds(model)
    assert len(feeds) == 6 and all(f["tokens"].dtype == np.float32 and f["tokens"].shape[2] == 128 for f in feeds)


def _session_ops(path, tmp_path, disabled):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled))
    return {n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node}


def test_disabled_optimizer_names_still_exist_in_ort(transformer_onnx, tmp_path):
    # ORT ignores unknown names silently: prove the name still stops the fusion it is meant to stop
    _model, path = transformer_onnx
    assert "SkipLayerNormalization" in _session_ops(path, tmp_path, ())
    assert "SkipLayerNormalization" not in _session_ops(path, tmp_path, CPU_DISABLED_OPTIMIZERS)


def test_tuned_session_only_on_cpu_and_same_results(transformer_onnx):
    model, _path = transformer_onnx
    assert disabled_optimizers(["CPUExecutionProvider"]) == CPU_DISABLED_OPTIMIZERS
    assert disabled_optimizers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == ()
    feed = {"tokens": np.random.default_rng(1).standard_normal((3, 7, 128)).astype(np.float32)}
    tuned = tuned_session(model, threads=1)
    assert tuned.provider == "CPUExecutionProvider"
    got, ref = tuned.run(feed)["output"], OrtSession(model).run(feed)["output"]
    assert float(np.max(np.abs(got - ref))) <= FP32_ATOL
