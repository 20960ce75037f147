# Two front doors for a newcomer (see README): `make demo` and `make test`.
# Each creates its own virtual environment in .venv; nothing relies on a hand-made install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODEL := models/resnet_tiny.onnx
OUT := out

.PHONY: demo test lint clean

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[plot]'
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.core
	$(BIN)/python -m pip install -q -e '.[test,openvino]'
	touch $@

demo: $(VENV)/.core
	mkdir -p $(OUT)
	$(BIN)/bnfold optimize $(MODEL) -o $(OUT)/resnet_tiny.folded.onnx --report $(OUT)/optimize.json
	$(BIN)/bnfold verify $(MODEL) $(OUT)/resnet_tiny.folded.onnx --report $(OUT)/verify.json
	$(BIN)/bnfold bench $(MODEL) $(OUT)/resnet_tiny.folded.onnx --report $(OUT)/bench.json

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache
