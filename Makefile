# Every target installs what it needs into .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench diff-cerbos install clean tools dashboards dashboard-images

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

# promtool and npm for the tests that run reference tools (CI runs this first; needs root)
tools:
	bash .ci/tools

demo: $(STAMP)
	$(BIN)/vigil demo

lint: $(STAMP)
	$(BIN)/ruff check streams tests bench
	$(BIN)/ruff format --check streams tests bench
	$(BIN)/mypy streams

# Most tests wait on worker processes and brokers, not on the CPU: three xdist workers (each
# with its own embedded broker; one file per worker at a time) keep the suite near 5 minutes.
test: lint
	$(BIN)/pytest -q -n 3 --dist loadfile

# Grafana dashboards (deploy/grafana/dashboards/) from streams/observability/dashboards.py
dashboards: $(STAMP)
	$(BIN)/python -m streams.observability.dashboards

# Key panels drawn from a real Prometheus scraping real workers under load (needs the Debian
# package prometheus), into docs/images/ (shown in the README)
dashboard-images: $(STAMP)
	VIGIL_DASHBOARD_DATA=$(CURDIR)/$(VENV)/dashboard-data.json $(BIN)/pytest -q \
		tests/deploy/test_prometheus_live.py
	$(BIN)/python -m streams.observability.panel_images $(VENV)/dashboard-data.json docs/images

bench: $(STAMP)
	$(BIN)/python -m bench.run

# Generated policy stores against the stock Cerbos PDP (docs/policies.md); e.g. SEEDS=1000
SEEDS ?= 200
START ?= 1000
REQUESTS ?= 500
diff-cerbos: $(STAMP)
	$(BIN)/python -m tests.policy.gen.runner --seeds $(SEEDS) --start $(START) \
		--requests $(REQUESTS) --out diff-cerbos.jsonl $(DIFF_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
