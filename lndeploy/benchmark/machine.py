"""Facts about the machine and the software a benchmark ran on, so two runs can be compared honestly.

Everything here is read, never assumed: the CPU model from ``/proc/cpuinfo`` (or ``platform``), the
cores this process may use from its affinity mask (a container may get fewer than the host has), and
the load average, because other processes on a 2-core machine move every number.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata


def usable_cores() -> int:
    """Cores this process may run on (affinity mask), else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cpuinfo() -> list[dict]:
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return []
    blocks = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip()] = value.strip()
        blocks.append(entry)
    return blocks


def cpu_model(cpuinfo: list[dict] | None = None) -> str:
    cpuinfo = _cpuinfo() if cpuinfo is None else cpuinfo
    for entry in cpuinfo:
        if entry.get("model name"):
            return entry["model name"]
    return platform.processor() or platform.machine() or "unknown"


def physical_cores(cpuinfo: list[dict]) -> int | None:
    cores = {(e.get("physical id"), e.get("core id")) for e in cpuinfo if "core id" in e}
    return len(cores) or None


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def load_average() -> list | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_facts() -> dict:
    info = _cpuinfo()
    flags = info[0].get("flags", "").split() if info else []
    return {
        "cpu_model": cpu_model(info),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(info),
        "usable_cores": usable_cores(),
        "virtualized": ("hypervisor" in flags) if flags else None,
        "simd": [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "neon") if f in flags],
        "memory_gib": memory_gib(),
        "os": platform.platform(),
        "hostname": platform.node(),
        "load_average_start": load_average(),
    }


def versions(*extra: str) -> dict:
    """Versions of the packages that ran, by distribution name; absent ones are left out."""
    out = {"python": sys.version.split()[0]}
    for dist in ("lndeploy", "numpy", "torch", "onnx", "onnxruntime-gpu", "onnxruntime", "onnxscript", *extra):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def cpu_snapshot() -> tuple | None:
    """(busy ticks of all CPUs, all ticks, this process's CPU seconds, steal ticks) from /proc/stat,
    or None. Steal (the 8th field) is time a hypervisor ran other guests on these CPUs."""
    try:
        with open("/proc/stat", encoding="utf-8") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    usage = os.times()
    steal = fields[7] if len(fields) > 7 else 0
    return sum(fields) - idle, sum(fields), usage.user + usage.system, steal


def steal_share(start: tuple | None, end: tuple | None) -> float | None:
    """Fraction of the CPU ticks between two snapshots that the hypervisor gave to other guests."""
    if start is None or end is None or len(start) < 4 or len(end) < 4 or end[1] <= start[1]:
        return None
    return round(min(max((end[3] - start[3]) / (end[1] - start[1]), 0.0), 1.0), 3)


def other_processes_share(start: tuple | None, end: tuple | None) -> float | None:
    """Fraction of the machine's CPU capacity that other processes used between two snapshots.

    On a 2-core machine another process's thread takes a core from a 2-thread benchmark: above a
    few percent, latencies (PyTorch's OpenMP barriers above all) are no longer this machine's.
    """
    if start is None or end is None:
        return None
    ticks = end[1] - start[1]
    if ticks <= 0:
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    others = (end[0] - start[0]) - (end[2] - start[2]) * hz
    return round(min(max(others / ticks, 0.0), 1.0), 3)
