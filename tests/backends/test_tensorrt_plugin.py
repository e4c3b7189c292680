"""The LayerNorm plugin's TensorRT side (issue 3 part 5).

TensorRT-RTX (installed in CI): its ONNX parser finds lndeploy's Python IPluginV3 creator for our node,
passes ``epsilon`` and ``axis``, and the engine builds on the CPU. Full TensorRT (QDP with an AOT
kernel) and anything that launches a kernel need what CI lacks and skip with the reason; on a GPU
machine the launch tests run the exact PTX and launch rule the AOT plugin hands TensorRT.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from onnx import TensorProto, helper

from lndeploy import plugin_spec
from lndeploy.plugins.layernorm import trt_plugin

HAS_RTX = importlib.util.find_spec("tensorrt_rtx") is not None
HAS_FULL_TRT = importlib.util.find_spec("tensorrt") is not None
NO_RTX = "TensorRT-RTX is not installed (pip install tensorrt-rtx)"
NO_FULL_TRT = ("full TensorRT is not installed (pip install tensorrt --extra-index-url https://pypi.nvidia.com; "
               "it needs an NVIDIA GPU)")


def plugin_model(path, shape=("batch", 4, 8), axis=-2, eps=1e-3, with_reference=False):
    """One plugin node over a (batch, 4, 8) input normalizing the last two dims; Scale/B initializers."""
    n = int(np.prod([d for d in shape[axis:]]))
    plugin_spec.register_schema()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    norm_shape = list(shape[axis:])
    scale = helper.make_tensor("scale", TensorProto.FLOAT, norm_shape, np.linspace(0.5, 1.5, n).tolist())
    bias = helper.make_tensor("bias", TensorProto.FLOAT, norm_shape, np.linspace(-1, 1, n).tolist())
    node = plugin_spec.make_node("x", "scale", "bias", "y", epsilon=eps, axis=axis, name="ln0")
    graph = helper.make_graph([node], "g", [x], [y], initializer=[scale, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid(plugin_spec.DOMAIN, 1)])
    if with_reference:
        model = plugin_spec.with_reference_functions(model)
    from lndeploy.onnxfile import save_model

    save_model(model, path)
    return path


@pytest.mark.skipif(not HAS_RTX, reason=NO_RTX)
@pytest.mark.parametrize("with_reference", [False, True])
def test_rtx_parser_finds_our_creator_and_the_engine_builds_on_cpu(tmp_path, with_reference):
    import tensorrt_rtx as trt

    from lndeploy.backends.tensorrt import build_engine, parse_network

    onnx_path = plugin_model(tmp_path / "p.onnx", with_reference=with_reference)
    parsed = parse_network(onnx_path, "tensorrt-rtx")
    plugins = []
    for i in range(parsed.network.num_layers):
        layer = parsed.network.get_layer(i)
        if layer.type == trt.LayerType.PLUGIN_V3:
            layer.__class__ = trt.IPluginV3Layer
            plugins.append(layer.plugin)
    assert len(plugins) == 1
    assert plugins[0].axis == -2 and plugins[0].epsilon == pytest.approx(1e-3)
    assert plugins[0].plugin_namespace == "lndeploy" and plugins[0].plugin_name == "LndeployLayerNorm"
    # a model-local reference function of the same name (for ONNX Runtime) must not replace the plugin
    assert any("reference function" in n for n in parsed.notes) == with_reference
    result = build_engine(onnx_path, tmp_path / "p.engine", runtime="tensorrt-rtx", arch="sm86", progress=False)
    assert result.size_bytes > 0 and result.network["layer_counts"].get("PLUGIN_V3") == 1
    assert any(layer["onnx_nodes"] == ["ln0"] for layer in result.engine_layers)


@pytest.mark.skipif(not HAS_RTX, reason=NO_RTX)
def test_rtx_has_no_qdp_module_which_is_why_a_python_creator_is_used():
    with pytest.raises(ModuleNotFoundError, match="tensorrt_rtx_bindings.plugin"):
        importlib.import_module("tensorrt_rtx.plugin")


def test_rows_and_n_from_static_dims():
    assert trt_plugin.split_rows((2, 3, 4, 8), -2) == (6, 32)
    assert trt_plugin.split_rows((5, 768), -1) == (5, 768)
    assert trt_plugin.split_rows((16, 32, 32), -3) == (1, 16 * 32 * 32)
    assert trt_plugin.normalized_numel((2, 16, 32, 32), -3) == 16 * 32 * 32
    with pytest.raises(ValueError, match="out of range"):
        trt_plugin.split_rows((4, 8), -3)


def test_aot_kernel_for_a_plugin_instance_compiles_without_gpu(monkeypatch):
    """What ``aot_impl`` hands TensorRT, compiled here for sm_80: the aot module's ABI, two tactics."""
    from lndeploy.plugins.layernorm import aot

    if aot.find_toolkit_ptxas() is None:
        pytest.skip("no CUDA toolkit: nvcc/ptxas not on PATH (the PTX version must match the driver's CUDA)")
    monkeypatch.setenv("LNDEPLOY_PTX_ARCH", "80")
    assert trt_plugin.target_arch() == 80
    monkeypatch.delenv("LNDEPLOY_PTX_ARCH")
    from lndeploy.backends.tensorrt.runtime import cuda_gpu

    if cuda_gpu() is None:
        assert trt_plugin.target_arch() == 80  # no GPU: generic sm_80 PTX, JIT-compiled forward by the driver
    one = trt_plugin._compile("fp16", "fp16", 768, 1e-5, 80, 1)
    two = trt_plugin._compile("fp16", "fp16", 768, 1e-5, 80, 2)
    for k in (one, two):
        assert f".entry {k.name}(" in k.ptx and k.abi == ("X", "Scale", "B", "rows", "N", "Y")
        assert k.block_n == 1024 and k.eps == pytest.approx(1e-5) and k.arch == 80
    assert two.num_warps == 2 * one.num_warps
    assert one.grid(1000) == (-(-1000 // one.rows_per_program), 1, 1)


@pytest.mark.skipif(not HAS_FULL_TRT, reason=NO_FULL_TRT)
def test_full_tensorrt_qdp_registration_matches_the_parser_lookup():
    from lndeploy.backends.tensorrt.runtime import load

    rt = load("tensorrt")
    assert trt_plugin.register(rt) == "aot-kernel-in-engine"
    creator = rt.trt.get_plugin_registry().get_creator(plugin_spec.OP_TYPE, plugin_spec.PLUGIN_VERSION,
                                                       plugin_spec.PLUGIN_NAMESPACE)
    assert creator is not None
    assert sorted(f.name for f in creator.field_names) == ["axis", "epsilon"]


@pytest.mark.skipif(not HAS_FULL_TRT, reason=NO_FULL_TRT)
def test_full_tensorrt_aot_engine_matches_onnxruntime(tmp_path):
    import lndeploy
    from lndeploy.backends.tensorrt import build_engine
    from lndeploy.backends.tensorrt.runtime import cuda_gpu

    if cuda_gpu() is None:
        pytest.skip("full TensorRT builds and runs engines only with a GPU, and torch sees none")
    onnx_path = plugin_model(tmp_path / "p.onnx")
    result = build_engine(onnx_path, tmp_path / "p.engine", runtime="tensorrt", progress=False)
    assert result.facts["plugins"]["mode"] == "aot-kernel-in-engine"
    x = np.random.default_rng(1).standard_normal((3, 4, 8)).astype(np.float32) * 50 + 200
    got = lndeploy.Session(tmp_path / "p.engine").run({"x": x})["y"]
    want = lndeploy.Session(onnx_path).run({"x": x})["y"]
    assert np.abs(got - want).max() <= 1e-4


def _cuda_reason():
    from lndeploy.backends.tensorrt.runtime import cuda_gpu

    return None if cuda_gpu() is not None else "no CUDA GPU here (kernel launches need one)"


@pytest.mark.skipif(_cuda_reason() is not None, reason=str(_cuda_reason()))
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("shape, axis", [((3, 5, 768), -1), ((2, 16, 32, 32), -3), ((257, 64), -1)])
def test_gpu_aot_ptx_with_the_qdp_launch_rule(dtype, shape, axis):
    """Launch the PTX ``aot_impl`` returns exactly as TensorRT would (args X, Scale, B, rows, N, Y plus
    Triton's two scratch pointers as null; grid ceil(rows / rows_per_program); block num_warps * 32)."""
    cupy = pytest.importorskip("cupy", reason="cupy loads raw PTX for this check")
    import torch

    rows, n = trt_plugin.split_rows(shape, axis)
    short = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}[dtype]
    for tactic in (1, 2):
        kernel = trt_plugin._compile(short, short, n, 1e-5, trt_plugin.target_arch(), tactic)
        x, w, b = _inputs(shape, n, getattr(torch, dtype))
        y = torch.empty_like(x)
        module = cupy.RawModule(code=None, path=_ptx_file(kernel.ptx))
        func = module.get_function(kernel.name)
        args = [cupy.asarray(t) if t.dtype != torch.bfloat16 else cupy.asarray(t.view(torch.int16))
                for t in (x, w, b)]
        out = cupy.asarray(y if y.dtype != torch.bfloat16 else y.view(torch.int16))
        func(kernel.grid(rows), (kernel.threads_per_block, 1, 1),
             (*args, np.int32(rows), np.int32(n), out, np.uint64(0), np.uint64(0)), shared_mem=kernel.shared_mem)
        cupy.cuda.Device().synchronize()
        _assert_close(y, x, w, b, n, dtype)


@pytest.mark.skipif(_cuda_reason() is not None, reason=str(_cuda_reason()))
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_gpu_rtx_enqueue_path_on_raw_pointers(dtype):
    """What the RTX plugin's enqueue does with TensorRT's raw pointers, on TensorRT-like buffers."""
    import torch

    from lndeploy.plugins.layernorm.trt_plugin import device_tensor, launch

    shape, n = (4, 16, 32, 32), 16 * 32 * 32
    torch_dtype = getattr(torch, dtype)
    x, w, b = _inputs(shape, n, torch_dtype)
    y = torch.empty_like(x)
    views = [device_tensor(t.data_ptr(), s, torch_dtype) for t, s in ((x, shape), (w, (n,)), (b, (n,)), (y, shape))]
    stream = torch.cuda.Stream()
    with torch.cuda.stream(torch.cuda.ExternalStream(stream.cuda_stream)):
        launch(*views, 1e-5, n)
    stream.synchronize()
    _assert_close(y, x, w, b, n, dtype)


def _inputs(shape, n, dtype):
    import torch

    gen = torch.Generator(device="cuda").manual_seed(0)
    x = (torch.randn(shape, generator=gen, device="cuda") * 30 + 100).to(dtype)
    w = torch.rand(n, generator=gen, device="cuda").to(dtype) + 0.5
    b = torch.randn(n, generator=gen, device="cuda").to(dtype)
    return x, w, b


def _assert_close(y, x, w, b, n, dtype):
    import torch

    rows = x.numel() // n
    ref = torch.nn.functional.layer_norm(x.float().reshape(rows, n), (n,), w.float(), b.float(), 1e-5)
    err = (y.float().reshape(rows, n) - ref).abs()
    if dtype == "bfloat16":
        # outputs reach |y| ~ 6, where one bf16 step is 0.031: the fp32 result rounded to bf16 may be
        # off by half a step; allow one step (relative to |y|, at least 1e-2), not a blanket 3e-2
        step = torch.finfo(torch.bfloat16).eps * ref.abs()
        assert bool((err <= torch.clamp(step, min=1e-2)).all()), f"bfloat16: max abs error {err.max().item()}"
        return
    tol = 1e-4 if dtype == "float32" else 1e-2  # SPEC section 4 (fp16: one step at |y| < 8 is < 0.008)
    assert err.max().item() <= tol, f"{dtype}: max abs error {err.max().item()}"


def _ptx_file(ptx: str) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    return f.name
