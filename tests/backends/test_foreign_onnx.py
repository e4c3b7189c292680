"""ONNX files lndeploy did not write: ONNX's own LayerNormalization node tests and small graphs shaped
like other exporters' output, through ``Session`` (ONNX Runtime and the reference evaluator) and
``lndeploy inspect``. TensorRT-RTX builds of such files are in test_foreign_build.py."""

from __future__ import annotations

import os

import numpy as np
import pytest

import lndeploy
from lndeploy.errors import BadInputError
from tests.backends import foreign_models as fm
from tests.passes.onnx_node_cases import layer_norm_cases

CASES = layer_norm_cases()


@pytest.fixture(scope="module")
def case_files(tmp_path_factory):
    """Each ONNX test model as a file, as the data folder of an onnx wheel holds them."""
    import onnx

    folder = tmp_path_factory.mktemp("onnx-ln-cases")
    paths = {}
    for name, case in CASES.items():
        paths[name] = folder / f"{name}.onnx"
        onnx.save(case.model, str(paths[name]))
    return paths


@pytest.mark.parametrize("backend", ["onnxruntime", "onnx-reference"])
def test_onnx_layer_norm_cases_reproduce_their_stored_outputs(case_files, backend):
    worst = {}
    for name, case in CASES.items():
        session = lndeploy.Session(case_files[name], backend=backend)
        got = session.run(case.inputs)  # a sequence in input order
        assert list(got) == [o.name for o in case.model.graph.output]  # Y, Mean, InvStdDev
        worst[name] = max(float(np.max(np.abs(got[n].astype(np.float64) - want)))
                          for n, want in zip(got, case.outputs, strict=True))
    assert max(worst.values()) <= 1e-5, sorted(worst.items(), key=lambda kv: -kv[1])[:3]


def test_inspect_shows_each_case_as_it_is(case_files, run_cli):
    for name, path in case_files.items():
        result = run_cli("inspect", path)
        assert result.code == 0, (name, result.err)
        assert "dynamic dims: none (static shapes)" in result.out
        assert "precision: fp32" in result.out
        if name.endswith(("_expanded", "_expanded_ver18")):
            assert "normalization nodes: 0" in result.out and "lndeploy fuse" in result.out
            continue
        axis = CASES[name].model.graph.node[0].attribute
        axis = next((a.i for a in axis if a.name == "axis"), -1)
        assert f"LayerNormalization [native] axis={axis} " in result.out, result.out
        assert "also outputs Mean and InvStdDev" in result.out  # which TensorRT cannot build


@pytest.mark.parametrize("dtype_name, label", [("FLOAT16", "fp16"), ("DOUBLE", "fp64"), ("BFLOAT16", "bf16")])
def test_precision_of_a_graph_without_weights_comes_from_its_types(tmp_path, dtype_name, label):
    from onnx import TensorProto

    from lndeploy.inspection import inspect_artifact

    path = fm.layer_norm(tmp_path / "m.onnx", dtype=getattr(TensorProto, dtype_name), scale_as_input=True)
    assert inspect_artifact(path)["precision"]["dominant"] == label  # was fp32: no initializers to count


def test_inspect_names_the_subgraph_an_ln_sits_in(tmp_path, run_cli):
    result = run_cli("inspect", fm.ln_in_if(tmp_path / "if.onnx"))
    assert result.code == 0, result.err
    assert "(in If then_branch)" in result.out and "loop" not in result.out


def test_ir_version_newer_than_ort_reads(tmp_path):
    """onnx 1.23 writes IR 14 by default; ORT 1.31 reads up to 13. Opset 17 needs neither."""
    path = fm.two_inputs_one_dim(tmp_path / "ir14.onnx", ir_version=14)
    x = np.random.default_rng(0).standard_normal((3, 3, 16)).astype(np.float32)
    got = lndeploy.Session(path).run({"a": x, "b_in": x})["y"]
    want = lndeploy.Session(path, backend="onnx-reference").run({"a": x, "b_in": x})["y"]
    assert np.max(np.abs(got - want)) < 1e-5


def test_external_data_is_found_beside_the_model_from_any_folder(tmp_path, run_cli, monkeypatch):
    folder = tmp_path / "exported"
    folder.mkdir()
    fm.with_external_data(folder)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    relative = os.path.join("..", "exported", "model.onnx")
    x = np.ones((2, 4096), np.float32)
    assert np.allclose(lndeploy.Session(relative).run(x)["y"], 0, atol=1e-3)
    result = run_cli("inspect", relative)
    assert result.code == 0 and "external data: model.onnx.data" in result.out, result.err
    os.rename(folder / "model.onnx.data", folder / "moved.data")
    result = run_cli("inspect", relative)  # was exit 4 (onnx's ValidationError)
    assert result.code == 2 and "keeps its weights in model.onnx.data" in result.err, result.err
    with pytest.raises(BadInputError, match="keeps its weights in model.onnx.data"):
        lndeploy.Session(relative)


