# Two entry points on a fresh machine: `make run` (set up, then the embedded default matrix)
# and `make test` (set up, then the test suite). Both are idempotent: the venv is rebuilt only
# when pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
OUT    ?= runs/smoke

.PHONY: setup run test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/raybench run --matrix smoke --out $(OUT)
	$(BIN)/raybench report $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/raybench bench metrics --scale market
	$(BIN)/raybench bench metrics --scale msmt17 --against none
	$(BIN)/raybench bench metrics --scale msmt17 --rerank
	$(BIN)/raybench bench embed

clean:
	rm -rf $(VENV) runs .pytest_cache
