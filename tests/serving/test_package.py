"""``lndeploy package``: Triton model repositories whose configs match the artifacts, field by field.

The expected values are read here from the ONNX file with onnx's own API (elem types, dim_value /
dim_param), independently of lndeploy's reading; the written config.pbtxt is parsed with protobuf's
text_format into tritonclient's ``ModelConfig``, as Triton parses it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from lndeploy.errors import BadInputError
from lndeploy.serving import package
from lndeploy.serving.repository import lint
from lndeploy.serving.signature import read
from tests.conftest import ZOO, zoo_model

ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: pb.TYPE_FP32, onnx.TensorProto.FLOAT16: pb.TYPE_FP16,
                  onnx.TensorProto.INT64: pb.TYPE_INT64, onnx.TensorProto.INT32: pb.TYPE_INT32,
                  onnx.TensorProto.BOOL: pb.TYPE_BOOL}


def parse_config(folder) -> pb.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(), pb.ModelConfig())


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_matches_onnx(config, onnx_path, max_batch: int) -> None:
    """Every field of ``config`` against the ONNX graph: names in order, types, batch dim, dims."""
    model = onnx.load(str(onnx_path))
    weights = {t.name for t in model.graph.initializer}
    for declared, values in ((config.input, [v for v in model.graph.input if v.name not in weights]),
                             (config.output, list(model.graph.output))):
        assert [d.name for d in declared] == [v.name for v in values]
        for entry, value in zip(declared, values):
            tensor = value.type.tensor_type
            assert entry.data_type == ONNX_TO_TRITON[tensor.elem_type], entry.name
            dims = list(tensor.shape.dim)
            assert dims[0].dim_param == "batch", "every zoo tensor starts with the batch dim"
            expected = [d.dim_value if d.HasField("dim_value") else -1 for d in dims[1:]]
            assert list(entry.dims) == expected, entry.name
    assert config.max_batch_size == max_batch
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert [(g.count, g.kind) for g in config.instance_group] == [(1, pb.ModelInstanceGroup.KIND_AUTO)]


@pytest.fixture(scope="module")
def zoo_fp16(tmp_path_factory, zoo_export):
    """The fp16 plan of every zoo model, from the same pass ``export(precision="fp16")`` runs."""
    from lndeploy.onnxfile import load_model, save_model
    from lndeploy.passes.precision import plan_precision

    folder = tmp_path_factory.mktemp("zoo-fp16")
    paths = []
    for name in ZOO:
        path = folder / f"{name}_fp16.onnx"
        save_model(plan_precision(load_model(zoo_export(name).path), "fp16"), path)
        paths.append(path)
    return paths


@pytest.mark.slow  # six zoo exports and their fp16 plans (shared with other modules in the full suite)
def test_six_zoo_models_fp32_and_fp16_write_configs_that_match_each_onnx_file(tmp_path, zoo_export, zoo_fp16,
                                                                              run_cli):
    fp32 = [zoo_export(name).path for name in ZOO]
    done = run_cli("package", *fp32, *zoo_fp16, "--triton-repo", tmp_path / "repo")
    assert done.code == 0, done.err
    for onnx_path in [*map(Path, fp32), *zoo_fp16]:
        folder = tmp_path / "repo" / onnx_path.stem
        config = parse_config(folder)
        assert config.name == onnx_path.stem and config.platform == "onnxruntime_onnx"
        assert_matches_onnx(config, onnx_path, max_batch=8)
        assert sha256(folder / "1" / "model.onnx") == sha256(onnx_path)  # the artifact itself, unchanged
    fp16_types = {i.data_type for i in onnx.load(str(zoo_fp16[0])).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in fp16_types  # really an fp16 plan (fp32 I/O, fp16 weights)
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == sorted(
        ZOO + [f"{n}_fp16" for n in ZOO])  # no staging folders left


def test_rtx_engine_packages_as_tensorrt_plan_within_its_profile(tmp_path, zoo_export):
    from lndeploy.backends.tensorrt import build_engine

    onnx_path = zoo_export("rnn").path
    engine = tmp_path / "rnn.engine"
    build_engine(onnx_path, engine, runtime="tensorrt-rtx", arch="sm86", progress=False,
                 shapes={"batch": (1, 4, 4), "seq": (1, 16, 128)})
    (model,) = package([engine], tmp_path / "repo", max_batch=32)
    config = parse_config(model.folder)
    assert config.platform == "tensorrt_plan"
    assert config.max_batch_size == 4  # the profile's max batch, not --max-batch 32
    assert [list(i.dims) for i in config.input] == [[-1, 16]]  # seq varies, features fixed
    assert sha256(model.folder / "1" / "model.plan") == sha256(engine)
    assert (model.folder / "1" / "model.plan.json").is_file()


def test_engine_with_batch_fixed_above_one_is_not_batched(tmp_path, zoo_export):
    from lndeploy.backends.tensorrt import build_engine

    engine = tmp_path / "fnn.engine"
    build_engine(zoo_export("fnn").path, engine, runtime="tensorrt-rtx", arch="sm86", progress=False,
                 shapes={"batch": (4, 4, 4)})
    (model,) = package([engine], tmp_path / "repo")
    config = parse_config(model.folder)
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [4, 64]  # a one-size profile dim is a fixed dim


@pytest.mark.slow  # a dynamo export of the plugin form
def test_plugin_model_carries_its_reference_function_and_runs_on_onnxruntime(tmp_path):
    import numpy as np

    from lndeploy import Session, plugin_spec
    from lndeploy.pipeline import export

    source = tmp_path / "gru_plugin.onnx"
    export(zoo_model("gru"), source, ln="plugin", verify=False)
    assert not onnx.load(str(source)).functions  # the TensorRT form: no local function
    (model,) = package([source], tmp_path / "repo")
    packaged = onnx.load(str(model.folder / "1" / "model.onnx"))
    assert [f.name for f in packaged.functions] == [plugin_spec.OP_TYPE]
    x = np.random.default_rng(0).standard_normal((3, 7, 16)).astype(np.float32)
    ours = Session(str(model.folder / "1" / "model.onnx"), backend="onnxruntime").run({"x": x})
    theirs = Session(str(source), backend="onnxruntime").run({"x": x})
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name])
    assert any("reference function" in n for n in model.notes)


def test_lint_names_each_disagreement(zoo_export):
    sig = read(zoo_export("gru").path)
    from lndeploy.serving.repository import build_config

    config, _ = build_config(sig, 8, 1, "auto", "none", False, 100)
    assert lint(config, sig) == []
    config.input[0].dims[1] = 32
    config.output[1].data_type = pb.TYPE_FP16
    config.max_batch_size = 0
    problems = lint(config, sig)
    assert any("dynamic_batching needs max_batch_size" in p for p in problems)
    assert any("'output_1' is TYPE_FP16" in p for p in problems)
    assert any("input 'x' has rank 2 in the config, 3" in p for p in problems)


def test_accelerator_options_and_instances(tmp_path, zoo_export):
    (model,) = package([zoo_export("transformer").path], tmp_path / "repo", accelerator="tensorrt", fp16=True,
                       instances=3, device="gpu")
    config = parse_config(model.folder)
    (accel,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accel.name == "tensorrt"
    assert dict(accel.parameters) == {"precision_mode": "FP16", "trt_layer_norm_fp32_fallback": "true"}
    assert [(g.count, g.kind) for g in config.instance_group] == [(3, pb.ModelInstanceGroup.KIND_GPU)]


def test_repackaging_replaces_the_folder_and_bad_input_writes_nothing(tmp_path, zoo_export, run_cli):
    repo = tmp_path / "repo"
    source = zoo_export("fnn").path
    package([source], repo, max_batch=2)
    (repo / "fnn" / "stale.txt").write_text("from an older packaging")
    package([source], repo, max_batch=16)
    assert parse_config(repo / "fnn").max_batch_size == 16 and not (repo / "fnn" / "stale.txt").exists()
    done = run_cli("package", zoo_export("cnn").path, tmp_path / "missing.onnx", "--triton-repo", repo)
    assert done.code == 2 and "artifact not found" in done.err
    assert sorted(p.name for p in repo.iterdir()) == ["fnn"]  # cnn was read but not written
    with pytest.raises(BadInputError, match="both be model 'fnn'"):
        package([source, tmp_path / "other" / "fnn.onnx"], repo)
    with pytest.raises(BadInputError, match="--fp16 sets the precision"):
        package([source], repo, fp16=True)
