"""Serving: Triton Inference Server model repositories (``package``), a local Triton server over
lndeploy sessions (``serve``, needs the ``serve`` extra in its own environment) and a load benchmark
against a KServe v2 endpoint (docs/serving.md). tritonclient and PyTriton are imported lazily."""

from lndeploy.serving.repository import PackagedModel, package

__all__ = ["package", "PackagedModel"]
