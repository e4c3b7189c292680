"""lndeploy.fileio: reports are strict JSON, written whole or not at all."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lndeploy.errors import BadInputError
from lndeploy.fileio import write_json_atomic


def _strict(text: str):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_statistics_are_null_so_strict_parsers_read_the_report(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"passed": False, "outputs": {"y": {"max_abs": float("nan"), "max_rel": np.float64("inf"),
                                                                "mean_abs": 0.5}}, "samples": [(1, float("-inf"))]})
    data = _strict(path.read_text())  # Python's default writes bare NaN/Infinity, which this refuses
    assert data == {"passed": False, "outputs": {"y": {"max_abs": None, "max_rel": None, "mean_abs": 0.5}},
                    "samples": [[1, None]]}


def test_nothing_is_left_when_the_value_cannot_be_written(tmp_path):
    path = tmp_path / "r.json"
    with pytest.raises(TypeError):
        write_json_atomic(path, {"x": object()})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BadInputError, match="output folder does not exist"):
        write_json_atomic(tmp_path / "missing" / "r.json", {})
