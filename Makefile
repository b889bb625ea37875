# Two commands do everything on a fresh machine: `make run` and `make test`.
# Both create .venv on first use (pip install -e '.[dev]') and reuse it afterwards.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test bench install chromium slurm slurm-up slurm-down clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## run the default experiment; pass overrides with ARGS="model.backbone=efficientnet_b0 trainer.max_epochs=3"
run: install
	$(PY) run.py $(ARGS)

## Debian's chromium for the browser tests of the HTML report (tests/runner/report/test_report.py), when missing
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; else SUDO=none; fi; \
	  if [ "$$SUDO" = none ] || ! command -v apt-get >/dev/null 2>&1; then \
	    echo "warning: no chromium and no way to install it here (apt-get as root or with sudo): tests/runner/report/test_report.py will fail; set CHROMIUM=<path> to use another Chromium"; \
	  else \
	    echo "Installing chromium (apt-get) for tests/runner/report/test_report.py"; \
	    $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; \
	  fi; }

## Debian's slurm-wlm and munge for the SLURM tests (tests/e2e/slurm/, a one-node cluster on this machine), when missing
slurm:
	@{ command -v slurmctld || [ -x /usr/sbin/slurmctld ]; } >/dev/null 2>&1 && { command -v munged || [ -x /usr/sbin/munged ]; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; else SUDO=none; fi; \
	  if [ "$$SUDO" = none ] || ! command -v apt-get >/dev/null 2>&1; then \
	    echo "warning: no slurm-wlm/munge and no way to install them here (apt-get as root or with sudo): tests/e2e/slurm/ will fail"; \
	  else \
	    echo "Installing slurm-wlm and munge (apt-get) for tests/e2e/slurm/"; \
	    $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q slurm-wlm munge; \
	  fi; }

## a one-node SLURM cluster on this machine (root): then `export SLURM_CONF=...` as it prints; stop it with make slurm-down
slurm-up: slurm
	$(PYTHON) scripts/slurm_local.py start

slurm-down:
	$(PYTHON) scripts/slurm_local.py stop

## the whole test suite (slow tests included) in JOBS pytest-xdist workers; narrow it with ARGS="-k gradcam"
## (the README's commands and the SLURM tests each stay on one worker, in order: tests/conftest.py)
JOBS ?= 2
test: install chromium slurm
	$(PY) -m pytest -n $(JOBS) --dist load --durations=25 $(ARGS)

## the benchmarks (ratios against baselines measured in the same run); REPEATS runs of each side, medians
REPEATS ?= 5
bench: install
	$(PY) scripts/bench_runner.py --repeats $(REPEATS)
	$(PY) scripts/bench_interpret.py --quick --repeats $(REPEATS)
	$(PY) scripts/bench_callbacks.py --rounds 9 --repeats $(REPEATS)
	$(PY) scripts/bench_metrics.py --quick --repeats $(REPEATS)

clean:
	rm -rf outputs/*/ .pytest_cache
