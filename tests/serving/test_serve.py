"""``lndeploy serve`` for real: a Triton Inference Server (PyTriton's) on 127.0.0.1, in the serve
environment that ``make test`` builds (PyTriton pins numpy<2; docs/serving.md, "Two environments").

One server for the module serves the transformer, the LN-GRU and a transformer whose first LayerNorm
scale is perturbed by +0.05. Clients speak KServe v2 over HTTP and gRPC through tritonclient. The last
test stops the server with SIGTERM and checks that it and every process it started are gone.
"""

from __future__ import annotations

import re
import urllib.request

import numpy as np
import onnx
import psutil
import pytest

from lndeploy import Session
from lndeploy.serving.process import ServerProcess, free_ports, serve_python
from tests.conftest import REPO, zoo_model

pytestmark = pytest.mark.slow  # one server start (~15 s here) for the module


def perturbed_layer_norm(source, target) -> None:
    """``source`` with its first LayerNormalization's scale + 0.05 (in a tensor of its own: the exporter
    shares identical initializers between layers)."""
    model = onnx.load(str(source))
    node = next(n for n in model.graph.node if n.op_type == "LayerNormalization")
    scale = next(t for t in model.graph.initializer if t.name == node.input[1])
    values = onnx.numpy_helper.to_array(scale) + np.float32(0.05)
    model.graph.initializer.append(onnx.numpy_helper.from_array(values, "perturbed_ln_scale"))
    node.input[1] = "perturbed_ln_scale"
    onnx.save(model, str(target))


@pytest.fixture(scope="module")
def server(tmp_path_factory, zoo_export):
    folder = tmp_path_factory.mktemp("serve")
    transformer, gru = zoo_export("transformer").path, zoo_export("gru").path
    perturbed = folder / "transformer_perturbed.onnx"
    perturbed_layer_norm(transformer, perturbed)
    python = serve_python(REPO)  # make test builds it; a missing one fails here, with the fix
    process = ServerProcess([transformer, gru, perturbed], free_ports(), python=python,
                            log_path=folder / "serve.log")
    with process:
        process.artifacts_by_name = {"transformer": transformer, "gru": gru, "transformer_perturbed": perturbed}
        yield process


def feeds(name: str):
    rng = np.random.default_rng(3)
    if name == "transformer":
        return [{"tokens": rng.standard_normal((b, s, 128)).astype(np.float32)} for b, s in ((1, 1), (3, 7), (2, 64))]
    return [{"x": rng.standard_normal((b, s, 16)).astype(np.float32)} for b, s in ((1, 1), (3, 7), (2, 64))]


@pytest.mark.parametrize("scheme", ["http", "grpc"])
@pytest.mark.parametrize("name", ["transformer", "gru"])
def test_answers_are_exactly_session_run(server, scheme, name):
    port = server.port if scheme == "http" else server.port + 1
    local = Session(str(server.artifacts_by_name[name]))
    with Session(f"{scheme}://127.0.0.1:{port}", model_name=name) as remote:
        assert re.fullmatch(rf"triton-{scheme}://127\.0\.0\.1:{port} model {name} v1 \(triton \d+\.\d+\.\d+\)",
                            remote.provider), remote.provider
        assert remote.input_names == local.input_names and remote.output_names == local.output_names
        for feed in feeds(name):
            answer, expected = remote.run(feed), local.run(feed)
            for output in expected:
                assert answer[output].dtype == expected[output].dtype
                np.testing.assert_array_equal(answer[output], expected[output])


def test_health_and_metrics_endpoints(server):
    with urllib.request.urlopen(f"{server.url}/v2/health/ready", timeout=10) as reply:
        assert reply.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port + 2}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    assert 'nv_inference_request_success{model="transformer",version="1"}' in text


def test_check_at_the_endpoint_passes(server, run_cli, tmp_path):
    report = tmp_path / "r.json"
    done = run_cli("check", zoo_model("transformer"), "--url", server.url, "--model-name", "transformer",
                   "--report", report)
    assert done.code == 0, done.err
    assert f"on kserve [triton-http://127.0.0.1:{server.port} model transformer v1 (triton " in done.out
    import json

    facts = json.loads(report.read_text())
    assert facts["passed"] and "model transformer v1 (triton " in facts["provider"]
    assert facts["outputs"]["output"]["max_abs"] < 1e-4


def test_check_of_a_served_perturbed_layer_norm_fails_with_exit_1(server, run_cli):
    done = run_cli("check", zoo_model("transformer"), "--url", f"grpc://127.0.0.1:{server.port + 1}",
                   "--model-name", "transformer_perturbed")
    assert done.code == 1, done.err
    assert "parity FAILED: worst output 'output'" in done.out and "atol 0.0001" in done.out


def test_unknown_model_is_exit_2_and_no_server_is_exit_3(server, run_cli):
    done = run_cli("check", zoo_model("transformer"), "--url", server.url, "--model-name", "nope")
    assert done.code == 2 and "unknown model" in done.err
    done = run_cli("check", zoo_model("transformer"), "--url", f"http://127.0.0.1:{free_ports(count=1)}",
                   "--model-name", "transformer")
    assert done.code == 3 and "no KServe v2 server answers" in done.err


def test_sigterm_stops_the_server_and_every_process_it_started(server):
    children = psutil.Process(server.process.pid).children(recursive=True)
    names = " ".join(c.name() for c in children)
    assert "tritonserver" in names and "triton_python_backend_stub" in names  # a real server and its stubs
    code, left = server.stop()
    assert code == 0, server.log_tail()
    assert left == []
    assert not [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert "stopped" in server.log_tail()
