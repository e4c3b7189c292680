"""The timing core on plain Python callables: statistics, rounds, rotation, budgets and counts."""

import math

import numpy as np
import pytest

from lndeploy.bench import timing


@pytest.mark.parametrize("q", [0, 10, 50, 90, 99, 100])
def test_percentile_matches_numpy(q):
    values = sorted(np.random.default_rng(0).random(37).tolist())
    assert timing.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_stats_in_milliseconds_and_faults_per_run():
    samples = timing.Samples(latencies=[0.001, 0.003, 0.002, 0.010], round_medians=[0.002], faults=8)
    st = timing.stats(samples)
    assert st.runs == 4
    assert st.median_ms == pytest.approx(2.5) and st.min_ms == pytest.approx(1.0) and st.max_ms == pytest.approx(10.0)
    assert st.p90_ms == pytest.approx(float(np.percentile([1, 3, 2, 10], 90)))
    assert st.mean_ms == pytest.approx(4.0) and st.faults_per_run == 2.0


def _busy(n):
    def fn():
        total = 0
        for i in range(n):
            total += i
        return total
    return fn


def test_rounds_interleave_with_rotating_order(monkeypatch):
    calls = []
    real = timing.time_slice

    def spy(fn, seconds, max_calls):
        calls.append(fn.name)
        return real(fn, seconds, max_calls)

    monkeypatch.setattr(timing, "time_slice", spy)
    fns = {}
    for name in "abc":
        fn = _busy(200)
        fn.name = name
        fns[name] = fn
    results = timing.run_rounds(fns, budget_s=0.01)
    rounds = [calls[i:i + 3] for i in range(0, len(calls), 3)]
    assert len(rounds) >= timing.MIN_ROUNDS
    assert rounds[0] == ["a", "b", "c"] and rounds[1] == ["b", "c", "a"] and rounds[2] == ["c", "a", "b"]
    for name, samples in results.items():
        assert len(samples.round_medians) == len(rounds)
        assert samples.runs >= len(rounds)
        assert all(math.isfinite(v) and v > 0 for v in samples.latencies)


def test_budget_bounds_the_timed_time_and_progress_sees_it():
    seen = []
    results = timing.run_rounds({"a": _busy(100), "b": _busy(100)}, budget_s=0.2, progress=seen.append)
    timed = sum(sum(s.latencies) for s in results.values())
    assert sum(seen) == pytest.approx(timed)
    # stops after the round in which the budget ran out: at most one extra round of slices
    slice_s = max(timing.MIN_SLICE_S, 0.2 / (timing.TARGET_ROUNDS * 2))
    assert 0.2 <= timed <= 0.2 + 2 * slice_s + 0.05


def test_max_runs_caps_every_backend():
    results = timing.run_rounds({"a": _busy(10), "b": _busy(10)}, budget_s=60, max_runs=5)
    assert [s.runs for s in results.values()] == [5, 5]


def test_slow_call_still_gets_min_rounds():
    results = timing.run_rounds({"slow": _busy(200_000)}, budget_s=1e-6)
    assert results["slow"].runs >= timing.MIN_ROUNDS


def test_round_ratios_pair_rounds():
    base = timing.Samples(round_medians=[2.0, 4.0, 6.0])
    other = timing.Samples(round_medians=[1.0, 1.0])
    assert timing.round_ratios(base, other) == [2.0, 4.0]
