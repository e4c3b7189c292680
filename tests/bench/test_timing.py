"""The timing core on plain Python callables: statistics, rounds, rotation, budgets and counts."""

import math

import numpy as np
import pytest

from lndeploy.benchmark import timing


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
        assert samples.latencies and all(math.isfinite(v) and v > 0 for v in samples.latencies)


class _VirtualClock:
    """Stands in for the ``time`` module inside lndeploy.benchmark.timing: time passes only when a timed
    callable says so, so budgets and slices are exact instead of depending on this machine's load."""

    def __init__(self):
        self.ns = 0

    def perf_counter_ns(self):
        return self.ns

    def perf_counter(self):
        return self.ns * 1e-9

    def callable_taking(self, ms):
        def fn():
            self.ns += int(ms * 1e6)
        return fn


# budget -> slice (budget / 20, at least MIN_SLICE_S), 1 ms calls a slice, rounds until the budget is spent
@pytest.mark.parametrize("budget_s, slice_s, per_slice, rounds", [(1.95, 0.0975, 98, 10), (0.33, 0.05, 50, 4)])
def test_budget_stops_after_the_round_it_runs_out_in_and_progress_sees_it(monkeypatch, budget_s, slice_s,
                                                                          per_slice, rounds):
    clock = _VirtualClock()
    monkeypatch.setattr(timing, "time", clock)
    seen = []
    results = timing.run_rounds({"a": clock.callable_taking(1), "b": clock.callable_taking(1)},
                                budget_s=budget_s, progress=seen.append)
    timed = sum(sum(s.latencies) for s in results.values())
    assert sum(seen) == pytest.approx(timed) and len(seen) == 2 * rounds
    assert [s.runs for s in results.values()] == [rounds * per_slice] * 2
    assert len(results) == 2 and all(len(s.round_medians) == rounds for s in results.values())
    # not before the budget is spent, and at most one round (a slice per backend) past it
    assert budget_s <= timed < budget_s + 2 * (slice_s + 1e-3)


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
