# Two commands do all the set-up: `make repro` (run the embedded default pipeline) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.pgraft-installed
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: setup lock repro repro-dvc dvc-yaml test test-fast bench plots study-ddpo study-inc study-regime clean-results help slurm-profile slurm-up slurm-down

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

# requirements.txt is the full lock (every transitive pin, extras sd2 and test included) that `make lock` compiles
# from requirements.in and pyproject.toml; pgraft itself goes in editable, without resolving anything more
$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -r requirements.txt 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | { grep -v "is ignored: it is neither" || true; }
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the locked dependency set (requirements.txt; idempotent)

PIP_TOOLS := pip-tools==7.6.2
LOCK_INPUTS := pyproject.toml requirements.in
LOCK_FLAGS := --quiet --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links --extra sd2 --extra test
lock:  ## recompile the lock requirements.txt after editing requirements.in or pyproject.toml's dependencies
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q $(PIP_TOOLS) 2>&1 | { grep -v "is ignored: it is neither" || true; }
	CUSTOM_COMPILE_COMMAND="make lock  (pip-compile $(LOCK_INPUTS), extras sd2 and test)" \
	  $(VENV)/bin/pip-compile $(LOCK_FLAGS) -o requirements.txt $(LOCK_INPUTS)

# `pgraft warm`: each stage forks from a server that imported torch once (docs/PIPELINE.md "Where the time goes")
repro: setup  ## run the embedded default pipeline on every core (Snakemake), record it in dvc.lock -> results/figures/
	pgraft pipeline dvc
	pgraft warm snakemake --profile workflow/profiles/local
	dvc commit --force --quiet
	@# dvc commit rewrites cached outputs in its own order, so their times no longer follow the DAG and the next
	@# Snakemake run would redo jobs; every output is current here: mark them so (no command runs)
	snakemake --profile workflow/profiles/local --touch --quiet all

repro-dvc: setup  ## the same pipeline through `dvc repro` (one stage at a time; identical outputs)
	pgraft pipeline dvc
	pgraft warm dvc repro

dvc-yaml: setup  ## write dvc.yaml from the stage table (after editing domains / ddpo.domains / inc.domains / plugins)
	pgraft pipeline dvc

test: setup  ## run the test suite (CPU, offline)
	python -m pytest -q

test-fast: setup  ## the test suite without the end-to-end engine runs
	python -m pytest -q -m "not slow"

bench: setup  ## benchmarks: shared-sampling ratio, sampler throughput ratio, no-op dvc repro time
	python benchmarks/run.py

plots: setup  ## dvc plots rendered offline into dvc_plots/index.html
	dvc plots show

STUDY_JOBS ?= 2
study-ddpo: setup  ## DDPO at its real budget vs multi-round GRAFT / P-GRAFT (scripts/ddpo_budget.py; STUDY_JOBS=2) -> results/studies/ddpo_budget/
	python scripts/ddpo_budget.py --jobs $(STUDY_JOBS)

study-regime: setup  ## regime map: where P-GRAFT(best k) beats GRAFT, and predicted vs measured best k (scripts/regime_map.py, ~40 min on 2 cores; STUDY_JOBS=2; SMOKE=1: a plumbing check) -> results/studies/regime_map/
	pgraft warm python scripts/regime_map.py --jobs $(STUDY_JOBS) $(if $(SMOKE),--smoke)

study-inc: setup  ## INC study: n in {5,10,20,40} x coupling x corrector size x steps x inverted set (hours; SMOKE=1: a plumbing check)
	python scripts/inc_study.py --out results/studies/inc_study $(if $(SMOKE),--smoke)

# named Snakemake profile `slurm`: snakemake searches ./<name>, then $XDG_CONFIG_HOME/snakemake (default
# ~/.config/snakemake), then /etc/xdg/snakemake
SMK_PROFILES ?= $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/snakemake
slurm-profile:  ## link workflow/profiles/slurm as the named profile: `snakemake --profile slurm`
	@mkdir -p "$(SMK_PROFILES)"
	@if [ -e "$(SMK_PROFILES)/slurm" ] && [ ! -L "$(SMK_PROFILES)/slurm" ]; then \
	  echo "error: $(SMK_PROFILES)/slurm exists and is not a link; move it away first" >&2; exit 1; fi
	ln -sfn "$(abspath workflow/profiles/slurm)" "$(SMK_PROFILES)/slurm"

slurm-up:  ## (root) single-node SLURM test cluster with fake GPUs (scripts/slurm_up.sh)
	scripts/slurm_up.sh

slurm-down:  ## stop the daemons slurm-up started
	scripts/slurm_down.sh
