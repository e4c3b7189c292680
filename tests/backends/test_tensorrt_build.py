"""Engines for every zoo model, built on the CPU with TensorRT-RTX (compute capability sm86 only).

Each zoo model is exported once with ``lndeploy.exporter.export``; its plugin variant and its fp16 plan
come from the same passes ``export(ln="plugin")`` and ``export(precision="fp16")`` run, applied to
that export (a second and third dynamo export per model would triple the time for the same graph).
What a user relies on is asserted from the parsed network: each LayerNorm is one NORMALIZATION layer
(native) or one PLUGIN_V3 layer (plugin), in fp32 also inside the fp16 plan, and a Scan RNN is a
TensorRT loop whose profile spans batch and sequence. Measured here: 0.1-0.6 s per build.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tensorrt_rtx  # noqa: F401 - the dev extra installs it: a broken install fails here, not as skips

from lndeploy import plugin_spec
from lndeploy.errors import BadInputError
from tests.conftest import ZOO, zoo_model

pytestmark = pytest.mark.slow  # TensorRT-RTX builds of the zoo: about 4 s each

ARCH = "sm86"
RECURRENT = ("rnn", "lstm", "gru")
_exports: dict = {}
_zoo_export = None  # the session's zoo_export fixture, set by the workdir fixture


def _ln_count(model) -> int:
    return sum(1 for g in plugin_spec.iter_graphs(model.graph) for n in g.node
               if n.op_type == "LayerNormalization" or plugin_spec.is_plugin_node(n))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, zoo_export):
    global _zoo_export
    _zoo_export = zoo_export  # zoo_variant's native files are the session's shared exports
    return tmp_path_factory.mktemp("trt-zoo")


def zoo_variant(workdir, name: str, variant: str):
    """ONNX file of zoo model ``name`` as native / plugin / fp16 (cached for the module)."""
    from lndeploy.onnxfile import load_model, save_model

    key = (name, variant)
    if key in _exports:
        return _exports[key]
    native = Path(_zoo_export(name).path)
    _exports[(name, "native")] = native
    if variant == "plugin":
        from lndeploy.passes import ln_to_plugin

        model, _report = ln_to_plugin.rewrite(load_model(native))
        save_model(model, workdir / f"{name}-plugin.onnx")
    elif variant == "fp16":
        from lndeploy.passes.precision import plan_precision

        save_model(plan_precision(load_model(native), "fp16"), workdir / f"{name}-fp16.onnx")
    if variant != "native":
        _exports[key] = workdir / f"{name}-{variant}.onnx"
    return _exports[key]


def build(workdir, name: str, variant: str, **options):
    from lndeploy.backends.tensorrt import build_engine

    onnx_path = zoo_variant(workdir, name, variant)
    options.setdefault("arch", ARCH)
    options.setdefault("progress", False)
    return build_engine(onnx_path, workdir / f"{name}-{variant}.engine", runtime="tensorrt-rtx", **options)


def parsed_layers(onnx_path):
    from lndeploy.backends.tensorrt import parse_network

    parsed = parse_network(onnx_path, "tensorrt-rtx")
    return parsed, parsed.layers()


@pytest.mark.parametrize("name", ZOO)
def test_fp32_each_layernorm_is_one_normalization_layer(workdir, name):
    result = build(workdir, name, "native")
    parsed, layers = parsed_layers(zoo_variant(workdir, name, "native"))
    expected = _ln_count(parsed.model)
    norms = [l for l in layers if l.type == "NORMALIZATION"]
    assert expected >= 1 and len(norms) == expected
    assert all(l.input_types[0] == l.output_types[0] == "float32" for l in norms)
    assert result.network["layer_counts"]["NORMALIZATION"] == expected
    facts = json.loads((workdir / f"{name}-native.engine.json").read_text())
    assert facts["runtime"]["name"] == "tensorrt-rtx" and facts["targets"] == {"compute_capabilities": [ARCH]}
    assert facts["precision"]["label"] == "fp32" and facts["engine"]["size_bytes"] == result.size_bytes > 0
    # the verbose build log told the engine's own layers, traced back to the ONNX LayerNorm nodes
    ln_nodes = {l.name for l in norms}
    assert any(set(layer["onnx_nodes"]) & ln_nodes for layer in result.engine_layers)


@pytest.mark.parametrize("name", ZOO)
def test_plugin_each_layernorm_is_one_plugin_layer(workdir, name):
    result = build(workdir, name, "plugin")
    parsed, layers = parsed_layers(zoo_variant(workdir, name, "plugin"))
    plugins = [l for l in layers if l.type == "PLUGIN_V3"]
    assert len(plugins) == _ln_count(parsed.model) == parsed.plugin_nodes >= 1
    assert not any(l.type == "NORMALIZATION" for l in layers)
    assert result.facts["plugins"]["ids"] == ["lndeploy::LndeployLayerNorm"]
    assert result.facts["plugins"]["mode"] == "python-creator"


@pytest.mark.parametrize("name", ZOO)
def test_fp16_plan_keeps_layernorm_in_fp32(workdir, name):
    result = build(workdir, name, "fp16")
    _parsed, layers = parsed_layers(zoo_variant(workdir, name, "fp16"))
    norms = [l for l in layers if l.type == "NORMALIZATION"]
    assert norms and all(l.input_types[0] == l.output_types[0] == "float32" for l in norms)
    heavy = [l for l in layers if l.type in ("MATRIX_MULTIPLY", "CONVOLUTION")]
    assert heavy and all(l.output_types[0] == "float16" for l in heavy), "the plan must really be fp16"
    assert result.precision["label"] == "fp16"
    assert result.precision["layernorm"] and all(ln["input_type"] == "float32" for ln in result.precision["layernorm"])


def test_fp16_plan_with_plugin_keeps_plugin_in_fp32(workdir):
    from lndeploy.backends.tensorrt import build_engine
    from lndeploy.onnxfile import load_model, save_model
    from lndeploy.passes.precision import plan_precision

    path = workdir / "transformer-plugin-fp16.onnx"
    save_model(plan_precision(load_model(zoo_variant(workdir, "transformer", "plugin")), "fp16"), path)
    result = build_engine(path, workdir / "t16p.engine", runtime="tensorrt-rtx", arch=ARCH, progress=False)
    ln = result.precision["layernorm"]
    assert len(ln) == 3 and {l["type"] for l in ln} == {"PLUGIN_V3"}
    assert ln and all(l["input_type"] == l["output_type"] == "float32" for l in ln)


@pytest.mark.parametrize("name", RECURRENT)
def test_scan_becomes_a_loop_with_a_batch_and_sequence_profile(workdir, name):
    result = build(workdir, name, "native", shapes={"seq": (1, 100, 512)})
    _parsed, layers = parsed_layers(zoo_variant(workdir, name, "native"))
    types = {l.type for l in layers}
    assert {"TRIP_LIMIT", "RECURRENCE", "ITERATOR", "LOOP_OUTPUT"} <= types
    assert result.network["loops"] == 1
    assert result.profile["dims"] == {"batch": [1, 8, 8], "seq": [1, 100, 512]}
    assert result.facts["profiles"][0]["x"] == {"min": [1, 1, 16], "opt": [8, 100, 16], "max": [8, 512, 16]}


def test_model_example_sizes_set_opt(workdir):
    result = build(workdir, "transformer", "native", model=zoo_model("transformer"))
    assert result.profile["dims"] == {"batch": [1, 2, 8], "seq": [1, 16, 64]}


def test_real_plugin_export_builds_through_the_cli(workdir, run_cli):
    from lndeploy.pipeline import export

    onnx_path, engine = workdir / "rnn-exported-plugin.onnx", workdir / "rnn-p.engine"
    export(zoo_model("rnn"), onnx_path, ln="plugin", verify=False)
    done = run_cli("build", onnx_path, "-o", engine, "--runtime", "tensorrt-rtx", "--arch", ARCH,
                   "--shapes", "seq:1,16,128", "--no-progress")
    assert done.code == 0, done.err
    assert "1 x PLUGIN_V3 (float32->float32)" in done.out and "seq 1..128 (opt 16)" in done.out
    facts = json.loads((workdir / "rnn-p.engine.json").read_text())
    assert facts["network"]["loops"] == 1 and facts["plugins"]["nodes"] == 1


def test_several_rtx_targets_and_progress_on_stderr(workdir, capsys):
    result = build(workdir, "fnn", "native", arch="sm80,sm120", progress=True)
    assert result.targets == {"compute_capabilities": ["sm80", "sm120"]}
    assert "[lndeploy build] Building engine" in capsys.readouterr().err


def test_cli_errors_leave_no_file(workdir, run_cli):
    onnx_path = zoo_variant(workdir, "rnn", "native")
    out = workdir / "bad" / "x.engine"
    out.parent.mkdir()
    cases = [(["--shapes", "seq:8,4,2"], "out of order"),
             (["--shapes", "tokens:1,2,3"], "neither a dynamic dim (batch, seq) nor an input (x)"),
             (["--arch", "sm90"], "not a compute capability"),
             (["--runtime", "tensorrt-rtx", "--arch", "sm86", "--shapes", "x:1,2,3"], "has 2 dynamic dims")]
    for args, message in cases:
        done = run_cli("build", onnx_path, "-o", out, "--no-progress", *args)
        assert done.code == 2 and message in done.err and len(done.err.strip().splitlines()) == 1, done.err
    assert list(out.parent.iterdir()) == []
    done = run_cli("build", workdir / "missing.onnx", "-o", out)
    assert done.code == 2 and "ONNX file not found" in done.err


def test_timing_cache_is_a_noted_no_op_on_rtx(workdir):
    cache = workdir / "timing.cache"
    result = build(workdir, "fnn", "native", timing_cache=cache)
    assert any("TensorRT-RTX has no timing cache" in n for n in result.notes) and not cache.exists()


def test_arch_is_refused_for_full_tensorrt(workdir):
    from lndeploy.backends.tensorrt import build_engine

    with pytest.raises(BadInputError, match="--arch applies to TensorRT-RTX"):
        build_engine(zoo_variant(workdir, "fnn", "native"), workdir / "f.engine", runtime="tensorrt", arch="sm86")
