"""Output dims that follow a dynamic input dim are symbolic in the written file (lndeploy.exporter.dims).

The user's model is a bidirectional GRU tagger (tests/user_models/ln_gru_tagger.py), on lndeploy.nn's
LN-GRU and on torch's own nn.GRU, whose output torch's exporter declares as ['batch', 10, 7]. ONNX
Runtime is asked for its warnings (severity 2, its default) and its stderr is read at the fd level.
"""

import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lndeploy import modelfile, pipeline
from lndeploy.errors import ParityError
from lndeploy.exporter import verify
from tests.conftest import REPO

TAGGER = str(REPO / "tests" / "user_models" / "ln_gru_tagger.py")
FACTORIES = ["build", "build_with_torch_gru"]
LENGTHS = (1, 10, 33)  # shorter than, equal to and longer than the example's 10
slow = pytest.mark.slow  # the tests on the taggers: three exports of a few seconds each


def declared_dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def run_ort_at_lengths(path, spec) -> dict[int, tuple]:
    """length -> (output shape, max abs error vs PyTorch), ONNX Runtime logging its warnings."""
    options = ort.SessionOptions()
    options.log_severity_level = 2  # warnings and above, as ONNX Runtime does by default
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    found = {}
    for length in LENGTHS:
        tokens = torch.randint(0, 50, (3, length), generator=torch.Generator().manual_seed(length))
        (got,) = session.run(None, {"tokens": tokens.numpy()})
        with torch.inference_mode():
            expected = spec.module(tokens).numpy()
        assert got.shape == expected.shape
        found[length] = (got.shape, float(np.max(np.abs(got - expected))))
    return found


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("taggers")
    return {factory: pipeline.export(f"{TAGGER}:{factory}", folder / f"{factory}.onnx") for factory in FACTORIES}


@slow
@pytest.mark.parametrize("factory", FACTORIES)
def test_tagger_output_follows_batch_and_seq_and_ort_runs_three_lengths_without_warning(exported, factory, capfd):
    result = exported[factory]
    written = onnx.load(result.path)
    assert declared_dims(written.graph.input[0]) == ["batch", "seq"]
    assert declared_dims(written.graph.output[0]) == ["batch", "seq", 7]
    capfd.readouterr()
    runs = run_ort_at_lengths(result.path, modelfile.load(f"{TAGGER}:{factory}"))
    err = capfd.readouterr().err
    assert "[W:onnxruntime" not in err and "VerifyOutputSizes" not in err, err
    assert {length: shape for length, (shape, _) in runs.items()} == {n: (3, n, 7) for n in LENGTHS}
    assert max(error for _, error in runs.values()) <= 1e-4, runs


@slow
def test_the_exporters_fixed_length_is_repaired_with_a_note(exported):
    notes = exported["build_with_torch_gru"].notes
    assert any("output 'output' dim 1 was written as 10" in note and "'seq'" in note for note in notes), notes
    assert not any("dim" in note for note in exported["build"].notes)  # lndeploy.nn's tagger needs nothing


@pytest.fixture(scope="module")
def raw_torch_gru_export(tmp_path_factory):
    """What torch's exporter writes for the nn.GRU tagger, before lndeploy repairs it. Made in a process of
    its own: torch 2.13 exports nn.GRU differently the second time in a process (it then also fixes the
    input's seq to 10, which verification refuses as a specialised dim)."""
    path = tmp_path_factory.mktemp("raw") / "raw.onnx"
    code = ("import onnx, sys\nfrom lndeploy import modelfile\nfrom lndeploy.exporter import torch_export\n"
            "onnx.save(torch_export.run_exporter(modelfile.load(sys.argv[1]), 18), sys.argv[2])\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    subprocess.run([sys.executable, "-c", code, f"{TAGGER}:build_with_torch_gru", str(path)], check=True,
                   env=env, capture_output=True, timeout=300)
    return modelfile.load(f"{TAGGER}:build_with_torch_gru"), path


@slow
def test_raw_export_declares_the_examples_length_and_ort_warns_on_it(raw_torch_gru_export, capfd):
    spec, path = raw_torch_gru_export
    assert declared_dims(onnx.load(path).graph.output[0]) == ["batch", 10, 7]
    capfd.readouterr()
    run_ort_at_lengths(path, spec)  # right values: only the declared shape is wrong
    err = capfd.readouterr().err
    assert "Expected shape from model of {-1,10,7} does not match actual shape of {3,33,7}" in err, err


@slow
def test_verification_refuses_a_fixed_output_dim_that_follows_seq(raw_torch_gru_export):
    spec, path = raw_torch_gru_export
    with pytest.raises(ParityError, match=r"output 'output' dim 1 is fixed to 10 in the graph"):
        verify.verify(onnx.load(path), spec, open_runner=pipeline.verification_runner)


def test_a_dim_that_is_no_input_dim_gets_a_name_of_its_own():
    """y = x.reshape(-1): its one dim is 4 * batch, no input dim's size, so it is named after the output.
    The graph is written by hand with the fixed size the exporter would have typed (8 at batch 2)."""
    from onnx import TensorProto, helper

    from lndeploy.exporter import dims

    spec = modelfile.resolve(Flat(), (torch.randn(2, 4),), {"x": {0: "batch"}})
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])], "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])],
        [helper.make_tensor("shape", TensorProto.INT64, [1], [-1])])
    model = helper.make_model(graph)
    notes = dims.name_output_dims(model, spec, {"batch": 5})
    assert declared_dims(model.graph.output[0]) == ["y_dim0"]
    assert notes == ["output 'y' dim 0 was written as 8 by the exporter although it follows the dynamic dims; "
                     "made symbolic ('y_dim0')"]
    dims.check_output_dims(model, spec, {"batch": 5})  # symbolic now: passes


class Flat(torch.nn.Module):
    def forward(self, x):
        return x.reshape(-1)
