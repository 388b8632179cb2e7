# Everything installs into .venv on first use: a fresh clone needs Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The service's own variables count here too: `MNIST_PORT=8125 make serve` serves on 8125.
HOST   ?= $(or $(MNIST_HOST),127.0.0.1)
PORT   ?= $(or $(MNIST_PORT),8000)
MODELS ?= models
ARGS   ?=
PYTEST_ARGS ?=

# loadtest knobs (see loadtests/README.md)
USERS      ?= 32
SPAWN_RATE ?= 16
DURATION   ?= 60s
P99_MS     ?= 250
FAIL_RATIO ?= 0.001
LOADTEST_HOST ?=

.PHONY: install examples train compare serve test test-fast image-test mutation lint format bench bench-ab loadtest system-deps clean help

help:
	@echo "make serve   install, train a first version if the registry is empty, serve on $(HOST):$(PORT)"
	@echo "make test    install and run the whole test suite (tiers: tests/unit, integration, browser, tools, images, e2e)"
	@echo "make test-fast  the unit tier only: no TensorFlow, no processes, about 17-20 s on 2 cores"
	@echo "make image-test the images tier: serve, baked, train built with buildah and run (docs/images.md)"
	@echo "make mutation   mutation scores of input checks, body limits, guards, registry (slow; docs/mutation.md)"
	@echo "make train   train, evaluate, export and register a new version (ARGS='--model mlp' ...)"
	@echo "make compare    optimisers and networks side by side: a table, reports/compare.md and its learning curves"
	@echo "make examples   the README's example files (digit.json, seven.png, seven.jpg, three.png) in examples/"
	@echo "make install | lint | format | bench | bench-images | bench-ab BASE=<rev> | loadtest | clean"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[train,serve,dev]"
	touch $(STAMP)

install: $(STAMP)

examples: $(STAMP)
	$(BIN)/python benchmarks/examples.py --out examples

train: $(STAMP)
	MNIST_MODEL_DIR=$(MODELS) $(BIN)/python -m training --registry $(MODELS) $(ARGS)

# Nothing is registered unless ARGS="--register"; the report goes to reports/ (ignored by git).
compare: $(STAMP)
	$(BIN)/python -m training compare --registry $(MODELS) $(ARGS)

serve: $(STAMP)
	@if [ -z "$$(ls -d $(MODELS)/mnist/[0-9]* 2>/dev/null)" ]; then \
		echo "Registry $(MODELS) is empty: training a first version (about 3 minutes on 2 cores)..."; \
		$(BIN)/python -m training --registry $(MODELS) || exit 1; \
	fi
	MNIST_MODEL_DIR=$(MODELS) $(BIN)/python -m service --host $(HOST) --port $(PORT)

# promtool (Debian's prometheus package) is needed by the observability tests.
system-deps:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
		echo "Installing prometheus + promtool (Debian package)..."; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
# Debian's chromium is the browser tier's browser (tests/browser drives it through Playwright's executable_path).
	@command -v chromium >/dev/null || { \
		echo "Installing chromium (Debian package) for the browser tests..."; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
# Debian's buildah builds the Dockerfile without a daemon and debootstrap makes its stand-in base (tests/images).
	@command -v buildah >/dev/null && PATH="$$PATH:/usr/sbin" command -v debootstrap >/dev/null || { \
		echo "Installing buildah + debootstrap (Debian packages) for the images tier..."; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends buildah debootstrap >/dev/null; }

test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The images tier alone (also part of `make test`): builds serve, baked and train and prints their sizes.
image-test: $(STAMP) system-deps
	$(BIN)/python -m pytest tests/images $(PYTEST_ARGS)

# The unit tier by folder, so no other tier's module (TensorFlow, tools) is even imported; spread over the
# cores with pytest-xdist (worksteal evens out the slow property tests), with a quarter of their examples
# (the "fast" profile, tests/conftest.py; `make test` runs all), and with Python's bytecode cache even where
# the environment turns it off (PYTHONDONTWRITEBYTECODE: ~2.7 s of every rerun; __pycache__ is gitignored).
test-fast: $(STAMP)
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest tests/unit -n auto --dist worksteal \
		--hypothesis-profile=fast -p no:schemathesis $(PYTEST_ARGS)

mutation: $(STAMP)
	nice -n 15 $(BIN)/python tests/mutation/run.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# JSON/PNG cells, then the image section (benchmarks/image_bench.py); fails if either misses a target.
bench: $(STAMP)
	$(BIN)/python benchmarks/serve_bench.py --models $(MODELS); status=$$?; \
	$(BIN)/python benchmarks/image_bench.py --models $(MODELS) && exit $$status

bench-images: $(STAMP)
	$(BIN)/python benchmarks/image_bench.py --models $(MODELS)

# Alternated before/after runs against another revision (benchmarks/README.md): make bench-ab BASE=<rev>
BASE ?= HEAD~1
bench-ab: $(STAMP)
	$(BIN)/python benchmarks/ab.py --a $(BASE) --b . --models $(MODELS)

loadtest: $(STAMP)
	$(BIN)/python loadtests/run.py --models $(MODELS) --users $(USERS) --spawn-rate $(SPAWN_RATE) \
		--duration $(DURATION) --p99-ms $(P99_MS) --fail-ratio $(FAIL_RATIO) $(if $(LOADTEST_HOST),--host $(LOADTEST_HOST),)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis loadtests/reports
