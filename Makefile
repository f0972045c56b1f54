# The README's two set-up commands: `make demo` and `make test`.
# Both install what is missing into .venv (idempotent), then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install chromium demo test bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# torch first, pinned: this exact version is a CPU build on local disk here;
	@# any range would pull several GB of CUDA packages. Skipped if torch is there.
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

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

bench: install
	$(BIN)/python benchmarks/bench.py throughput

clean:
	rm -rf runs data/demo .pytest_cache
