"""Exports shared by the bench tests (each export costs seconds; made once per session)."""

import pytest

from lndeploy.export import export
from tests.conftest import zoo_model


@pytest.fixture(scope="session")
def transformer_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench-transformer") / "transformer.onnx"
    return export(zoo_model("transformer"), path).model, path


@pytest.fixture(scope="session")
def fnn_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench-fnn") / "fnn.onnx"
    export(zoo_model("fnn"), path)
    return path
