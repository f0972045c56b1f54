# The README's two set-up commands: `make demo` and `make test`.
# Both install what is missing into .venv (idempotent), then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install lock chromium demo test docs bench clean

# requirements.lock pins every package to the version the test suite last passed with; the
# package metadata (pyproject.toml) keeps its ranges. `make lock` rewrites it from .venv.
LOCK   := requirements.lock

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# torch first, at the locked version: that one is a CPU build on local disk here; a range
	@# would pull several GB of CUDA packages. Skipped if that torch is there.
	@$(BIN)/python -c "import torch, sys; sys.exit(torch.__version__ != '$$(sed -n 's/^torch==//p' $(LOCK))')" 2>/dev/null || \
	  $(BIN)/pip install -q -c $(LOCK) torch
	$(BIN)/pip install -q -c $(LOCK) -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lock: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^#' > $(LOCK)

demo: install
	$(BIN)/byol demo --out runs/demo

# The report test opens report.html in headless Chromium (Debian's package); installed here
# when this runs as root with apt, else that test skips and says why.
chromium:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) || \
	  echo "could not install chromium; the report test will skip"

test: install chromium
	$(BIN)/python -m pytest -q -ra tests

# The documentation site (mkdocs.yml): site/index.html. The test suite builds it too, with --strict.
docs: install
	$(BIN)/mkdocs build --strict

bench: install
	$(BIN)/python benchmarks/bench.py throughput

clean:
	rm -rf runs data/demo site .pytest_cache
