"""Machine facts, the other-processes CPU share, and the allocator setting that stops re-faulting."""

import os
import resource
import sys

import pytest

from lndeploy.benchmark import allocator, machine


def test_machine_facts_name_the_cpu_and_cores():
    facts = machine.machine_facts()
    assert facts["cpu_model"] and facts["cpu_model"] != "unknown"
    assert 1 <= facts["usable_cores"] <= facts["logical_cores"]
    if sys.platform.startswith("linux"):
        assert facts["physical_cores"] >= 1 and facts["memory_gib"] > 0 and len(facts["load_average_start"]) == 3


def test_versions_are_of_installed_distributions():
    versions = machine.versions("no-such-distribution-xyz")
    assert versions["torch"].startswith("2.") and "no-such-distribution-xyz" not in versions


def test_other_processes_share_subtracts_our_own_cpu_time():
    hz = os.sysconf("SC_CLK_TCK")
    # 1000 ticks passed, 300 busy, 1 s of them (hz ticks) ours
    share = machine.other_processes_share((0, 0, 0.0), (300, 1000, 1.0))
    assert share == pytest.approx((300 - hz) / 1000, abs=1e-3)
    assert machine.other_processes_share((0, 0, 0.0), (0, 0, 0.0)) is None
    assert machine.other_processes_share(None, (1, 2, 0.0)) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt and /proc are Linux's")
def test_snapshot_is_monotonic():
    a = machine.cpu_snapshot()
    sum(i * i for i in range(200_000))
    b = machine.cpu_snapshot()
    assert b[1] >= a[1] and b[2] >= a[2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux's")
def test_keep_freed_memory_stops_refaulting_large_buffers():
    import torch

    done = allocator.keep_freed_memory()
    assert done["applied"] is True
    n = 2**21  # 8 MiB of float32: above glibc's default mmap threshold
    for _ in range(20):  # warm-up: the heap grows to its working size once
        torch.empty(n).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.empty(n).fill_(1.0)
    per_call = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
    assert per_call < 64  # 2048 pages per call when every buffer is faulted in afresh
