# Set-up and entry points. `make test` and `make demo` work on a fresh clone: they create the
# virtual environment, install purenoise with its pinned PyTorch, and fetch what data they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The PyTorch build this project is tested with; override on machines that need another wheel.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
FMNIST_DIR := /usr/share/datasets/fashion-mnist
STAMP := $(VENV)/.purenoise-installed

.PHONY: venv test test-fast demo fmnist-data clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Debian ships Fashion-MNIST as a package; use it when we can install packages (root on Debian).
# Anywhere else the demo falls back to torchvision's download and the tests to idx fixtures.
fmnist-data:
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's dataset-fashion-mnist package"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } || \
		echo "Could not install dataset-fashion-mnist; continuing without it"; \
	fi

test: venv fmnist-data
	$(PY) -m pytest -q

# The main job: ERM, DRS and OPeN on Fashion-MNIST-LT, one comparison table and a report.
demo: venv fmnist-data
	$(PY) benchmarks/fmnist_lt/demo.py

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
