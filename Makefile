# Template development. Every target uses ./.venv, created on first use.
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pytest-xdist workers. More than the cores loses: on 2 cores, 3 workers ran an
# onnxruntime-only slice (SELECT="onnxruntime and cpu and dynamic") in 287 s against 355 s
# with 2, but the whole matrix (make test on a fresh clone) in 36 min against 22-23, with
# user+sys CPU 66 min against 36: three suites on two cores cost more CPU, not less (likely
# the torch suites' spinning OpenMP threads and the suites' memory traffic; not profiled).
JOBS ?= 2
# Let Python cache bytecode, and pytest its assertion-rewritten plugin modules: the matrix
# starts about a hundred pytest processes over the same packages, and with this set (some
# CI images set it) each one recompiles them (measured: 8.4 s vs 5.9 s to collect a suite).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-fast test-matrix test-update lint docs bench bench-peers bench-peers-embeddings profile clean tools system-tools

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet --group dev
	touch $(STAMP)

## demo: bake the default service, build its demo model and serve it on localhost:8000
demo: $(STAMP)
	$(PYTHON) scripts/demo.py

## tools: what the tests need beyond Python: promtool and prometheus (Debian's prometheus
# package) for tests/test_prometheus.py, node and npm for Grafana's dashboard schema
# (tests/grafana-schema, pinned by its package-lock.json). Installed only where missing;
# the prometheus package's own service is stopped (the tests start their own). Without
# root (or sudo) and the registries this fails, and so would the tests: they never skip.
GRAFANA_SCHEMA := tests/grafana-schema
tools: system-tools $(GRAFANA_SCHEMA)/node_modules/.installed
	@promtool --version | head -1

system-tools:
	@missing=""; \
	command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing="prometheus"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing && \
		{ $$SUDO systemctl disable --now prometheus >/dev/null 2>&1 || \
		  $$SUDO service prometheus stop >/dev/null 2>&1 || true; }; \
	fi

$(GRAFANA_SCHEMA)/node_modules/.installed: $(GRAFANA_SCHEMA)/package-lock.json | system-tools
	cd $(GRAFANA_SCHEMA) && npm ci --silent --no-audit --no-fund
	touch $@

## test: lint, hook tests, the every-combination matrix, and the docs build
test: $(STAMP) tools lint
	$(PYTHON) -m pytest -n $(JOBS) --dist loadgroup --durations=25
	$(MAKE) docs

## test-fast: everything but the generated projects' own test suites and the container runs
test-fast: $(STAMP) tools
	$(PYTHON) -m pytest -n $(JOBS) -m "not slow and not container"

## test-matrix: the combinations matching a pytest -k expression, e.g. SELECT="llm and torch"
test-matrix: $(STAMP)
	$(PYTHON) -m pytest -n $(JOBS) --dist loadgroup -k "$(SELECT)" tests/test_generation.py tests/test_deployment.py

## test-update: the cruft update path (tests/test_update.py, about a minute)
test-update: $(STAMP)
	$(PYTHON) -m pytest tests/test_update.py

# explicit paths: ruff would otherwise parse the template's Jinja pyproject.toml
LINT_PATHS := hooks tests scripts local_extensions.py

lint: $(STAMP)
	$(PYTHON) -m ruff check $(LINT_PATHS)
	$(PYTHON) -m ruff format --check $(LINT_PATHS)

docs: $(STAMP)
	$(PYTHON) -m mkdocs build --strict --site-dir site

## bench: bake the default service and run its benchmark (prints a table, writes a PNG)
bench: $(STAMP)
	$(PYTHON) scripts/bench_default.py

## bench-peers: the default vision service against LitServe on the same model, side by side
bench-peers: $(STAMP)
	$(PYTHON) -m pip install --quiet --group bench
	$(PYTHON) scripts/bench_peers.py $(ARGS)

## bench-peers-embeddings: the embeddings service (torch, onnxruntime) against Infinity on the
# real all-MiniLM-L6-v2. Infinity pins numpy<2 and sentence-transformers 3: its own venv.
INFINITY_VENV := .venv-infinity
$(INFINITY_VENV)/.installed:
	test -x $(INFINITY_VENV)/bin/python || python3 -m venv $(INFINITY_VENV)
	$(INFINITY_VENV)/bin/pip install --quiet "infinity-emb[server,torch]==0.0.78" torch==2.13.0
	touch $@

bench-peers-embeddings: $(STAMP) $(INFINITY_VENV)/.installed
	$(PYTHON) scripts/bench_peers_embeddings.py $(ARGS)

## profile: where a default vision request's CPU goes, by thread and by stage (py-spy)
profile: $(STAMP)
	$(PYTHON) -m pip install --quiet --group bench
	$(PYTHON) scripts/profile_request_path.py $(ARGS)

clean:
	rm -rf $(VENV) $(INFINITY_VENV) site .pytest_cache .ruff_cache .demo bench-results $(GRAFANA_SCHEMA)/node_modules
