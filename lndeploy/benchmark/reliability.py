"""Whether a bench run's figures can be trusted, and by how much they cannot (docs/bench.md
"Reliability").

Two signs, both measured in the run itself: the rounds disagree (a backend's per-round median
latencies spread by more than ``MAX_ROUND_SPREAD``, max/min), or the machine was busy (other
processes' share of the CPU above ``MAX_BUSY_SHARE``, or hypervisor steal above
``MAX_STEAL_SHARE``). On a loaded machine PyTorch's OpenMP threads wait for descheduled workers and
its latency grows a hundredfold while ONNX Runtime's barely moves, so a ratio from such a run is not
the backends' own; fewer threads than cores (``--threads``) leaves room for the other load.
"""

from __future__ import annotations

MAX_ROUND_SPREAD = 1.5  # slowest / fastest round median of one backend
MAX_BUSY_SHARE = 0.05  # other processes' share of the machine's CPU while timing
MAX_STEAL_SHARE = 0.05  # CPU time the hypervisor gave to other guests


def assess(results: list, threads: int) -> dict:
    """``results``: the report's rows (``round_spread``, ``other_processes_cpu``, ``steal_cpu``).
    Returns ``{"reliable", "reasons", "worst_round_spread", "busy_share", "steal_share", "limits"}``."""
    reasons = []
    spreads = [(r["round_spread"], r) for r in results if r.get("round_spread") is not None]
    worst = max(spreads, key=lambda item: item[0], default=(None, None))
    if worst[0] is not None and worst[0] > MAX_ROUND_SPREAD:
        row = worst[1]
        reasons.append(f"{row['backend']} at batch {row['batch']}: its rounds disagree by {worst[0]:.1f}x "
                       f"(slowest/fastest round median; limit {MAX_ROUND_SPREAD}x)")
    busy = _highest(results, "other_processes_cpu")
    if busy is not None and busy > MAX_BUSY_SHARE:
        reasons.append(f"other processes used {busy:.0%} of the CPU while timing (limit {MAX_BUSY_SHARE:.0%})")
    steal = _highest(results, "steal_cpu")
    if steal is not None and steal > MAX_STEAL_SHARE:
        reasons.append(f"the hypervisor took {steal:.0%} of the CPU (steal; limit {MAX_STEAL_SHARE:.0%})")
    return {"reliable": not reasons, "reasons": reasons, "worst_round_spread": worst[0], "busy_share": busy,
            "steal_share": steal, "threads": threads,
            "limits": {"round_spread": MAX_ROUND_SPREAD, "busy_share": MAX_BUSY_SHARE, "steal_share": MAX_STEAL_SHARE}}


def summary(assessment: dict) -> str | None:
    """One line for the table, or None for a reliable run."""
    if assessment["reliable"]:
        return None
    fewer = max(1, assessment["threads"] // 2)
    return ("UNRELIABLE timings: " + "; ".join(assessment["reasons"]) + f". Ratios from this run are not the "
            f"backends' own: rerun on a quiet machine, or with fewer threads (--threads {fewer}) to leave room "
            f"for the other load")


def round_spread(round_medians: list) -> float | None:
    """Slowest / fastest round median (1.0: every round agreed)."""
    medians = [m for m in round_medians if m > 0]
    if len(medians) < 2:
        return None
    return max(medians) / min(medians)


def _highest(results: list, key: str) -> float | None:
    values = [r[key] for r in results if r.get(key) is not None]
    return max(values) if values else None
