"""The ONNX Runtime backend (OrtSession) on graphs where ORT itself misbehaves."""

from __future__ import annotations

import subprocess
import sys
import textwrap

FP16_TRANSPOSE_MATMUL = textwrap.dedent("""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from lndeploy.backends.onnxruntime import OrtSession

    w = np.random.default_rng(0).standard_normal((32, 96)).astype(np.float16)
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16),
         helper.make_node("Transpose", ["xh"], ["t"], perm=[1, 0, 2]),
         helper.make_node("MatMul", ["t", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["s", "b", 96])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    x = np.random.default_rng(1).standard_normal((2, 5, 32)).astype(np.float32)
    y = OrtSession(model, providers=["CPUExecutionProvider"]).run({"x": x})["y"]
    want = x.astype(np.float16).transpose(1, 0, 2).astype(np.float32) @ w.astype(np.float32)
    print(float(np.max(np.abs(y.astype(np.float32) - want))))
""")


def test_fp16_transpose_matmul_does_not_crash_the_process():
    """ORT 1.31's MatmulTransposeFusion segfaults creating a session on this fp16 graph (what torch
    exports for nn.Transformer's attention in an fp16 plan): exit 139, no message. Run in a child so
    a crash fails this test instead of killing the test run."""
    proc = subprocess.run([sys.executable, "-c", FP16_TRANSPOSE_MATMUL], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert float(proc.stdout.strip().splitlines()[-1]) <= 0.05  # fp16 output of a 32-term dot product
