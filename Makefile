# The README documents `make demo` and `make test`; both set up .venv from scratch when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch and torchvision are pinned to the releases the project is tested with:
# PyPI's torchvision does not import beside other torch builds, and lpips / open_clip need it.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: venv install browser test test-slow test-packaging lint format demo bench clean lpips

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet -e ".[all,dev]"
	touch $@

venv install: $(VENV)/.installed

# The page's browser test (tests/test_ui_browser.py) drives Debian's Chromium through its
# chromedriver: installed here when missing (as root, or through sudo). Without them it fails.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    chromium chromium-driver; }

test: $(VENV)/.installed browser
	$(BIN)/upsampler prepare-lpips --if-missing
	$(BIN)/python -m pytest -q

test-slow: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m slow

# The wheel alone: built, installed with its base dependencies into a fresh venv (torch as
# above), then `upsampler upscale` on the CPU. Slow (minutes); .ci/run runs it after `make test`.
test-packaging: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m slow tests/test_packaging.py

lint: $(VENV)/.installed
	$(BIN)/ruff check upsampler cli tests benchmarks examples scripts
	$(BIN)/ruff format --check upsampler cli tests benchmarks examples scripts

format: $(VENV)/.installed
	$(BIN)/ruff format upsampler cli tests benchmarks examples scripts
	$(BIN)/ruff check --fix upsampler cli tests benchmarks examples scripts

demo: $(VENV)/.installed
	$(BIN)/upsampler --version
	$(BIN)/upsampler upscale examples/images -o outputs --model nano-4x

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/presets.py

# Real LPIPS weights (AlexNet/VGG16 trunks) for training and eval; see docs/evaluation.md.
lpips: $(VENV)/.installed
	$(BIN)/upsampler prepare-lpips

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
