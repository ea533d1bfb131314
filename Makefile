# The few commands, the same everywhere: make demo, make test, make lint.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint format proto bench clean

# The web export's runtime (src/shipyard/edge/web.py, docs/edge.md): onnxruntime-web's plain WebAssembly
# backend, taken from the npm registry here, once, and copied into each exported page; nothing is fetched
# when a page runs. The version is pinned in web.py (ORT_WEB_VERSION); shipyard finds the files under the
# venv's share/ folder (or where SHIPYARD_ORT_WEB says).
ORT_WEB_VERSION := $(shell sed -n 's/^ORT_WEB_VERSION = "\(.*\)"/\1/p' src/shipyard/edge/web.py)
ORT_WEB := $(VENV)/share/shipyard/onnxruntime-web
ORT_WEB_FILES := ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm

$(BIN)/.installed: pyproject.toml | $(ORT_WEB)/.version-$(ORT_WEB_VERSION)
	@echo "== creating $(VENV) and installing shipyard with its development extras (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar on -e '.[dev]'
	touch $@

$(ORT_WEB)/.version-$(ORT_WEB_VERSION):
	@if ! command -v npm >/dev/null; then \
		echo "npm is not installed (Node.js 18 or later): the web export needs onnxruntime-web $(ORT_WEB_VERSION) from the npm registry"; \
	else \
		echo "== vendoring onnxruntime-web $(ORT_WEB_VERSION) from the npm registry (the web export's runtime)" && \
		rm -rf $(ORT_WEB) $(ORT_WEB).tmp && mkdir -p $(ORT_WEB).tmp && \
		(cd $(ORT_WEB).tmp && npm pack --silent onnxruntime-web@$(ORT_WEB_VERSION) >/dev/null) && \
		tar -xzf $(ORT_WEB).tmp/onnxruntime-web-$(ORT_WEB_VERSION).tgz -C $(ORT_WEB).tmp --strip-components=1 \
			package/package.json && \
		tar -xzf $(ORT_WEB).tmp/onnxruntime-web-$(ORT_WEB_VERSION).tgz -C $(ORT_WEB).tmp --strip-components=2 \
			$(addprefix package/dist/,$(ORT_WEB_FILES)) && \
		rm $(ORT_WEB).tmp/onnxruntime-web-$(ORT_WEB_VERSION).tgz && \
		touch $(ORT_WEB).tmp/.version-$(ORT_WEB_VERSION) && mv $(ORT_WEB).tmp $(ORT_WEB); \
	fi

demo: $(BIN)/.installed
	@# in a terminal, the demo runs as its own foreground job, so that Ctrl-C reaches the demo (which
	@# stops the server and exits 0) and not make (which would report the interrupt as a failure)
	@if [ -t 0 ]; then bash -mc examples/digits/demo.sh; else examples/digits/demo.sh; fi

# Registry tests also run on PostgreSQL when a server answers on 127.0.0.1:5432 (database `test`; each
# worker a database of its own beside it, test_gw0 and so on).
POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
# A worker per core, at most 4, a test file each at a time (its servers are module fixtures): most tests
# wait on servers and subprocesses, so on 2 cores the suite takes about half its serial time.
PYTEST_WORKERS ?= --numprocesses auto --maxprocesses 4 --dist loadfile

# The tflite export's converter (src/shipyard/edge/onnx2tf_env.py): onnx2tf and the TensorFlow it pins, in
# a venv of their own (~2.6 GB, under a minute from a nearby package index), made once under .venv-tools
# and used by the tests. Where it cannot be made (no package index) the tflite tests are skipped.
TOOLS := .venv-tools
.PHONY: tflite-tools
tflite-tools: $(BIN)/.installed
	@$(BIN)/python -m shipyard.edge.onnx2tf_env --root $(TOOLS) >/dev/null \
		|| echo "the onnx2tf tool environment could not be made: the tflite export's tests will be skipped"

test: $(BIN)/.installed lint tflite-tools
	@if $(BIN)/python -c "import psycopg; psycopg.connect('$(subst +psycopg,,$(POSTGRES_URL))', connect_timeout=2).close()" 2>/dev/null; then \
		echo "registry tests run on SQLite and PostgreSQL ($(POSTGRES_URL))"; \
		SHIPYARD_TEST_POSTGRES_URL=$(POSTGRES_URL) $(BIN)/python -m pytest -q $(PYTEST_WORKERS); \
	else \
		echo "no PostgreSQL on 127.0.0.1:5432: registry tests run on SQLite only, PostgreSQL skipped"; \
		$(BIN)/python -m pytest -q $(PYTEST_WORKERS); \
	fi

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every benchmark scenario side by side; rewrites bench/BENCHMARKS.md (BENCH_QUICK=1: a short check).
bench: $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[bench]'
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; } \
		|| echo "wrk is not installed (apt install wrk): the overload scenario is skipped"
	@command -v h2load >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq nghttp2-client >/dev/null; } \
		|| echo "h2load is not installed (apt install nghttp2-client): gRPC is left out of the floor"
	$(BIN)/python bench/run.py

# Regenerate the gRPC descriptor from the checked-in .proto (the descriptor is committed too).
proto: $(BIN)/.installed
	$(BIN)/python -m grpc_tools.protoc -I src \
		--descriptor_set_out=src/shipyard/protocol/grpc/grpc_predict_v2.binpb \
		src/shipyard/protocol/grpc/grpc_predict_v2.proto

# The server image (deploy/Dockerfile; docs/kubernetes.md). OFFLINE=1 builds every wheel here first, into
# build/wheels, and the image installs only those: no package index is reached inside the build (for an
# air-gapped build, or a base whose pip cannot reach the index). The wheels are built by this Python:
# it must be the image's version (3.11 for the default base).
.PHONY: image
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= shipyard:$(VERSION)
BASE ?= python:3.11-slim
EXTRAS ?= postgres,s3
image:
	@if [ -n "$(OFFLINE)" ]; then \
		$(MAKE) --no-print-directory $(BIN)/.installed && \
		echo "== building the wheels into build/wheels" && \
		$(BIN)/pip wheel --quiet --wheel-dir build/wheels ".$(if $(EXTRAS),[$(EXTRAS)])"; \
	fi
	docker build -f deploy/Dockerfile --build-arg BASE=$(BASE) --build-arg EXTRAS=$(EXTRAS) \
		$(if $(OFFLINE),--build-arg WHEELS=build/wheels) -t $(IMAGE) .

clean:
	rm -rf $(VENV) $(TOOLS) .shipyard examples/digits/out .pytest_cache .ruff_cache .mypy_cache
