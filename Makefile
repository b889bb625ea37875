# Two commands do everything on a fresh machine: `make run` and `make test`.
# Both create .venv on first use (pip install -e '.[dev]') and reuse it afterwards.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test bench install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## run the default experiment; pass overrides with ARGS="model.backbone=efficientnet_b0 trainer.max_epochs=3"
run: install
	$(PY) run.py $(ARGS)

## the whole test suite (slow tests included); narrow it with ARGS="-k gradcam"
test: install
	$(PY) -m pytest $(ARGS)

## the benchmarks (ratios against baselines measured in the same run); REPEATS runs of each side, medians
REPEATS ?= 5
bench: install
	$(PY) scripts/bench_runner.py --repeats $(REPEATS)
	$(PY) scripts/bench_interpret.py --quick --repeats $(REPEATS)
	$(PY) scripts/bench_callbacks.py --rounds 9 --repeats $(REPEATS)
	$(PY) scripts/bench_metrics.py --quick --repeats $(REPEATS)

clean:
	rm -rf outputs/*/ .pytest_cache
