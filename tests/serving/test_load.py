"""Load on a served model: 8 concurrent clients x 200 requests, with and without dynamic batching, no
failed request and every answer bit-identical to the one the same request got alone. The throughput
of this run is printed (the documented numbers come from benchmarks/serve_load.py)."""

from __future__ import annotations

import numpy as np
import pytest

from lndeploy.serving.load import compare_batching
from lndeploy.serving.process import serve_python
from tests.conftest import REPO


@pytest.mark.slow  # two server starts and 3200 requests (~50 s here)
def test_eight_clients_two_hundred_requests_each_all_answers_equal_the_sequential_ones(zoo_export, tmp_path):
    rng = np.random.default_rng(0)
    # one shape, so the server can batch them; eight different inputs, so a mixed-up answer shows
    feeds = [{"tokens": rng.standard_normal((1, 16, 128)).astype(np.float32)} for _ in range(8)]
    results = compare_batching(zoo_export("transformer").path, feeds, clients=8, requests_per_client=200,
                               python=serve_python(REPO), log_dir=tmp_path)
    for label, result in results.items():
        print(f"{label}: {result.summary()}")
        assert result.requests == 1600 and len(result.latencies_ms) == 1600, result.errors
        assert result.failures == 0, result.errors
        assert result.mismatches == 0, f"{label}: max abs difference {result.max_abs_diff}"
        assert result.rps > 0 and result.percentile_ms(50) <= result.percentile_ms(99)
