# The README's first two commands: `make demo` (export + parity-check a zoo model) and `make test`.
# Both create .venv on first use. TORCH_SPEC pins the CPU build that lies on this project's machines
# (pip finds the CPU wheel there first; elsewhere torch==2.13.0 from PyPI is the CUDA build): give
# TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cpu) or a wheel path as TORCH_SPEC to choose (README).
# A GPU user keeps their own CUDA torch with `make demo TORCH_SPEC= VENV=$VIRTUAL_ENV` (their venv, which has it).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
STAMP := $(VENV)/.lndeploy-installed
# lndeploy serve runs in a second venv: PyTriton pins numpy<2, the core needs numpy 2 (docs/serving.md)
SERVE_VENV ?= .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.lndeploy-installed
DEMO_MODEL ?= transformer

.PHONY: demo test test-quick setup serve-env clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/python -m pip install -q $(if $(TORCH_INDEX_URL),--index-url "$(TORCH_INDEX_URL)") "$(TORCH_SPEC)"; fi
	$(BIN)/python -m pip install -q -e ".[dev]"
	# the symlink TensorRT-RTX's parser needs to load plugins (docs/tensorrt.md), made once here so that
	# neither the tests nor a first build write into site-packages
	$(BIN)/python -c "from lndeploy.trt_env import ensure_rtx_plugin_symlink; ensure_rtx_plugin_symlink()"
	touch $(STAMP)

serve-env: $(SERVE_STAMP)

$(SERVE_STAMP): pyproject.toml setup.py
	test -x $(SERVE_VENV)/bin/python || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install -q --upgrade pip
	if [ -n "$(TORCH_SPEC)" ]; then $(SERVE_VENV)/bin/python -m pip install -q $(if $(TORCH_INDEX_URL),--index-url "$(TORCH_INDEX_URL)") "$(TORCH_SPEC)"; fi
	$(SERVE_VENV)/bin/python -m pip install -q -e ".[serve]"
	touch $(SERVE_STAMP)

demo: $(STAMP)
	mkdir -p out
	$(BIN)/lndeploy export models/$(DEMO_MODEL).py -o out/$(DEMO_MODEL).onnx
	$(BIN)/lndeploy inspect out/$(DEMO_MODEL).onnx
	$(BIN)/lndeploy check models/$(DEMO_MODEL).py --onnx out/$(DEMO_MODEL).onnx --report out/$(DEMO_MODEL)-report.json

test: $(STAMP) $(SERVE_STAMP)
	LNDEPLOY_SERVE_PYTHON=$(abspath $(SERVE_VENV))/bin/python $(BIN)/python -m pytest -q

# the suite without the tests marked slow (each over a few seconds); `make test` runs them all
test-quick: $(STAMP) $(SERVE_STAMP)
	LNDEPLOY_SERVE_PYTHON=$(abspath $(SERVE_VENV))/bin/python $(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf out build *.egg-info .pytest_cache
