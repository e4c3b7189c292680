"""Given input sets (check --inputs, sample_inputs()): read as they are, checked against the signature."""

import numpy as np
import pytest

from lndeploy import input_sets
from lndeploy.errors import BadInputError
from lndeploy.inputs import InputSpec

IDS = InputSpec("input_ids", np.dtype(np.int64), ("batch", "seq"))
MASK = InputSpec("attention_mask", np.dtype(np.int64), ("batch", "seq"))
X = InputSpec("x", np.dtype(np.float32), ("batch", 8))


def test_npz_is_one_set_used_as_given(tmp_path):
    ids = np.arange(12, dtype=np.int64).reshape(3, 4)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=np.int64)
    np.savez(tmp_path / "batch.npz", input_ids=ids, attention_mask=mask)
    [(sizes, feed)] = input_sets.schedule(input_sets.load(tmp_path / "batch.npz"), [IDS, MASK], "t")
    assert sizes == {"batch": 3, "seq": 4}
    assert np.array_equal(feed["input_ids"], ids) and np.array_equal(feed["attention_mask"], mask)


def test_folder_of_npz_is_one_set_each_in_name_order_and_folder_of_npy_is_one_set(tmp_path):
    for i, batch in enumerate((1, 5)):
        np.savez(tmp_path / f"{i:03d}.npz", x=np.full((batch, 8), i, np.float32))
    sets = input_sets.load(tmp_path)
    assert [s["x"].shape for s in sets] == [(1, 8), (5, 8)]
    npy = tmp_path / "npy"
    npy.mkdir()
    np.save(npy / "input_ids.npy", np.ones((2, 3), np.int64))
    np.save(npy / "attention_mask.npy", np.zeros((2, 3), np.int64))
    [only] = input_sets.load(npy)
    assert set(only) == {"input_ids", "attention_mask"}


def test_bare_npy_feeds_a_one_input_model_only(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 8), np.float32))
    [(sizes, feed)] = input_sets.schedule(input_sets.load(tmp_path / "x.npy"), [X], "t")
    assert sizes == {"batch": 2} and feed["x"].shape == (2, 8)
    with pytest.raises(BadInputError, match="bare .npy gives one input"):
        list(input_sets.schedule(input_sets.load(tmp_path / "x.npy"), [IDS, MASK], "t"))


@pytest.mark.parametrize("given, message", [
    ({"x": np.zeros((2, 8), np.float64)}, "input 'x' is float64, the model takes float32"),
    ({"x": np.zeros((2, 8, 1), np.float32)}, "rank 3"),
    ({"x": np.zeros((2, 9), np.float32)}, "dim 1 = 9, the model fixes it to 8"),
    ({"y": np.zeros((2, 8), np.float32)}, r"missing \['x'\]"),
    ({"x": np.zeros((2, 8), np.float32), "z": np.zeros(1)}, r"unknown \['z'\]"),
    ([np.zeros((2, 8), np.float32)], "must be a dict"),
])
def test_a_set_that_does_not_fit_the_signature_is_one_line(given, message):
    with pytest.raises(BadInputError, match=message) as err:
        input_sets.validate(given, [X], "f.npz, input set 0")
    assert "\n" not in str(err.value) and str(err.value).startswith("f.npz, input set 0")


def test_inputs_sharing_a_dynamic_dim_must_agree():
    with pytest.raises(BadInputError, match="'seq'.*= 5, another input of the set has 4"):
        input_sets.validate({"input_ids": np.zeros((1, 4), np.int64), "attention_mask": np.zeros((1, 5), np.int64)},
                            [IDS, MASK], "t")


def test_tensors_are_taken_through_detach_numpy():
    import torch

    sizes, feed = input_sets.validate({"x": torch.ones(3, 8)}, [X], "t")
    assert isinstance(feed["x"], np.ndarray) and sizes == {"batch": 3}


@pytest.mark.parametrize("name, content", [("a.txt", b"hi"), ("bad.npz", b"not a zip"), ("obj.npy", None)])
def test_unreadable_or_unsafe_files_are_bad_input(tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(content)
    with pytest.raises(BadInputError):
        input_sets.load(path)


def test_missing_or_empty_folder_is_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        input_sets.load(tmp_path / "nope.npz")
    with pytest.raises(BadInputError, match="no .npz or .npy"):
        input_sets.load(tmp_path)
