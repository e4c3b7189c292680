"""``lndeploy.benchmark`` and ``lndeploy bench`` with tiny budgets: structure and arithmetic, never speed."""

import json
import math

import pytest

from lndeploy.benchmark import bench, compare, load_report
from lndeploy.benchmark.runners import tensorrt_unavailable
from lndeploy.errors import BadInputError, UnavailableError
from tests.conftest import zoo_model

BUDGET = 0.15
NO_TRT = tensorrt_unavailable()


@pytest.fixture(scope="module")
def fnn_report(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "fnn.json"
    progress = []
    result = bench(zoo_model("fnn"), batches=(1, 4), threads=1, budget=BUDGET, json_path=path,
                   progress=lambda done, total: progress.append((done, total)))
    return result, path, progress


def _finite_positive(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_every_backend_and_batch_has_positive_finite_figures(fnn_report):
    result, _path, _ = fnn_report
    ran = {b["name"] for b in result.data["backends"] if b["status"] == "ran"}
    assert {"pytorch", "onnxruntime", "onnxruntime-plugin"} <= ran
    assert {(r["batch"], r["backend"]) for r in result.results} == {(b, n) for b in (1, 4) for n in ran}
    for row in result.results:
        lat = row["latency_ms"]
        assert all(_finite_positive(lat[k]) for k in ("median", "p90", "p99", "mean", "min", "max"))
        assert lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert row["runs"] >= 3 and _finite_positive(row["throughput_per_s"])
        assert row["throughput_per_s"] == pytest.approx(row["batch"] * 1e3 / lat["median"])
        assert row["shapes"] == {"input": [row["batch"], 64]}


def test_ratio_is_pytorch_median_over_backend_median_of_the_same_run(fnn_report):
    result, _path, _ = fnn_report
    for row in result.results:
        base = result.result("pytorch", row["batch"])
        assert row["ratio_vs_pytorch"] == pytest.approx(base["latency_ms"]["median"] / row["latency_ms"]["median"])
        low, high = row["ratio_vs_pytorch_rounds"]
        assert 0 < low <= high
    assert result.ratio("pytorch", 1) == 1.0


def test_backends_compute_the_same_thing(fnn_report):
    result, _path, _ = fnn_report
    for row in result.results:
        if row["backend"] != "pytorch":
            assert 0 <= row["max_abs_vs_pytorch"] <= 1e-4


def test_json_names_machine_versions_threads_and_skips(fnn_report):
    result, path, _ = fnn_report
    data = load_report(path)
    assert data == json.loads(json.dumps(result.data))
    assert data["machine"]["cpu_model"] and data["machine"]["usable_cores"] >= 1
    assert {"torch", "onnx", "python"} <= set(data["versions"])
    assert "onnxruntime-gpu" in data["versions"] or "onnxruntime" in data["versions"]
    assert data["settings"]["threads"] == 1 and data["settings"]["batches"] == [1, 4]
    by_name = {b["name"]: b for b in data["backends"]}
    assert by_name["pytorch"]["threads"] == 1 and by_name["onnxruntime"]["threads"] == 1
    assert by_name["onnxruntime"]["provider"] == "CPUExecutionProvider"
    assert by_name["onnxruntime"]["graph"] == "as exported"
    assert by_name["onnxruntime"]["disabled_optimizers"] == ["SkipLayerNormFusion"] and data["settings"]["ort_tuned"]
    fused = by_name["onnxruntime-fused"]  # an FNN has nothing to fuse
    assert fused["status"] == "skipped" and fused["reason"].startswith("nothing to fuse")
    # bench applies the allocator setting by default: reported as applied wherever this C library takes it
    from lndeploy.benchmark import allocator

    assert data["settings"]["malloc"] == allocator.keep_freed_memory()
    if NO_TRT:
        assert by_name["tensorrt"] == {"name": "tensorrt", "status": "skipped", "reason": NO_TRT}


def test_progress_reaches_its_total(fnn_report):
    _result, _path, progress = fnn_report
    assert progress and progress[-1][0] == progress[-1][1] == pytest.approx(2 * BUDGET)
    assert all(a[0] <= b[0] for a, b in zip(progress, progress[1:]))


def test_compare_divides_a_median_by_b_median_for_the_pairs_both_have(fnn_report):
    """b: the same run with onnxruntime twice as fast at batch 4 and its batch-1 row left out."""
    import copy

    _result, path, _ = fnn_report
    a = load_report(path)
    b = copy.deepcopy(a)
    b["results"] = [r for r in b["results"] if (r["batch"], r["backend"]) != (1, "onnxruntime")]
    faster = next(r for r in b["results"] if (r["batch"], r["backend"]) == (4, "onnxruntime"))
    faster["latency_ms"]["median"] /= 2
    rows = {(r["batch"], r["backend"]): r for r in compare(a, b)}
    assert len(rows) == len(a["results"]) - 1 and (1, "onnxruntime") not in rows
    assert rows[(4, "onnxruntime")]["speedup"] == pytest.approx(2.0)
    assert rows[(4, "onnxruntime")]["median_ms_b"] == pytest.approx(rows[(4, "onnxruntime")]["median_ms_a"] / 2)
    others = [r for key, r in rows.items() if key != (4, "onnxruntime")]
    assert len(others) == 4 and all(r["speedup"] == pytest.approx(1.0) for r in others)


def test_artifact_has_no_pytorch_baseline(fnn_onnx):
    result = bench(str(fnn_onnx), batches=(2,), threads=1, budget=0.05, backends=["onnxruntime"])
    (row,) = result.results
    assert row["backend"] == "onnxruntime" and row["ratio_vs_pytorch"] is None and row["batch"] == 2
    assert any("no PyTorch baseline" in n for n in result.data["notes"])
    with pytest.raises(BadInputError, match="no PyTorch baseline"):
        bench(str(fnn_onnx), backends=["pytorch"], budget=0.05)


def test_artifact_with_sequence_dim_needs_its_size(transformer_onnx):
    _model, path = transformer_onnx
    with pytest.raises(BadInputError, match="--dim seq=N"):
        bench(str(path), backends=["onnxruntime"], budget=0.05)
    result = bench(str(path), backends=["onnxruntime", "onnxruntime-fused"], batches=(1,), dims={"seq": 9},
                   threads=1, budget=0.05)
    assert [r["shapes"] for r in result.results] == [{"tokens": [1, 9, 128]}] * 2
    fused = next(b for b in result.data["backends"] if b["name"] == "onnxruntime-fused")
    assert fused["status"] == "ran" and fused["ort_fusion"]["applied"] and "sdpa_via_mha" in fused["graph"]
    assert fused["ort_fusion"]["max_abs"] <= 1e-4


def test_requested_fused_backend_with_nothing_to_fuse_is_unavailable(fnn_onnx):
    with pytest.raises(UnavailableError, match="nothing to fuse"):
        bench(str(fnn_onnx), backends=["onnxruntime-fused"], budget=0.05)


@pytest.mark.parametrize("kwargs, match", [
    ({"batches": (0,)}, "batch sizes"),
    ({"backends": ["tensorflow"]}, "unknown backend"),
    ({"budget": 0}, "budget"),
    ({"threads": 0}, "threads"),
    ({"json_path": "/nonexistent-folder/x.json"}, "output folder"),
])
def test_bad_arguments_fail_before_any_work(kwargs, match):
    with pytest.raises(BadInputError, match=match):
        bench(zoo_model("fnn"), **kwargs)


@pytest.mark.skipif(not NO_TRT, reason="TensorRT and a GPU are available here")
def test_requested_tensorrt_without_gpu_is_unavailable(fnn_onnx):
    with pytest.raises(UnavailableError, match="tensorrt"):
        bench(str(fnn_onnx), backends=["tensorrt"], budget=0.05)


def test_cli_prints_table_writes_json_and_compares(run_cli, tmp_path, fnn_report):
    _result, earlier, _ = fnn_report
    out = tmp_path / "b.json"
    run = run_cli("bench", zoo_model("fnn"), "--backend", "pytorch,onnxruntime", "--batch", "1,4",
                  "--threads", "1", "--budget", "0.1", "--json", out)
    assert run.code == 0, run.err
    assert "vs pytorch" in run.out and f"wrote {out}" in run.out
    data = load_report(out)
    assert {r["backend"] for r in data["results"]} == {"pytorch", "onnxruntime"}
    cmp = run_cli("bench", "--compare", earlier, out)
    assert cmp.code == 0, cmp.err
    assert "speed-up" in cmp.out and len(cmp.out.strip().splitlines()) >= 1 + 1 + 4


@pytest.mark.parametrize("args, code, text", [
    (("bench",), 2, "give a TARGET"),
    (("bench", zoo_model("fnn"), "--batch", "1,x"), 2, "--batch"),
    (("bench", zoo_model("fnn"), "--dim", "seq"), 2, "NAME=SIZE"),
    (("bench", "--compare", "missing-a.json", "missing-b.json"), 2, "not found"),
])
def test_cli_usage_errors(run_cli, args, code, text):
    run = run_cli(*args)
    assert run.code == code and text in run.err and "Traceback" not in run.err


def test_cli_compare_rejects_other_json(run_cli, tmp_path):
    other = tmp_path / "other.json"
    other.write_text('{"passed": true}')
    run = run_cli("bench", "--compare", other, other)
    assert run.code == 2 and "not an lndeploy bench report" in run.err
