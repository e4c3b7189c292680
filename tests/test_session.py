"""lndeploy.Session: the Python inference API runs the session lndeploy bench times."""

from __future__ import annotations

import numpy as np

from lndeploy import Session
from lndeploy.backends.ort_optimized import CPU_DISABLED_OPTIMIZERS


def test_onnxruntime_session_is_the_tuned_one_and_computes_the_same(zoo_export):
    """On the CPU provider ORT's SkipLayerNormFusion is off (its kernel is slower than Add +
    LayerNormalization here, docs/bench.md); the numbers match the reference evaluator."""
    path = zoo_export("transformer").path
    session = Session(path)
    assert session.provider == "CPUExecutionProvider"
    assert session._impl.disabled_optimizers == CPU_DISABLED_OPTIMIZERS
    untuned = Session(path, disabled_optimizers=())  # the caller's choice wins
    assert untuned._impl.disabled_optimizers == ()
    x = np.random.default_rng(0).standard_normal((3, 7, session.inputs[0].shape[-1])).astype(np.float32)
    feed = {session.input_names[0]: x}
    got, plain = session.run(feed), untuned.run(feed)
    want = Session(path, backend="onnx-reference").run(feed)
    for name in want:
        assert np.max(np.abs(got[name] - want[name])) <= 1e-5
        assert np.max(np.abs(plain[name] - want[name])) <= 1e-5
