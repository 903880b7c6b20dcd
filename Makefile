PYTHON ?= python3
export PYTHON

.PHONY: install test test-fast bench lint polygons-experiment compare-experiment

install:
	@bash scripts/install.sh

test: install
	$(PYTHON) -m pytest -q

test-fast:
	$(PYTHON) -m pytest -q -m "not slow"

bench: install
	$(PYTHON) benchmarks/bench_encoding.py
	$(PYTHON) benchmarks/bench_relevance.py
	$(PYTHON) benchmarks/bench_perturbation.py

polygons-experiment: install
	$(PYTHON) experiments/polygons.py --out experiments/results/polygons

lint:
	$(PYTHON) -m ruff check bowlrp tests benchmarks data_scripts

.PHONY: anomaly-experiment
anomaly-experiment: install
	$(PYTHON) experiments/anomaly.py --out experiments/results/anomaly

.PHONY: compare-experiment
compare-experiment: install
	$(PYTHON) experiments/compare.py --out experiments/results/compare
