"""lndeploy.parity: the one comparison every gate uses."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from lndeploy import parity
from lndeploy.errors import ParityError
from lndeploy.parity import Tolerance, compare_arrays, compare_outputs, run_parity


def test_statistics_name_the_worst_element_and_count_what_is_over():
    expected = np.zeros((2, 3), np.float32)
    actual = expected.copy()
    actual[1, 2], actual[0, 1] = 0.5, 2e-4
    stats = compare_arrays(actual, expected, Tolerance(1e-4))
    assert stats.max_abs == pytest.approx(0.5)
    assert stats.worst_index == [1, 2]
    assert (stats.worst_actual, stats.worst_expected) == (0.5, 0.0)
    assert stats.over_tolerance == 2 and stats.elements == 6
    assert stats.over_fraction == pytest.approx(2 / 6)
    assert stats.mean_abs == pytest.approx((0.5 + 2e-4) / 6, rel=1e-5)
    assert math.isinf(stats.max_rel)  # over a zero reference
    assert not stats.passed


def test_rtol_passes_elements_within_relative_error_only():
    expected = np.array([500.0, 0.001])
    actual = np.array([500.004, 0.0012])
    assert not compare_arrays(actual, expected, Tolerance(1e-5)).passed
    both = compare_arrays(actual, expected, Tolerance(1e-5, 1e-5))
    assert both.over_tolerance == 1 and both.worst_index == [0]  # 0.0002 abs, 20% rel: still over
    assert compare_arrays(actual, expected, Tolerance(1e-3, 1e-5)).passed


def test_nan_on_both_sides_is_equal_and_on_one_side_fails():
    expected = np.array([np.nan, np.inf, 1.0])
    same = compare_arrays(expected.copy(), expected, Tolerance(1e-4))
    assert same.passed and same.matched_nonfinite == 2 and same.max_abs == 0.0
    odd = compare_arrays(np.array([np.nan, np.inf, np.nan]), expected, Tolerance(1e-4))
    assert not odd.passed and odd.nonfinite_mismatch == 1 and math.isnan(odd.max_abs)
    assert "artifact" in odd.error and odd.worst_index == [2]
    flipped = compare_arrays(np.array([np.nan, -np.inf, 1.0]), expected, Tolerance(1e-4))
    assert flipped.nonfinite_mismatch == 1 and not flipped.passed


def test_integers_compare_exactly_and_bf16_is_a_float():
    assert compare_arrays(np.array([1, 2, 3]), np.array([1, 2, 3]), Tolerance(0.0)).passed
    assert compare_arrays(np.array([1, 2, 4]), np.array([1, 2, 3]), Tolerance(0.5)).over_tolerance == 1
    bf = np.array([1.0, 2.0], dtype=ml_dtypes.bfloat16)
    stats = compare_arrays(bf, np.array([1.0, 2.01], np.float32), Tolerance(1e-2))
    assert stats.passed and stats.max_abs == pytest.approx(0.01, abs=1e-6)


def test_shape_mismatch_and_missing_outputs_are_errors_not_skips():
    stats = compare_arrays(np.zeros((2, 3)), np.zeros((2, 4)), Tolerance(1))
    assert stats.error and "shape" in stats.error and not stats.passed
    result = compare_outputs({"a": np.zeros(2)}, {"a": np.zeros(2), "b": np.zeros(2)}, Tolerance(1))
    assert result["a"].passed and "missing from the artifact" in result["b"].error


def test_one_table_user_tolerance_wins():
    assert parity.tolerance("fp16") == Tolerance(1e-2)
    assert parity.tolerance("float32") == Tolerance(1e-4)
    assert parity.tolerance("fp16", atol=0.05) == Tolerance(0.05)
    assert parity.tolerance("fp32", "rewrite").rtol is not None
    with pytest.raises(ValueError):
        parity.tolerance("int8")


def test_run_parity_merges_samples_lazily_and_stops_on_artifact_failure():
    drawn = []

    def samples():
        for i in range(1000):
            drawn.append(i)
            yield {"n": i}, {"x": np.full(3, float(i))}

    def run(feed):
        x = feed["x"]
        if x[0] == 3:
            raise ParityError("artifact failed at n=3")
        return {"y": x + (1e-3 if x[0] == 1 else 0.0)}, {"y": x}

    result = run_parity(samples(), run, Tolerance(1e-4))
    assert drawn == [0, 1, 2, 3]  # lazy: nothing past the failure was generated
    assert not result.passed and result.error == "artifact failed at n=3"
    merged = result.outputs["y"]
    assert merged["worst_sample"] == 1 and merged["over_tolerance"] == 3 and merged["elements"] == 9
    assert [s.passed for s in result.samples] == [True, False, True]
    assert result.samples[1].shapes == {"x": [3]}


def test_no_samples_is_no_pass():
    assert not run_parity(iter(()), lambda feed: ({}, {}), Tolerance(1)).passed
