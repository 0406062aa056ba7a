# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
TORCH_VERSION := 2.13.0
# The int8 ONNX export of the default encoder, made once per environment: `briefcast search`
# encodes its query with it (0.5 s to load, no torch) instead of loading torch and MiniLM (~10 s).
ONNX_INSTALLED := $(VENV)/share/briefcast/models/minilm-onnx-int8

.PHONY: run test install clean-data

run: $(STAMP) $(ONNX_INSTALLED)/model.onnx
	$(BIN)/briefcast run

test: $(STAMP) $(ONNX_INSTALLED)/model.onnx
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(STAMP) $(ONNX_INSTALLED)/model.onnx

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
	# A CJK font (1.6 MB), or Chinese items show as empty boxes in the browser's screenshots.
	fc-list :lang=zh 2>/dev/null | grep -q . || (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei >/dev/null) || echo "no CJK font: Chinese text shows as boxes in screenshots"
	touch $(STAMP)

# Offline, from the packages just installed (torch, transformers, the MiniLM wheel, onnx): ~10-20 s
# on 2 cores. Made again when the export code or the packages change. Should it fail, search
# still works, on torch (and the next make tries again); the ONNX tests then export their own.
$(ONNX_INSTALLED)/model.onnx: embed/onnx_export.py $(STAMP)
	$(BIN)/python -c "import onnx, onnxruntime, tokenizers" 2>/dev/null \
		|| $(BIN)/python -m pip install -qq $(foreach r,$(ONNX_EXPORT_REQUIREMENTS),'$(r)')
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m embed.onnx_export --force $(ONNX_INSTALLED) \
		|| echo "ONNX export failed (above): briefcast search will load torch for each query"

clean-data:
	rm -rf data

include Makefile.onnx
