"""The benchmark report: a JSON document with every figure and the facts needed to compare two runs.

``ratio_vs_pytorch`` = PyTorch's median latency / the backend's median latency, both measured in
the same run at the same batch size (> 1: the backend is faster). ``ratio_vs_pytorch_rounds`` is the
lowest and highest per-round ratio, i.e. how much the speed-up moved during the run.
``--compare a.json b.json``: ``speedup`` = a's median / b's median for each (batch, backend) both
have (> 1: b is faster).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from lndeploy.benchmark import reliability, timing
from lndeploy.errors import BadInputError

SCHEMA = "lndeploy.bench/1"


class BenchReport:
    """A finished run: ``data`` is the JSON document; ``table()`` the text the CLI prints."""

    def __init__(self, data: dict):
        self.data = data

    @property
    def reliable(self) -> bool:
        return self.data["reliability"]["reliable"]

    @property
    def results(self) -> list:
        return self.data["results"]

    def result(self, backend: str, batch: int) -> dict | None:
        return next((r for r in self.results if r["backend"] == backend and r["batch"] == batch), None)

    def ratio(self, backend: str, batch: int) -> float | None:
        row = self.result(backend, batch)
        return row["ratio_vs_pytorch"] if row else None

    def write_json(self, path) -> None:
        from lndeploy.fileio import write_json_atomic

        write_json_atomic(path, self.data)

    def table(self) -> str:
        return format_table(self.data)


def assemble(tgt, facts: dict, versions: dict, active: list, skipped: list, results: list, settings: dict) -> dict:
    rows = []
    for batch_result in results:
        samples = batch_result["samples"]
        base = samples.get("pytorch")
        base_stats = timing.stats(base) if base else None
        for name, sample in samples.items():
            rows.append(_row(batch_result, name, sample, base, base_stats))
    backends = [{"name": r.name, "status": "ran", "provider": r.provider, **r.info} for r in active]
    backends += [{"name": s.name, "status": "skipped", "reason": s.reason} for s in skipped]
    notes = list(tgt.notes)
    assessment = reliability.assess(rows, settings["threads"])
    if tgt.spec is None:
        notes.append("no PyTorch baseline for an artifact: ratios need the model file")
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "target": {"ref": tgt.ref, "kind": tgt.kind, "export_s": tgt.export_seconds},
        "machine": facts,
        "versions": versions,
        "settings": settings,
        "backends": backends,
        "results": rows,
        "reliability": assessment,
        "notes": notes,
    }


def _row(batch_result: dict, name: str, sample, base, base_stats) -> dict:
    st = timing.stats(sample)
    ratio = rounds = None
    if base_stats is not None:
        ratio = base_stats.median_ms / st.median_ms if st.median_ms > 0 else None
        spread = timing.round_ratios(base, sample)
        rounds = [min(spread), max(spread)] if spread else None
    batch = batch_result["batch"]
    return {
        "batch": batch, "backend": name, "shapes": batch_result["shapes"], "runs": st.runs,
        "latency_ms": {"median": st.median_ms, "p90": st.p90_ms, "p99": st.p99_ms, "mean": st.mean_ms,
                       "min": st.min_ms, "max": st.max_ms},
        "throughput_per_s": batch * 1e3 / st.median_ms if st.median_ms > 0 else None,
        "ratio_vs_pytorch": ratio, "ratio_vs_pytorch_rounds": rounds,
        "faults_per_run": st.faults_per_run,
        "other_processes_cpu": batch_result["other_processes_cpu"],
        "steal_cpu": batch_result.get("steal_cpu"),
        "round_spread": reliability.round_spread(sample.round_medians),
        "max_abs_vs_pytorch": batch_result["max_abs_vs_pytorch"].get(name),
    }


def format_table(data: dict) -> str:
    m, v = data["machine"], data["versions"]
    ort = v.get("onnxruntime-gpu") or v.get("onnxruntime") or "-"
    threads = data["settings"]["threads"]
    lines = [f"{data['target']['ref']}: {m['cpu_model']}, {threads} thread{'s' if threads != 1 else ''} "
             f"({m['usable_cores']} usable cores), torch {v.get('torch', '-')}, onnxruntime {ort}",
             f"{'batch':>5}  {'backend':<19}{'median ms':>10}{'p90 ms':>9}{'p99 ms':>9}{'samples/s':>12}"
             f"{'vs pytorch':>11}  {'(rounds)':<12}{'runs':>7}"]
    for r in data["results"]:
        lat = r["latency_ms"]
        ratio = f"{r['ratio_vs_pytorch']:.2f}x" if r["ratio_vs_pytorch"] is not None else "-"
        rounds = r["ratio_vs_pytorch_rounds"]
        spread = f"({rounds[0]:.2f}-{rounds[1]:.2f})" if rounds and r["backend"] != "pytorch" else ""
        lines.append(f"{r['batch']:>5}  {r['backend']:<19}{lat['median']:>10.3f}{lat['p90']:>9.3f}{lat['p99']:>9.3f}"
                     f"{r['throughput_per_s']:>12,.0f}{ratio:>11}  {spread:<12}{r['runs']:>7}")
    for b in data["backends"]:
        if b["status"] == "ran":
            extra = f", graph {b['graph']}" if "graph" in b else ""
            lines.append(f"{b['name']}: {b['provider']}{extra}")
        else:
            lines.append(f"{b['name']}: skipped: {b['reason']}")
    lines += [f"note: {n}" for n in data.get("notes", [])]
    warning = reliability.summary(data["reliability"]) if data.get("reliability") else None
    if warning:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def load_report(path) -> dict:
    """Read a report written by ``bench``; anything else is a BadInputError naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"benchmark report not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInputError(f"{path} is not a readable JSON benchmark report ({type(err).__name__})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("results"), list):
        raise BadInputError(f"{path} is not an lndeploy bench report (schema {SCHEMA} expected)")
    return data