@pytest.mark.parametrize("name, content", [("engine.json", b'{"format": "lndeploy-engine/1"}'),
                                           ("notes.txt", b"hello"), ("empty.onnx", b"")])
def test_inspect_of_a_file_that_is_not_onnx_is_one_line(tmp_path, run_cli, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    result = run_cli("inspect", path)  # the .json was exit 4: onnx.load picked its JSON parser
    assert result.code == 2 and result.err.startswith("lndeploy: error:") and len(result.err.splitlines()) == 1


def test_session_refuses_a_directory_by_name(tmp_path):
    with pytest.raises(BadInputError, match="is a directory"):
        lndeploy.Session(tmp_path)


@pytest.fixture(scope="module")
def shared_dims(tmp_path_factory):
    return lndeploy.Session(fm.two_inputs_one_dim(tmp_path_factory.mktemp("dims") / "m.onnx"))


def test_inputs_whose_shared_dim_disagrees_are_named(shared_dims):
    a = np.zeros((3, 3, 16), np.float32)
    with pytest.raises(BadInputError, match=r"input 'b_in' dim 0 \(n\) is 2, but input 'a' dim 0 \(n\) is 3"):
        shared_dims.run({"a": a, "b_in": np.zeros((2, 3, 16), np.float32)})


@pytest.mark.parametrize("value, pattern", [
    ("tokens", "is a str .* not a numeric array"),
    (None, "is a NoneType .* not a numeric array"),
    (np.zeros((3, 3, 16), np.complex64), "is complex64, the model expects float32"),
])
def test_inputs_that_are_not_real_numbers_are_refused(shared_dims, value, pattern):
    with pytest.raises(BadInputError, match=pattern):
        shared_dims.run({"a": np.zeros((3, 3, 16), np.float32), "b_in": value})


def test_torch_inputs_of_any_float_type(shared_dims):
    import torch
    a = torch.randn(2, 2, 16).bfloat16().float()  # values bf16 holds exactly: every type carries the same numbers
    want = shared_dims.run({"a": a, "b_in": a.double()})["y"]  # float64 is converted
    got = shared_dims.run([a.bfloat16(), a.bfloat16()])["y"]  # bf16 cannot go through tensor.numpy()
    np.testing.assert_array_equal(got, want)  # bf16 -> float32 is exact: the same graph on the same numbers


def test_a_sequence_input_is_shown_run_and_refused_where_unsupported(tmp_path, run_cli):
    path = fm.sequence_input(tmp_path / "seq.onnx")
    result = run_cli("inspect", path)
    assert result.code == 0 and "input s: sequence<fp32>" in result.out, result.out  # was "input s: 0 []"
    items = [np.full(3, 1.0, np.float32), np.full(3, 2.0, np.float32)]
    for backend in ("onnxruntime", "onnx-reference"):  # was "input 's' has rank 2, the model expects shape ()"
        got = lndeploy.Session(path, backend=backend).run({"s": items, "i": np.array(1)})["y"]
        assert np.array_equal(got, items[1]), backend
    result = run_cli("bench", path, "--budget", "0.05")  # was exit 4: KeyError from the input generator
    assert result.code == 3 and "input 's' is a sequence" in result.err, result.err


def _shapeless(model):
    """``model`` with its graph inputs and outputs declared without a shape (ORT runs such files)."""
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.ClearField("shape")
    return model


def test_shapeless_io_passes_the_check_and_any_other_fault_still_fails(tmp_path, run_cli):
    import onnx

    path = fm.layer_norm(tmp_path / "ln.onnx")
    onnx.save(_shapeless(onnx.load(str(path))), str(path))
    result = run_cli("inspect", path)  # was exit 2: onnx's checker wants a shape field on graph I/O
    assert result.code == 0 and "input x: fp32 any shape (none declared)" in result.out, result.out + result.err
    x = np.random.default_rng(0).standard_normal((2, 3, 16)).astype(np.float32)
    assert lndeploy.Session(path).run({"x": x})["y"].shape == (2, 3, 16)
    broken = onnx.load(str(path))
    broken.graph.node[0].input[0] = "nowhere"
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    result = run_cli("inspect", tmp_path / "broken.onnx")
    assert result.code == 2 and "is not a valid ONNX model" in result.err, result.err
    # the checker's sentence spans lines: the one line keeps the input, the node and the reason
    assert "'nowhere'" in result.err and "LayerNormalization is not output of any previous nodes" in result.err


def test_shapeless_io_with_external_data_is_loaded_and_a_missing_side_file_named(tmp_path):
    import onnx

    from lndeploy.onnxfile import load_model

    path = fm.with_external_data(tmp_path)
    model = _shapeless(onnx.load(str(path), load_external_data=False))
    onnx.save(model, str(path))  # the side file stays as it was
    assert not load_model(path).graph.input[0].type.tensor_type.HasField("shape")
    os.rename(tmp_path / "model.onnx.data", tmp_path / "moved.data")
    with pytest.raises(BadInputError, match="keeps its weights in model.onnx.data"):
        load_model(path)
