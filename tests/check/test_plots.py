"""`check --plots DIR`: PNGs of the error, for passing checks too (README "How check decides")."""

import matplotlib.image
import numpy as np
import pytest

from lndeploy.checker.plots import EDGES, ErrorHistograms
from tests.conftest import zoo_model

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_plots_are_valid_pngs_for_a_passing_check(run_cli, zoo_export, tmp_path):
    folder = tmp_path / "plots"
    result = run_cli("check", zoo_model("fnn"), "--onnx", zoo_export("fnn").path, "--samples", "2", "--layers",
                     "--plots", folder)
    assert result.code == 0, result.err
    written = sorted(p.name for p in folder.iterdir())
    assert written == ["errors-output.png", "layers.png"]
    for path in folder.iterdir():
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000  # a drawn figure, not an empty canvas
        image = matplotlib.image.imread(path)
        assert image.shape[0] >= 300 and image.shape[1] >= 600
        assert image[..., :3].std() > 0.05  # something drawn on the white
        assert f"wrote {path}" in result.out


def test_plots_into_a_file_is_refused_before_any_work(run_cli, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    result = run_cli("check", zoo_model("fnn"), "--plots", target)
    assert result.code == 2 and "--plots" in result.err and target.read_text() == "not a folder"


def test_histogram_counts_every_element_once():
    histograms = ErrorHistograms()
    actual = {"y": np.array([1.0, 2.0, 3.0, np.nan, 5.0]), "z": np.zeros(3)}
    expected = {"y": np.array([1.0, 2.0 + 3e-6, 3.5, np.nan, 5.0 + 1e20]), "z": np.zeros(3)}
    histograms.add(actual, expected)
    histograms.add(actual, expected)
    assert histograms.exact == {"y": 4, "z": 6}  # 1.0 and NaN (NaN on both sides is equal), twice
    assert histograms.nonfinite == {"y": 0, "z": 0}
    histograms.add({"y": np.array([np.inf])}, {"y": np.array([1.0])})
    assert histograms.nonfinite["y"] == 1
    assert histograms.counts["y"].sum() == 6  # 3e-6, 0.5 and 1e20 (clipped into the last bin), twice
    assert histograms.counts["y"][-1] == 2 and histograms.counts["y"][np.searchsorted(EDGES, 3e-6, "right") - 1] == 2
