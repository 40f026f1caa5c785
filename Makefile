# Two entry points: `make demo` and `make test`. Both create or reuse .venv/ at the repository root.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TESTDATA := .cache/testdata
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: demo test testdata lint bench clean

$(STAMP): pyproject.toml
	@command -v wget >/dev/null || { echo "wget is missing: install it with 'apt-get install wget'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(BIN)/imgbatch demo --workdir demo-run

test: $(STAMP) testdata
	$(BIN)/ruff check .
	IMGBATCH_REQUIRE_TESTDATA=1 $(BIN)/python -m pytest -q

# Outside files for the fast-decode differential test (tests/unit/test_fast_decode_differential.py):
# Debian's cjpeg/jpegtran (installed when run as root) and the installed Pillow's own test images.
testdata: $(STAMP)
	@command -v cjpeg >/dev/null && command -v jpegtran >/dev/null || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && apt-get install -y -q --no-install-recommends libjpeg-turbo-progs; \
	else echo "cjpeg/jpegtran are missing: apt-get install libjpeg-turbo-progs"; exit 1; fi
	$(BIN)/python tests/helpers/outside_images.py fetch $(TESTDATA)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Each command prints its tables and writes them to docs/performance/<name>.md (benchmarks/report.py).
# About 30-40 minutes on 2 cores; one alone: copy its line. The issue's sizes for scale, about
# 10 more minutes: .venv/bin/python -m benchmarks.scale --rows 20000,200000
bench: $(STAMP)
	$(BIN)/python -m benchmarks.quality --n 200
	$(BIN)/python -m benchmarks.decoders --n 3000
	$(BIN)/python -m benchmarks.memory --sizes 10000,200000
	$(BIN)/python -m benchmarks.download_resume
	$(BIN)/python -m benchmarks.upload
	$(BIN)/python -m benchmarks.throughput --n 600
	$(BIN)/python -m benchmarks.gcs_read --n 1500 --workers 2
	$(BIN)/python -m benchmarks.gcs_out --n 12000 --workers 2 --rows 50000
	$(BIN)/python -m benchmarks.e2e --n 3000
	$(BIN)/python -m benchmarks.scale --rows 20000
	$(BIN)/python -m benchmarks.server_load --partitions 1000

clean:
	rm -rf demo-run .pytest_cache
