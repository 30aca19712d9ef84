# fedledger: `make demo` and `make test` work on a fresh machine (they install what is missing).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_OUT ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
# Five local epochs a round: the demo ends near the centralized baseline (bench/demo.py runs the same).
DEMO_ARGS := --epochs 5

.PHONY: setup browser test demo bench compile clean help

help:
	@echo "make setup   install pinned JS tooling (npm) and the Python venv (.venv)"
	@echo "make test    run every test (real Anvil + IPFS processes)"
	@echo "make demo    4 organisations federate for 5 rounds on the embedded devnet"
	@echo "make bench   run bench/ and write bench/results/"
	@echo "make compile recompile contracts/ and refresh the shipped artifact"

setup: node_modules/.installed $(VENV)/.installed

# npm install, not npm ci: an optional git-tarball dependency of the dev IPFS node breaks ci.
node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

# The lineage page's tests drive Debian's Chromium headless: installed from Debian if missing (as root).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		{ echo "error: the tests need Chromium: apt-get install chromium (as root)"; exit 1; }

compile: setup
	$(BIN)/python -c "from fedledger.node.chain.contracts import build_artifact; a = build_artifact(); print('FedLedger', a.abi_sha256)"

test: setup browser
	$(BIN)/pytest

demo: setup
	$(BIN)/fedledger sim $(DEMO_ARGS) --out $(DEMO_OUT)

# Flower pins typer/rich below what the fedledger CLI needs: it lives in its own venv.
.venv-bench/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install -q 'flwr[simulation]==1.42.0' torch==2.13.0 'scikit-learn>=1.5,<2' 'safetensors>=0.8,<0.9' psutil
	.venv-bench/bin/pip install -q --no-deps -e .
	@touch $@

bench: setup .venv-bench/.installed
	$(BIN)/python bench/demo.py
	$(BIN)/python bench/gas.py
	$(BIN)/python bench/storage.py
	.venv-bench/bin/python bench/aggregation.py
	$(BIN)/python bench/learning.py
	$(BIN)/python bench/faults.py
	$(BIN)/python bench/round_overhead.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/report.py

clean:
	rm -rf runs cache artifacts/hardhat .pytest_cache
