"""bench says when its figures cannot be trusted, by how much, and --strict makes that exit 3."""

from __future__ import annotations

import json

import pytest

from lndeploy.benchmark import machine, reliability
from tests.conftest import ln_model_source

QUIET = {"backend": "onnxruntime", "batch": 1, "round_spread": 1.1, "other_processes_cpu": 0.01, "steal_cpu": 0.0}


def test_a_quiet_run_is_reliable():
    verdict = reliability.assess([QUIET, {**QUIET, "backend": "pytorch"}], threads=2)
    assert verdict["reliable"] and verdict["reasons"] == [] and reliability.summary(verdict) is None
    assert verdict["worst_round_spread"] == pytest.approx(1.1)


@pytest.mark.parametrize("change, words", [
    ({"round_spread": 280.0}, "rounds disagree by 280.0x"),
    ({"other_processes_cpu": 0.88}, "other processes used 88% of the CPU"),
    ({"steal_cpu": 0.2}, "hypervisor took 20%"),
])
def test_each_sign_makes_a_run_unreliable_and_says_by_how_much(change, words):
    verdict = reliability.assess([QUIET, {**QUIET, "backend": "pytorch", **change}], threads=4)
    assert not verdict["reliable"] and len(verdict["reasons"]) == 1 and words in verdict["reasons"][0]
    line = reliability.summary(verdict)
    assert line.startswith("UNRELIABLE") and words in line and "--threads 2" in line


def test_round_spread_and_steal_share():
    assert reliability.round_spread([0.001, 0.002, 0.0015]) == pytest.approx(2.0)
    assert reliability.round_spread([0.001]) is None
    # 1000 ticks passed, 50 of them stolen
    assert machine.steal_share((0, 0, 0.0, 10), (500, 1000, 0.2, 60)) == pytest.approx(0.05)
    assert machine.steal_share(None, (1, 2, 0.0, 0)) is None


@pytest.mark.slow
def test_strict_bench_of_a_model_that_slows_down_exits_3(run_cli, tmp_path):
    """A model whose every call takes longer than the last: its rounds disagree whatever the machine."""
    model = tmp_path / "slower.py"
    model.write_text(ln_model_source(on_call="time.sleep(2e-5 * self.calls)"))
    out = tmp_path / "b.json"
    result = run_cli("bench", model, "--backend", "pytorch", "--batch", "1", "--budget", "0.6", "--strict",
                     "--json", out)
    assert result.code == 3, result.err
    assert "warning: UNRELIABLE timings: pytorch at batch 1: its rounds disagree by" in result.out
    assert result.err.strip().splitlines()[-1].startswith("lndeploy: error: --strict: the timings are unreliable")
    report = json.loads(out.read_text())  # written before the exit
    assert report["reliability"]["reliable"] is False
    assert report["reliability"]["worst_round_spread"] > reliability.MAX_ROUND_SPREAD
