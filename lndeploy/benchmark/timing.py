"""The timing core: warm-up, then interleaved rounds until a time budget or a run count is reached.

Why interleaved: on a shared or thermally throttled machine the speed drifts over seconds. Timing
backend A for ten seconds and then backend B would put the drift into the A/B ratio. Here every round
gives each backend one short time slice, and the order rotates from round to round, so drift (and the
cost of following one particular backend, e.g. its spinning threads still awake) hits all alike.

Each slice starts with a few untimed calls: in a server only one backend runs, its worker threads
are awake and spinning; right after another backend's slice they are asleep, and waking them (a
scheduler wait of up to tens of milliseconds on a loaded machine, measured here for torch's OpenMP
pool) is a cost of the interleaving, not of the backend.

Every call is timed on its own with ``perf_counter_ns``; minor page faults are counted per slice with
``getrusage`` because a fresh large buffer page-faults on every call (docs/bench.md 'No page faults
timed'), which is a property of the caller's allocation pattern, not of the backend, and worth seeing in the report.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

try:  # not on Windows; fault counts are then reported as None
    import resource
except ImportError:  # pragma: no cover
    resource = None

MIN_ROUNDS = 3
TARGET_ROUNDS = 10
MIN_SLICE_S = 0.05
REWARM_CALLS = 2
REWARM_FRACTION = 0.2  # of the slice, untimed, at its start ...
REWARM_MAX_S = 0.03  # ... but no longer: waking threads takes milliseconds


@dataclass
class Samples:
    """What one backend measured in one batch: every latency (s), per-round medians, faults."""

    latencies: list = field(default_factory=list)
    round_medians: list = field(default_factory=list)
    faults: int | None = 0

    @property
    def runs(self) -> int:
        return len(self.latencies)


@dataclass(frozen=True)
class Stats:
    runs: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    faults_per_run: float | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def percentile(sorted_values: list, q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on an already sorted list."""
    if not sorted_values:
        raise ValueError("no samples")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def stats(samples: Samples) -> Stats:
    values = sorted(samples.latencies)
    ms = [v * 1e3 for v in values]
    faults = None if samples.faults is None else samples.faults / len(values)
    return Stats(len(values), percentile(ms, 50), percentile(ms, 90), percentile(ms, 99),
                 sum(ms) / len(ms), ms[0], ms[-1], faults)


def _minor_faults() -> int | None:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource else None


def warm_up(fn, min_calls: int = 3, min_seconds: float = 0.05, max_seconds: float = 2.0) -> int:
    """Call ``fn`` until both minimums are met (lazy init, allocator and thread-pool warm-up), or
    ``max_seconds`` passed for a slow model; returns the number of calls."""
    start = time.perf_counter()
    calls = 0
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if (calls >= min_calls and elapsed >= min_seconds) or elapsed >= max_seconds:
            return calls


def time_slice(fn, seconds: float, max_calls: int) -> tuple[list, int | None]:
    """Re-warm ``fn`` (untimed), then call it repeatedly for ``seconds`` (at least once, at most
    ``max_calls``)."""
    warm_up(fn, REWARM_CALLS, min(seconds * REWARM_FRACTION, REWARM_MAX_S), seconds)
    latencies = []
    clock = time.perf_counter_ns
    faults0 = _minor_faults()
    end = clock() + int(seconds * 1e9)
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        latencies.append((t1 - t0) * 1e-9)
        if t1 >= end or len(latencies) >= max_calls:
            break
    faults1 = _minor_faults()
    return latencies, (None if faults0 is None else faults1 - faults0)


def run_rounds(fns: dict, budget_s: float, max_runs: int | None = None, progress=None) -> dict:
    """Interleave ``fns`` (name -> zero-argument callable) in rounds until ``budget_s`` of timed calls
    is spent or every backend has ``max_runs`` runs; at least ``MIN_ROUNDS`` rounds. Returns
    name -> Samples. ``progress(seconds)`` is called after every slice with the timed seconds.
    """
    names = list(fns)
    results = {name: Samples() for name in names}
    if not names:
        return results
    slice_s = max(MIN_SLICE_S, budget_s / (TARGET_ROUNDS * len(names)))
    cap = max_runs if max_runs else 1 << 62
    spent = 0.0
    rounds = 0
    while True:
        order = names[rounds % len(names):] + names[:rounds % len(names)]
        for name in order:
            left = cap - results[name].runs
            if left <= 0:
                continue
            lat, faults = time_slice(fns[name], slice_s, left)
            _record(results[name], lat, faults)
            spent += sum(lat)
            if progress:
                progress(sum(lat))
        rounds += 1
        done = all(results[n].runs >= cap for n in names)
        if rounds >= MIN_ROUNDS and (spent >= budget_s or done):
            return results


def _record(samples: Samples, latencies: list, faults: int | None) -> None:
    samples.latencies.extend(latencies)
    samples.round_medians.append(percentile(sorted(latencies), 50))
    if faults is None or samples.faults is None:
        samples.faults = None
    else:
        samples.faults += faults


def round_ratios(baseline: Samples, other: Samples) -> list:
    """Per-round ratio baseline/other of the round medians: the spread of the speed-up over the run."""
    return [b / o for b, o in zip(baseline.round_medians, other.round_medians) if o > 0]


def describe() -> dict:
    """The timing procedure's constants, recorded in every report."""
    return {"clock": "time.perf_counter_ns per call", "interleaved_rounds": True, "rotating_order": True,
            "min_rounds": MIN_ROUNDS, "target_rounds": TARGET_ROUNDS, "min_slice_s": MIN_SLICE_S,
            "untimed_calls_per_slice": f">= {REWARM_CALLS} calls and >= min({REWARM_FRACTION:.0%} of the slice, "
                                       f"{REWARM_MAX_S} s)",
            "percentiles": "linear interpolation between closest ranks",
            "throughput": "batch / median latency"}