def compare(a: dict, b: dict) -> list:
    """Rows for every (batch, backend) in both reports: medians, b's speed-up over a, both ratios."""
    index = {(r["batch"], r["backend"]): r for r in a["results"]}
    rows = []
    for rb in b["results"]:
        ra = index.get((rb["batch"], rb["backend"]))
        if ra is None:
            continue
        ma, mb = ra["latency_ms"]["median"], rb["latency_ms"]["median"]
        rows.append({"batch": rb["batch"], "backend": rb["backend"], "median_ms_a": ma, "median_ms_b": mb,
                     "speedup": ma / mb if mb > 0 else None,
                     "ratio_vs_pytorch_a": ra["ratio_vs_pytorch"], "ratio_vs_pytorch_b": rb["ratio_vs_pytorch"]})
    return rows


def format_compare(a: dict, b: dict, name_a: str = "a", name_b: str = "b") -> str:
    rows = compare(a, b)
    if not rows:
        raise BadInputError(f"{name_a} and {name_b} share no (batch, backend) pair to compare")
    lines = [f"a = {name_a} ({a['created']}), b = {name_b} ({b['created']}); speed-up = a median / b median "
             "(> 1: b is faster)"]
    for key, label in (("cpu_model", "CPU"), ("usable_cores", "cores")):
        if a["machine"].get(key) != b["machine"].get(key):
            lines.append(f"warning: different {label}: {a['machine'].get(key)} vs {b['machine'].get(key)}")
    for key in sorted(set(a["versions"]) | set(b["versions"])):
        if a["versions"].get(key) != b["versions"].get(key):
            lines.append(f"versions differ: {key} {a['versions'].get(key)} vs {b['versions'].get(key)}")
    if a["settings"].get("threads") != b["settings"].get("threads"):
        lines.append(f"warning: different threads: {a['settings'].get('threads')} vs {b['settings'].get('threads')}")
    lines.append(f"{'batch':>5}  {'backend':<19}{'a ms':>10}{'b ms':>10}{'speed-up':>10}"
                 f"{'a vs pytorch':>14}{'b vs pytorch':>14}")
    for r in rows:
        ra = f"{r['ratio_vs_pytorch_a']:.2f}x" if r["ratio_vs_pytorch_a"] is not None else "-"
        rb = f"{r['ratio_vs_pytorch_b']:.2f}x" if r["ratio_vs_pytorch_b"] is not None else "-"
        lines.append(f"{r['batch']:>5}  {r['backend']:<19}{r['median_ms_a']:>10.3f}{r['median_ms_b']:>10.3f}"
                     f"{r['speedup']:>9.2f}x{ra:>14}{rb:>14}")
    return "\n".join(lines)
