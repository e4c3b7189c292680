"""benchmarks/zoo_table.py on one model with a tiny budget: the markdown it prints, not its speed."""

import importlib.util
import re

import pytest

from tests.conftest import REPO


def _load_script():
    spec = importlib.util.spec_from_file_location("zoo_table", REPO / "benchmarks" / "zoo_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_table_rows_targets_and_help_figure(capsys):
    zoo_table = _load_script()
    args = ["--models", "fnn", "--batch", "1,2", "--budget", "0.05", "--help-runs", "2", "--repeat", "2"]
    assert zoo_table.main(args) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| fnn |")]
    assert len(rows) == 2 and rows[0].split("|")[2].strip() == "1x64"
    # median ratio in bold, then the lowest and highest of the 2 runs
    assert all(re.search(r"\*\*\d+\.\d\dx\*\* \(\d+\.\d\d-\d+\.\d\d\)", row) for row in rows)
    assert ">= 1.3x" in rows[0] and ">= 1.0x" in rows[1]
    assert "Machine: " in out and "Made by: `python benchmarks/zoo_table.py --models fnn" in out
    help_line = re.search(r"`lndeploy --help` start-up: median (\d+) ms over 2 fresh processes", out)
    assert help_line and int(help_line.group(1)) > 0


def test_targets_follow_the_issue():
    zoo_table = _load_script()
    assert zoo_table.target_for("rnn", 1) == 2.0 and zoo_table.target_for("cnn", 1) == 1.3
    assert all(zoo_table.target_for(m, 32) == 1.0 for m in zoo_table.ZOO)
