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
    assert session.info()["disabled_optimizers"] == list(CPU_DISABLED_OPTIMIZERS)
    untuned = Session(path, disabled_optimizers=())  # the caller's choice wins
    assert untuned.info()["disabled_optimizers"] == []
    x = np.random.default_rng(0).standard_normal((3, 7, session.inputs[0].shape[-1])).astype(np.float32)
    feed = {session.input_names[0]: x}
    got, plain = session.run(feed), untuned.run(feed)
    want = Session(path, backend="onnx-reference").run(feed)
    for name in want:
        assert np.max(np.abs(got[name] - want[name])) <= 1e-5
        assert np.max(np.abs(plain[name] - want[name])) <= 1e-5


def test_session_is_a_context_manager_and_refuses_to_run_closed(zoo_export):
    import pytest

    from lndeploy.errors import BadInputError

    path = zoo_export("fnn").path
    with Session(path) as session:
        x = np.zeros((2, session.inputs[0].shape[-1]), np.float32)
        first = session.run([x])
        assert list(first) == session.output_names
        timed = session.bind({session.input_names[0]: x})
        timed()
    assert session.runner.closed
    with pytest.raises(BadInputError, match="closed"):
        session.run([x])
