# Every target but `help` uses .venv/ and creates it first when it is missing.
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
CONFIG  ?= experiments/configs/digits_mlp.py
WORKDIR ?= runs/$(basename $(notdir $(CONFIG)))
ARGS    ?=
RUNS    ?=
EXP     ?=
# make sweep: PRESET=paper adds --preset paper, ALLOW_CPU=1 the trainer's --allow_cpu.
PRESET  ?=
ALLOW_CPU ?=
OUT     ?= runs/report
PYTEST_ARGS ?=
# JAX=cpu (default), cuda12 or cuda13: the jax extra for NVIDIA GPUs (CUDA from pip wheels).
JAX     ?= cpu
# PINNED=1 installs exactly the versions of constraints.txt (the set the docs measured with).
PINNED  ?=
JAX_VARIANTS := cpu cuda12 cuda13
comma   := ,
EXTRAS  := dev,tfds,torch$(if $(filter-out cpu,$(JAX)),$(comma)$(JAX))
PIP_CONSTRAINTS := $(if $(PINNED),-c constraints.txt)

.DEFAULT_GOAL := help
.PHONY: help install test demo train report sweep bench data figures

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | awk -F'\t' '{printf "  make %-8s %s\n", $$1, $$2}'
	@echo "  variables: CONFIG=$(CONFIG) WORKDIR=... ARGS=\"--config.x=y\" RUNS=\"dir1 dir2\" EXP=name PRESET=paper ALLOW_CPU=1 OUT=$(OUT) JAX=cpu|cuda12|cuda13 PINNED=1"

define pip_install
	$(if $(filter $(JAX),$(JAX_VARIANTS)),,$(error JAX=$(JAX) is not one of: $(JAX_VARIANTS)))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e ".[$(EXTRAS)]" $(PIP_CONSTRAINTS)
	touch $(STAMP)
endef

# The other targets install once (and again when pyproject.toml changes); `make install`
# always runs pip, so `make install JAX=cuda12` adds the GPU wheels to an existing .venv/.
$(STAMP): pyproject.toml
	$(pip_install)

install:  ## create/update .venv/ with everything (dev, tfds, torch extras) [JAX=cuda12|cuda13] [PINNED=1]
	$(pip_install)

test: $(STAMP)  ## run the whole pytest suite (CPU only, offline)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)  ## UFM+/UFM solves, digits training with and without ReLU, and the report (offline, minutes)
	$(BIN)/python -m experiments.demo --out runs/demo

train: $(STAMP)  ## train: make train CONFIG=experiments/configs/NAME.py [WORKDIR=...] [ARGS="--config.a=b"]
	$(BIN)/python -m deepnet.main --config=$(CONFIG) --workdir=$(WORKDIR) $(ARGS)

report: $(STAMP)  ## build a report: make report RUNS="workdir1 ufm_out2 ..." [OUT=runs/report]
	$(BIN)/python -m experiments.report --out $(OUT) $(RUNS)

sweep: $(STAMP)  ## run an experiment's grid (skips finished runs, resumes others): make sweep EXP=name [PRESET=paper] [ALLOW_CPU=1] [ARGS=...]
	$(BIN)/python -m experiments.sweep $(EXP) $(if $(PRESET),--preset $(PRESET)) $(if $(ALLOW_CPU),--allow_cpu) $(ARGS)

figures: $(STAMP)  ## rebuild every figure under docs/ from its run folders: make figures [RUNS="dir1 dir2"]
	$(BIN)/python -m experiments.figures $(RUNS)

bench: $(STAMP)  ## benchmarks; prints ratios measured in one run
	$(BIN)/python -m benchmarks.run

# Debian packages Fashion-MNIST's original IDX files; deepnet/idx.py reads them from there.
FASHION_DIR := /usr/share/datasets/fashion-mnist
FASHION_PKG := dataset-fashion-mnist

data:  ## install Fashion-MNIST's IDX files (Debian package; root + apt-get), else say what to download where; never fails
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then \
	  echo "data: Fashion-MNIST is in $(FASHION_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "data: installing $(FASHION_PKG) with apt-get"; \
	  { apt-get install -y -q $(FASHION_PKG) || { apt-get update -q && apt-get install -y -q $(FASHION_PKG); }; } \
	    || echo "data: apt-get could not install $(FASHION_PKG); the tests that need it will be skipped"; \
	elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  echo "data: installing $(FASHION_PKG) with sudo apt-get"; \
	  { sudo -n apt-get install -y -q $(FASHION_PKG) || { sudo -n apt-get update -q && sudo -n apt-get install -y -q $(FASHION_PKG); }; } \
	    || echo "data: apt-get could not install $(FASHION_PKG); the tests that need it will be skipped"; \
	else \
	  echo "data: cannot install $(FASHION_PKG) here (needs apt-get and root). Download"; \
	  echo "  train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"; \
	  echo "  from http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ into a folder DIR and pass"; \
	  echo "  --config.data.data_dir=DIR (MNIST: the same names from https://ossci-datasets.s3.amazonaws.com/mnist/)"; \
	fi
