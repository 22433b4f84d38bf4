# Two entry points (see README):  `make study`  and  `make test`.
# Both build .venv first if needed (pip, exact pins from pyproject.toml).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PARAMS ?= params/default.yaml

.PHONY: venv study test test-fast data vae lab strip clean-runs

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (latent-video-study)" >/dev/null
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

## Regenerate the shipped stand-in VAE (lib/vae/weights/): pretraining on the unlabelled pool,
## resumable (rerun to continue), then export with probe figures and provenance. Hours on a CPU.
VAE_RUN ?= checkpoints/pretrain-seed0
vae: $(STAMP)
	$(BIN)/python -m lib.vae train --preset pretrain --out $(VAE_RUN)
	$(BIN)/python -m lib.vae standin --run $(VAE_RUN) --command "make vae"

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

strip: $(STAMP)
	$(BIN)/nbstripout --keep-id notebooks/*.ipynb

clean-runs:
	rm -rf outputs/runs
