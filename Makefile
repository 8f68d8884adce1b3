# Two entry points: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-slow lint typecheck bench bench-city clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# one check to show a decision, then the headline study (hosting maps, a year of applications
# under 160 and 200 kW, the land-parcel plan, the report) on sz-futian and simbench-urban
run: $(STAMP)
	$(BIN)/lvplan check networks/sz-futian --bus "T3 LV board" --kw 160 --category restaurant
	$(BIN)/lvplan study studies/lv-200kw-citywide.yaml --out study-lv-200kw-citywide --progress

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks networks
	$(BIN)/ruff format --check src tests benchmarks networks

typecheck: $(STAMP)
	$(BIN)/mypy

# the suite on TEST_WORKERS processes (pytest-xdist; CI has 2 cores): each worker loads its own
# networks and, without LVPLAN_TEST_POSTGRES, starts its own throwaway PostgreSQL; the 15 slowest
# tests are listed at the end (the suite's time is kept near 10 minutes on CI)
TEST_WORKERS ?= 2
test: lint typecheck
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=15

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python benchmarks/bench_check.py
	OPENBLAS_NUM_THREADS=1 $(BIN)/python benchmarks/bench_hosting.py
	OPENBLAS_NUM_THREADS=1 $(BIN)/python benchmarks/bench_changes.py
	OPENBLAS_NUM_THREADS=1 $(BIN)/python benchmarks/bench_plan.py

# the 1M-bus synthetic city (13,000 transformers): about 5 minutes and 9 GB
bench-city: $(STAMP)
	$(BIN)/python benchmarks/bench_hosting.py --city 13000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache hosting-sz-futian hosting-sz-futian-t3 plan-sz-futian study-lv-200kw-citywide
