# Two entry points a new user needs: `make demo` and `make test`. Both create and use .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BASE   := $(VENV)/.installed-base

.PHONY: demo test lint crd report-screenshot bench bench-quick bench-runtime bench-generator bench-operator clean images chart-crd cluster-up cluster-down e2e

# The demo needs only the base distribution (numpy, scipy, aiohttp, ...): on a fresh machine that is the
# part of the install a first `make demo` waits for; `make test` adds the extras.
$(BASE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e .
	touch $(BASE)

$(STAMP): $(BASE)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[operator,test,parquet]'
	touch $(STAMP)

# The example's data is seeded: made once, again only when its generator changes.
DEMO_DATA := .poetmon-dev/data
$(DEMO_DATA)/stream.csv: examples/payments/make_data.py $(BASE)
	$(PY) examples/payments/make_data.py --out $(DEMO_DATA)

demo: $(BASE) $(DEMO_DATA)/stream.csv
	$(VENV)/bin/poetmon dev -f examples/payments/payments.yaml --data .poetmon-dev/data/stream.csv \
	    --reference .poetmon-dev/data/reference.csv --memory-limit 300M --speed 20 --until healed

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

test: $(STAMP) lint
	$(PY) -m pytest -n 2 -q

# The CRD and the spec reference page are generated from the models; a test fails when either is stale.
crd: $(STAMP)
	$(VENV)/bin/poetmon crd -o crds/modelmonitor.yaml
	$(VENV)/bin/poetmon crd --docs -o docs/spec-reference.md
	$(MAKE) chart-crd

# The report page of the bundled example, served and evaluated three times, as docs/img/report.png
# (needs headless Chromium: Debian's `chromium` package).
report-screenshot: $(STAMP)
	$(PY) docs/report_screenshot.py --out docs/img/report.png

bench-quick: $(STAMP)
	$(PY) bench/drift_bench.py --quick

bench: $(STAMP)
	$(PY) bench/drift_bench.py

bench-runtime: $(STAMP)
	$(PY) bench/runtime_bench.py

bench-generator: $(STAMP)
	$(PY) bench/generator_bench.py

# The operator at scale on the local cluster's real control plane, with fake nodes from kwok (needs root).
MONITORS ?= 500
bench-operator: $(STAMP)
	bash tests/e2e/cluster/cluster-up.sh
	bash tests/e2e/cluster/build-images.sh
	bash bench/cluster/build-kwok.sh
	$(PY) bench/operator_bench.py --monitors $(MONITORS); rc=$$?; bash tests/e2e/cluster/cluster-down.sh; exit $$rc

# End-to-end suite on a real single-node cluster built locally (tests/e2e/cluster/, needs root), or on
# the cluster E2E_KUBECONFIG points to. Not part of `make test`.
cluster-up:
	bash tests/e2e/cluster/cluster-up.sh

cluster-down:
	bash tests/e2e/cluster/cluster-down.sh

e2e: $(STAMP)
	POET_E2E=1 $(PY) -m pytest -q tests/e2e

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .poetmon-dev

# Container images (needs Docker): poet-monitor/runtime and poet-monitor/operator, tagged with the package version.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
images:
	docker build --target runtime -t poet-monitor/runtime:$(VERSION) .
	docker build --target operator -t poet-monitor/operator:$(VERSION) .

# The chart carries a copy of the generated CRD (helm reads files only from inside the chart).
chart-crd:
	cp crds/modelmonitor.yaml charts/poet-monitor/files/modelmonitor.yaml
