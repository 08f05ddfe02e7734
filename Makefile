# Two commands set everything up: `make demo` and `make test` (each creates .venv when missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The whole pipeline, offline, on the bundled scikit-learn digits data set (a few minutes on 2 CPU cores).
demo: $(STAMP)
	$(BIN)/osr-train siamese --dataset digits --out artifacts/demo
	$(BIN)/osr-export artifacts/demo/model.pt --format all
	$(BIN)/osr-infer digits --model artifacts/demo/model.onnx --output artifacts/demo/predictions.csv

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/training_throughput.py

clean:
	rm -rf $(VENV) artifacts/* build *.egg-info
	touch artifacts/.gitkeep
