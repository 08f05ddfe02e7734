# Two commands set everything up: `make demo` and `make test` (each creates .venv when missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := artifacts/demo

.PHONY: venv demo test test-fast lint docs bench clean web-runtime shipped-model

# The model shipped with the package (docs/model-card.md), re-created from the data: the default
# recipe on MNIST (from $$OSR_DATA_DIR, else ../shared/datasets), seed 1 (chosen on validation accuracy), one torch thread (the
# thread count changes the last bits). About 25 minutes on one CPU core; then compared with the
# shipped file (weights bit for bit, outputs, metadata but the export time) by experiments/shipped_model.py.
SHIPPED_SEED ?= 1
SHIPPED_DIR := artifacts/shipped-seed$(SHIPPED_SEED)
shipped-model: $(STAMP)
	OSR_DATA_DIR=$${OSR_DATA_DIR:-../shared/datasets} $(BIN)/osr-train siamese --seed $(SHIPPED_SEED) --threads 1 --out $(SHIPPED_DIR)
	OSR_DATA_DIR=$${OSR_DATA_DIR:-../shared/datasets} $(BIN)/osr-export $(SHIPPED_DIR)/model.pt --format onnx
	OSR_DATA_DIR=$${OSR_DATA_DIR:-../shared/datasets} $(BIN)/python experiments/shipped_model.py --compare $(SHIPPED_DIR)/model.onnx --output $(SHIPPED_DIR)/comparison.json

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[train,dev]'
	touch $(STAMP)

# The three-command workflow, offline, on the bundled scikit-learn digits (a few minutes on 2 CPU cores).
demo: $(STAMP)
	$(BIN)/osr-train siamese --dataset digits --no-layout --out $(DEMO)
	$(BIN)/osr-export $(DEMO)/model.pt --format all
	$(BIN)/osr-train sample-images $(DEMO)/images --dataset digits --n 50
	$(BIN)/osr-infer folder:$(DEMO)/images --model $(DEMO)/model.onnx --output $(DEMO)/predictions.csv
	@echo "demo done: a model trained in a few minutes on scikit-learn's 1,077 8x8 training digits (upsampled to 28x28;"
	@echo "already centred, so without the layout step, which is for photos and costs 7 points of accuracy on these),"
	@echo "scored above on 50 of its test digits (knowns, folders 0-9) and 50 crops of two photos (unknowns),"
	@echo "deciding on its own calibrated score; model, metrics and plots in $(DEMO)/, predictions in $(DEMO)/predictions.csv"

# ONNX Runtime Web for `osr-export --format web`, pinned by osr_export/web/package-lock.json (npm ci).
# Without npm it says so; the browser tests then skip (not in CI, where .ci/run installs node and Chromium).
web-runtime:
	@if command -v npm >/dev/null; then \
	  test osr_export/web/node_modules/.package-lock.json -nt osr_export/web/package-lock.json || \
	  (cd osr_export/web && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error); \
	else echo "npm not found: osr-export --format web and the browser tests need it (apt-get install npm)"; fi

# Two processes, a test file each at a time (tests/conftest.py gives each one torch thread).
test: $(STAMP) web-runtime
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The quick loop while changing code (under 3 minutes on 2 cores): no training of real models,
# no real data set, no browser; two processes.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n 2 --dist loadfile

# ruff (pyflakes, pycodestyle, bugbear, annotations) and mypy (strict on osr_infer, basic on the
# layers above and on the benchmarks, experiments and tools); configured in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy osr_infer osr_train osr_export
	$(BIN)/mypy benchmarks experiments tools

# The user documentation (docs/, mkdocs.yml) as a site in site/, strict: a broken link or a
# missing API reference fails the build.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# Benchmarks write JSON to benchmarks/results/ (real data from $$OSR_DATA_DIR or ../shared/datasets).
bench: $(STAMP)
	$(BIN)/python benchmarks/training_throughput.py
	$(BIN)/python benchmarks/inference_throughput.py --wait-quiet 600
	$(BIN)/python benchmarks/export_runtime.py
	$(BIN)/python benchmarks/onnxruntime_variants.py
	$(BIN)/python benchmarks/pipeline_threads.py

clean:
	rm -rf $(VENV) artifacts/* build *.egg-info
	touch artifacts/.gitkeep
