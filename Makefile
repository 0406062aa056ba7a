# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
TORCH_VERSION := 2.13.0

.PHONY: run test install clean-data

run: $(STAMP)
	$(BIN)/briefcast run

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	# The CPU build of torch first: anything that depends on torch then finds it satisfied.
	$(BIN)/python -m pip install -qq torch==$(TORCH_VERSION)
	# llm: llama-cpp-python has no Linux wheel, so a fresh machine compiles it once (about 15 min),
	# for a portable CPU: a native build traps on instructions these machines advertise but refuse.
	CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install -qq -e '.[test,asr,llm]'
	# Debian's Chromium renders the email in a browser test (which skips with a reason without it).
	command -v chromium >/dev/null || (DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: the browser test will skip"
	touch $(STAMP)

clean-data:
	rm -rf data

include Makefile.onnx
