"""What `serve` and the kserve backend say before any server runs (fast: no server is started)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from lndeploy.backends.kserve import parse_url
from lndeploy.errors import BadInputError
from lndeploy.serving.server import libpython_dir, plan


def test_serve_in_the_core_environment_is_exit_3_with_the_fix(run_cli, zoo_export):
    # the core venv has numpy 2 and no PyTriton: serve must say where it runs instead
    done = run_cli("serve", zoo_export("fnn").path, "--port", "18999")
    assert done.code == 3, done.err
    assert "environment of its own" in done.err and "make serve-env" in done.err


def test_the_interpreters_own_libpython_is_found():
    folder = libpython_dir()
    assert folder is not None, "this interpreter was built with --enable-shared here"
    assert (folder / sysconfig.get_config_var("INSTSONAME")).is_file()
    assert Path(folder) == Path(sysconfig.get_config_var("LIBDIR"))


def test_serving_plan_batches_only_batch_first_models(zoo_export):
    (gru, fnn) = plan([zoo_export("gru").path, zoo_export("fnn").path], max_batch=8)
    assert (gru.name, gru.max_batch_size, [t.dims for t in gru.outputs]) == (
        "gru", 8, [("batch", "seq", 64), ("batch", 64)])
    assert plan([zoo_export("fnn").path], max_batch=0)[0].max_batch_size == 0
    with pytest.raises(BadInputError, match="both be model 'fnn'"):
        plan([zoo_export("fnn").path, zoo_export("fnn").path], max_batch=8)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:1", "http://127.0.0.1", "http://127.0.0.1:8000/v2/models/x"])
def test_bad_urls_are_bad_input(url):
    with pytest.raises(BadInputError, match="--url"):
        parse_url(url)


def test_urls_name_their_protocol():
    assert parse_url("grpc://127.0.0.1:8001") == ("grpc", "127.0.0.1:8001")
    assert parse_url("127.0.0.1:8000") == ("http", "127.0.0.1:8000")


def test_check_refuses_url_with_an_artifact(run_cli, zoo_export):
    done = run_cli("check", "models/fnn.py", "--onnx", zoo_export("fnn").path, "--url", "http://127.0.0.1:8000",
                   "--model-name", "fnn")
    assert done.code == 2 and "give one of --onnx, --engine and --url" in done.err
    done = run_cli("check", "models/fnn.py", "--model-name", "fnn")
    assert done.code == 2 and "give the server's --url too" in done.err


def test_the_two_environments_keep_their_numpy():
    """docs/serving.md, "Two environments": the core keeps numpy 2 (the onnx-reference backend's fp16
    overflow fidelity, tests/passes/test_precision.py, needs it); PyTriton lives with numpy 1 next door."""
    import subprocess

    import numpy as np

    from lndeploy.serving.process import serve_python
    from tests.conftest import REPO

    assert int(np.__version__.split(".")[0]) >= 2
    code = "import numpy, pytriton.triton, tritonclient.grpc, lndeploy.session; print(numpy.__version__)"
    done = subprocess.run([str(serve_python(REPO)), "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split(".")[0]) < 2


def test_core_and_dev_installs_do_not_pull_pytriton():
    import re
    import tomllib

    from tests.conftest import REPO

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    names = lambda specs: {re.split(r"[\[<>=~!; ]", s, maxsplit=1)[0] for s in specs}  # noqa: E731
    assert "nvidia-pytriton" not in names(project["dependencies"]) | names(extras["dev"])
    assert "nvidia-pytriton" in names(extras["serve"]) and "tritonclient" in names(extras["dev"])


@pytest.mark.slow  # one server start (~15 s here)
def test_sigint_stops_a_server_like_sigterm(zoo_export, tmp_path):
    import signal

    from lndeploy.serving.process import ServerProcess, descendants, free_ports, serve_python
    from tests.conftest import REPO

    with ServerProcess([zoo_export("fnn").path], free_ports(), python=serve_python(REPO),
                       log_path=tmp_path / "serve.log") as server:
        assert descendants(server.process.pid)  # tritonserver and its stub are running
        code, left = server.stop(signal_number=signal.SIGINT)
    assert (code, left) == (0, []), server.log_tail()
