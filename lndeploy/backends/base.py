"""The one interface every backend runs behind, in the manner of Polygraphy's runners.

A runner is opened when it is made (the expensive part: an ONNX Runtime session, an evaluator, a
deserialized engine) and closed with ``close()`` or by leaving a ``with`` block; a closed runner refuses
to run. What callers may use: ``backend`` (its name), ``provider`` (what actually runs: ONNX Runtime falls
back to the CPU silently, so this is read back, never assumed), ``inputs``/``outputs`` (``TensorMeta``),
``run(inputs) -> {name: ndarray}`` (validated, converted feeds), ``bind(feed)`` (a zero-argument call on
prepared buffers, for bench to time) and ``info()`` (the settings a benchmark report records). Nothing
outside a backend touches its private state.
"""

from __future__ import annotations

from lndeploy.errors import BadInputError


class Runner:
    backend = "runner"
    inputs: list = []
    outputs: list = []
    _closed = False

    @property
    def provider(self) -> str:  # pragma: no cover - each backend says
        raise NotImplementedError

    @property
    def input_names(self) -> list[str]:
        return [m.name for m in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [m.name for m in self.outputs]

    def run(self, inputs) -> dict:
        if self._closed:
            raise BadInputError(f"this {self.backend} session is closed")
        return self.run_impl(inputs)

    def run_impl(self, inputs) -> dict:  # pragma: no cover - each backend runs
        raise NotImplementedError

    def bind(self, feed: dict):
        """A zero-argument call that runs ``feed`` (converted once, here) and is cheap to repeat."""
        from lndeploy.backends import normalize_feed

        prepared = normalize_feed({m.name: feed[m.name] for m in self.inputs}, self.inputs)
        return lambda: self.run(prepared)

    def info(self) -> dict:
        return {}

    def close(self) -> None:
        self._closed = True
        self.release()

    def release(self) -> None:
        """Drop what the backend holds (sessions, engines); called once by ``close``."""

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
