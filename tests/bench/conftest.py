"""Exports shared by the bench tests (each export costs seconds; made once per session)."""

from pathlib import Path

import onnx
import pytest


@pytest.fixture(scope="session")
def transformer_onnx(zoo_export):
    path = Path(zoo_export("transformer").path)
    return onnx.load(str(path)), path


@pytest.fixture(scope="session")
def fnn_onnx(zoo_export):
    return Path(zoo_export("fnn").path)
