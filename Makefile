# One-command set-up and the two commands a newcomer needs.
#   make demo   run the main job (creates .venv and installs on first use)
#   make test   lint + the test suite (same set-up)
# Every target is idempotent: a second run installs nothing and takes seconds.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR := /usr/share/datasets/fashion-mnist
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
RUN ?= runs/quick

.PHONY: setup data demo test lint bench clean

setup: $(STAMP)

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Re-installs only when pyproject.toml changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps badcrossbar==1.1.0
	touch $(STAMP)

data:
	@if ls $(DATA_DIR)/*-ubyte.gz >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null)) && \
		echo "installed dataset-fashion-mnist"; \
	else \
		echo "Fashion-MNIST is missing from $(DATA_DIR); run: sudo apt-get install dataset-fashion-mnist"; \
		exit 1; \
	fi

demo: setup data
	$(BIN)/correctnet reproduce --preset quick --out $(RUN)

test: setup data lint
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup data
	$(BIN)/python benchmarks/bench_xbar.py
	$(BIN)/python benchmarks/bench_montecarlo.py

clean:
	rm -rf $(VENV) build *.egg-info
