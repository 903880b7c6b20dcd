PYTHON ?= python3
export PYTHON

.PHONY: install test test-all test-fast bench lint polygons-experiment compare-experiment voc-experiment voc-like

install:
	@bash scripts/install.sh

# pytest-xdist processes (a test file stays in one process: its module fixtures are made once);
# TEST_WORKERS=0 runs everything in this process
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# the default run (CI): the lint checks, then everything but the tests marked slow
test: install lint
	$(PYTHON) -m pytest -q -m "not slow" $(XDIST) --durations=15

# everything, the slow end-to-end and full fuzz suites included
test-all: install
	$(PYTHON) -m pytest -q $(XDIST)

test-fast:
	$(PYTHON) -m pytest -q -m "not slow" $(XDIST)

bench: install
	$(PYTHON) benchmarks/bench_encoding.py
	$(PYTHON) benchmarks/bench_relevance.py
	$(PYTHON) benchmarks/bench_perturbation.py

polygons-experiment: install
	$(PYTHON) experiments/polygons.py --out experiments/results/polygons

# style (ruff) and the package layout (import-linter contracts in pyproject.toml)
LINT_PATHS = bowlrp tests benchmarks data_scripts experiments examples
lint:
	$(PYTHON) -m ruff check $(LINT_PATHS)
	$(PYTHON) -m ruff format --check $(LINT_PATHS)
	lint-imports

.PHONY: anomaly-experiment
anomaly-experiment: install
	$(PYTHON) experiments/anomaly.py --out experiments/results/anomaly

.PHONY: compare-experiment
compare-experiment: install
	$(PYTHON) experiments/compare.py --out experiments/results/compare

# PASCAL VOC (issue 12): make voc-experiment VOC_ROOT=data/voc/VOCdevkit/VOC2007 [CONFIG=...]
CONFIG ?= voc_fisher
VOC_OUT ?= experiments/results/voc
TEST_SPLIT ?= test
voc-experiment:
	@if [ -z "$(VOC_ROOT)" ]; then echo "voc-experiment: set VOC_ROOT=<.../VOCdevkit/VOC2007>; download it with: bash data_scripts/download_voc.sh" >&2; exit 2; fi
	$(PYTHON) experiments/voc.py --voc-root "$(VOC_ROOT)" --config "$(CONFIG)" --out "$(VOC_OUT)" --test-split "$(TEST_SPLIT)" $(VOC_ARGS)

voc-like:
	$(PYTHON) data_scripts/make_voc_like.py --out data/voc_like
