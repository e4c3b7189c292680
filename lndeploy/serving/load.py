"""Load on a KServe v2 endpoint: concurrent clients, requests per second, p50/p99 latency, and every
answer checked against the answer the same request got when sent alone (docs/serving.md, "Load").

Each client is a thread with its own connection (a tritonclient client is not shared between
threads); requests cycle through ``feeds``. "Equal" means bit-identical: a server that batches
requests must still give each one exactly what it gives it alone, or the difference is reported
(``mismatches``, ``max_abs_diff``). Every loop is bounded in count and in time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class LoadResult:
    url: str
    model: str
    clients: int
    requests: int  # sent, over all clients
    seconds: float
    failures: int  # requests that raised (connection, server error, timeout)
    mismatches: int  # answers not bit-identical to the sequential answer
    max_abs_diff: float
    latencies_ms: list = field(default_factory=list, repr=False)
    errors: list = field(default_factory=list)  # the first few failure messages

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def passed(self) -> bool:
        return self.failures == 0 and self.mismatches == 0 and len(self.latencies_ms) == self.requests

    def summary(self) -> str:
        return (f"{self.clients} clients x {self.requests // max(self.clients, 1)} requests on {self.model}: "
                f"{self.rps:.0f} req/s, p50 {self.percentile_ms(50):.2f} ms, p99 {self.percentile_ms(99):.2f} ms, "
                f"{self.failures} failed, {self.mismatches} differ from the sequential answer")

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "latencies_ms"}
        return {**data, "rps": self.rps, "p50_ms": self.percentile_ms(50), "p99_ms": self.percentile_ms(99)}


def run_load(url: str, model_name: str, feeds: list, *, clients: int = 8, requests_per_client: int = 200,
             timeout_s: float = 600) -> LoadResult:
    """``clients`` threads each send ``requests_per_client`` requests (feed ``(client + i) % len(feeds)``)."""
    from lndeploy.session import Session

    with Session(url, backend="kserve", model_name=model_name) as session:
        expected = [session.run(feed) for feed in feeds]  # sequential: one request at a time
    result = LoadResult(url, model_name, clients, clients * requests_per_client, 0.0, 0, 0, 0.0)
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline = time.monotonic() + timeout_s

    def client(index: int) -> None:
        latencies, failures, mismatches, worst, errors = [], 0, 0, 0.0, []
        try:
            session = Session(url, backend="kserve", model_name=model_name)
        except Exception as err:  # noqa: BLE001 - a client that cannot connect fails all its requests
            session, failures, errors = None, requests_per_client, [str(err)]
        start.wait(timeout=timeout_s)
        for i in range(requests_per_client if session else 0):
            if time.monotonic() > deadline:
                failures += requests_per_client - i
                errors.append(f"client {index}: out of time after {i} requests")
                break
            k = (index + i) % len(feeds)
            began = time.perf_counter()
            try:
                answer = session.run(feeds[k])
            except Exception as err:  # noqa: BLE001 - counted and reported, never retried
                failures += 1
                errors.append(str(err)[:200])
                continue
            latencies.append((time.perf_counter() - began) * 1e3)
            diff = _difference(answer, expected[k])
            if diff != 0.0:
                mismatches, worst = mismatches + 1, max(worst, diff)
        if session:
            session.close()
        with lock:
            result.latencies_ms += latencies
            result.failures += failures
            result.mismatches += mismatches
            result.max_abs_diff = max(result.max_abs_diff, worst)
            result.errors += errors[: max(0, 5 - len(result.errors))]

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait(timeout=timeout_s)
    began = time.perf_counter()
    for thread in threads:
        thread.join(timeout=max(1.0, deadline - time.monotonic()))
    result.seconds = time.perf_counter() - began
    return result


def _difference(answer: dict, expected: dict) -> float:
    """0.0 when every output is bit-identical (NaN where NaN), else the largest abs difference (inf for a
    missing output or another shape)."""
    worst = 0.0
    for name, want in expected.items():
        got = answer.get(name)
        if got is None or got.shape != want.shape or got.dtype != want.dtype:
            return float("inf")
        if not np.array_equal(got, want, equal_nan=want.dtype.kind == "f"):
            worst = max(worst, float(np.nanmax(np.abs(got.astype(np.float64) - want.astype(np.float64)))) or
                        float("inf"))
    return worst


def compare_batching(artifact, feeds: list, *, clients: int = 8, requests_per_client: int = 200, max_batch: int = 8,
                     python=None, log_dir=None, instances: int = 1) -> dict:
    """The same load on ``artifact`` served twice in turn: with dynamic batching (``--max-batch
    max_batch``) and without (``--max-batch 0``). Returns {"dynamic batching": LoadResult, "none": ...}."""
    from pathlib import Path

    from lndeploy.serving.process import ServerProcess, free_ports

    results = {}
    for label, batch in (("dynamic batching", max_batch), ("none", 0)):
        log = Path(log_dir) / f"serve-{batch}.log" if log_dir else None
        args = ["--max-batch", batch, "--instances", instances]
        with ServerProcess([artifact], free_ports(), python=python, args=args, log_path=log) as server:
            results[label] = run_load(server.url, Path(artifact).stem, feeds, clients=clients,
                                      requests_per_client=requests_per_client)
    return results
