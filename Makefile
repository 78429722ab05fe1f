# Two commands on a fresh machine: `make serve` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: serve test lint typecheck unit chromium bench clean

serve: $(STAMP)
	$(BIN)/stepline serve

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) chromium
	$(BIN)/python -m pytest

# The dashboard's browser tests drive Debian's Chromium (Playwright cannot download a browser
# here); installed when missing, with sudo unless already root.
chromium:
	@command -v chromium >/dev/null || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -q && $$sudo apt-get install -y -q chromium; }

# Installs the peers into bench/.venvs/, runs every benchmark, writes bench/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# The HTTP contract, committed; tests/contract/test_openapi.py fails when it drifts.
.PHONY: openapi
openapi: $(STAMP)
	$(BIN)/stepline openapi openapi.json

# The venv is rebuilt when it is missing, broken (its Python moved or vanished), or older
# than the dependency pins.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Stepline needs Python 3.11 or newer; set PYTHON=python3.x" >&2; exit 1; }
	@$(BIN)/python -c 'import sys' 2>/dev/null || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
