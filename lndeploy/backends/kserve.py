"""A model served over the KServe v2 protocol (Triton Inference Server, KServe, ...) as a backend.

``lndeploy check MODEL --url http://HOST:PORT --model-name NAME`` runs its inputs through here, so the
parity of what a server answers is measured exactly like an ONNX file's (docs/serving.md). The client is
tritonclient's: HTTP for ``http://`` URLs, gRPC for ``grpc://``. Inputs and outputs, with their data types
and dims, are read from the server's model metadata (``-1`` dims, the batch dim among them, are dynamic);
``provider`` names the endpoint, the model version and the server's name and version.
"""

from __future__ import annotations

from urllib.parse import urlparse

from lndeploy.backends import TensorMeta, normalize_feed
from lndeploy.backends.base import Runner
from lndeploy.errors import BadInputError, UnavailableError

SCHEMES = ("http", "grpc")


class KServeSession(Runner):
    """``run(inputs) -> {name: array}`` against model ``model_name`` at ``url``."""

    backend = "kserve"

    def __init__(self, url: str, model_name: str | None = None, model_version: str = "", timeout_s: float = 60.0):
        if not model_name:
            raise BadInputError("a served model needs its name: --model-name NAME")
        self.scheme, self.address = parse_url(url)
        self.url, self.model_name = url, model_name
        self.client = _client(self.scheme, self.address, timeout_s)
        self._errors = _client_errors()
        try:
            server = _as_dict(self.client.get_server_metadata())
            metadata = _as_dict(self.client.get_model_metadata(model_name, model_version))
        except self._errors as err:
            self.client.close()
            raise self._refusal(err) from err
        versions = [str(v) for v in metadata.get("versions") or []]
        self.model_version = model_version or (max(versions, key=_version_key) if versions else "")
        self.server = f"{server.get('name', 'server')} {server.get('version', '')}".strip()
        self.platform = metadata.get("platform", "")
        self.inputs = [_meta(t) for t in metadata.get("inputs", [])]
        self.outputs = [_meta(t) for t in metadata.get("outputs", [])]

    @property
    def provider(self) -> str:
        return (f"triton-{self.scheme}://{self.address} model {self.model_name} v{self.model_version or '?'} "
                f"({self.server})")

    def run_impl(self, inputs) -> dict:
        feed = normalize_feed(inputs, self.inputs)
        module = _module(self.scheme)
        request = []
        for meta in self.inputs:
            array = feed[meta.name]
            item = module.InferInput(meta.name, list(array.shape), _triton_dtype(array.dtype))
            if self.scheme == "http":
                item.set_data_from_numpy(array, binary_data=True)
            else:
                item.set_data_from_numpy(array)
            request.append(item)
        wanted = [module.InferRequestedOutput(m.name) for m in self.outputs]
        try:
            result = self.client.infer(self.model_name, request, model_version=self.model_version, outputs=wanted)
        except self._errors as err:
            raise self._refusal(err) from err
        return {m.name: result.as_numpy(m.name) for m in self.outputs}

    def info(self) -> dict:
        return {"url": self.url, "model": self.model_name, "version": self.model_version, "server": self.server,
                "platform": self.platform}

    def release(self) -> None:
        self.client.close()

    def _refusal(self, err):
        text = " ".join(str(err).split())
        if _unreachable(text):
            return UnavailableError(f"no KServe v2 server answers at {self.url}: {text}")
        return BadInputError(f"{self.url} model {self.model_name!r}: {text}")


def parse_url(url: str) -> tuple[str, str]:
    """``http://HOST:PORT`` or ``grpc://HOST:PORT`` -> (scheme, "HOST:PORT")."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme not in SCHEMES or not parsed.hostname or parsed.port is None:
        raise BadInputError(f"--url {url!r}: expected http://HOST:PORT or grpc://HOST:PORT")
    if parsed.path not in ("", "/"):
        raise BadInputError(f"--url {url!r}: give the server's address only; the model goes in --model-name")
    return parsed.scheme, f"{parsed.hostname}:{parsed.port}"


def _module(scheme: str):
    try:
        if scheme == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError as err:
        raise UnavailableError(f"talking to a server needs tritonclient: pip install 'tritonclient[{scheme}]' "
                               "(or lndeploy's serve extra)") from err
    return module


def _client(scheme: str, address: str, timeout_s: float):
    module = _module(scheme)
    if scheme == "grpc":
        return module.InferenceServerClient(address)
    return module.InferenceServerClient(address, connection_timeout=timeout_s, network_timeout=timeout_s)


def _as_dict(reply) -> dict:
    """HTTP replies are dicts already; gRPC ones are protobufs, read as dicts (64-bit ints as text)."""
    if isinstance(reply, dict):
        return reply
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(reply, preserving_proto_field_name=True)


def _client_errors() -> tuple:
    from tritonclient.utils import InferenceServerException

    return (InferenceServerException, ConnectionError, OSError)


def _unreachable(text: str) -> bool:
    return any(s in text.lower() for s in ("connection refused", "failed to connect", "unavailable",
                                           "name or service not known", "timed out"))


def _meta(tensor: dict) -> TensorMeta:
    import numpy as np
    from tritonclient.utils import triton_to_np_dtype

    dtype = triton_to_np_dtype(tensor["datatype"])
    shape = tuple(None if int(d) < 0 else int(d) for d in tensor.get("shape", []))
    return TensorMeta(tensor["name"], np.dtype(dtype) if dtype is not None else None, shape)


def _triton_dtype(dtype) -> str:
    from tritonclient.utils import np_to_triton_dtype

    name = np_to_triton_dtype(dtype)
    if name is None:
        raise BadInputError(f"the KServe v2 protocol has no type for {dtype}")
    return name


def _version_key(version: str):
    return (0, int(version)) if version.isdigit() else (1, version)
