# Two entry points (see README):  `make study`  and  `make test`.
# Both build .venv first if needed (pip, exact pins from pyproject.toml).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PARAMS ?= params/default.yaml

.PHONY: venv study test test-fast data vae vae-gpu rehearsal gpu-check lab strip clean-runs

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,dev,zoo]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (latent-video-study)" >/dev/null
	# JupyterLab: a notebook saved by hand is copied into its run directory, widget state saved (lib/lab.py)
	$(BIN)/python -m lib.lab install >/dev/null
	# strip notebook outputs on commit (keeps the `parameters` tag); only inside a git checkout
	if [ -d .git ]; then $(BIN)/nbstripout --install --attributes .git/info/attributes; fi
	touch $(STAMP)

## The study on the embedded default (synthetic dataset), notebooks 00 -> 07 via papermill.
study: $(STAMP)
	$(BIN)/python -m lib.study run $(PARAMS)

## Unit tests, then every notebook on its smoke-sized defaults (explicit path: never outputs/).
test: $(STAMP)
	$(BIN)/python -m pytest tests
	$(BIN)/python -m pytest --nbmake notebooks/

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow"

## Generate the embedded default dataset (also done on demand by `make study`).
data: $(STAMP)
	$(BIN)/python -m lib.data synth --out data/synth_default --preset default --seed 0

## Regenerate the shipped stand-in VAE (lib/vae/weights/): the pretrain run on the unlabelled pool
## up to step VAE_STEPS (the shipped file's checkpoint; resumable: rerun to continue), then export
## with probe figures and provenance. About 20 min on one CPU thread, plus ~10 min for the probe.
VAE_RUN ?= checkpoints/pretrain-seed0
VAE_STEPS ?= 250
vae: $(STAMP)
	$(BIN)/python -m lib.vae train --preset pretrain --out $(VAE_RUN) --threads 1 --until-step $(VAE_STEPS)
	$(BIN)/python -m lib.vae standin --run $(VAE_RUN) --command "make vae"

## The same pretraining on a GPU (preset pretrain_gpu, VAE_GPU_MINUTES of training, resumable),
## exported as a candidate stand-in with probe figures: outputs/benchmarks/gpu_pretrain/.
VAE_GPU_MINUTES ?= 6
vae-gpu: $(STAMP)
	$(BIN)/python benchmarks/gpu_pretrain.py --device cuda --minutes $(VAE_GPU_MINUTES)

## Rehearse the UCF101 path (params/ucf101_reducio.yaml's notebooks and settings) on this CPU:
## a UCF101-layout stand-in and a random-weight Lightning checkpoint of the ft4 geometry; <= 15 min.
REHEARSAL ?= params/ucf101_rehearsal.yaml
rehearsal: $(STAMP)
	$(BIN)/python -m lib.rehearsal diff
	$(BIN)/python -m lib.rehearsal prepare --params $(REHEARSAL)
	$(BIN)/python -m lib.study run $(REHEARSAL)

## Every GPU measurement (ft4 encoder, precision, cache pipeline, classifiers, R(2+1)D) in one
## process, <= 8 min on one GPU: a table and outputs/benchmarks/gpu_check.json.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --device cuda

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

strip: $(STAMP)
	$(BIN)/nbstripout --keep-id notebooks/*.ipynb

clean-runs:
	rm -rf outputs/runs
