# Everything installs into .venv from nothing. torch is pinned and installed first: an unpinned torch
# (asked for by fairseq) would pull a multi-GB CUDA build. fairseq-fixed builds from source against
# that torch, hence --no-build-isolation and its build requirements installed beforehand. fairseq also pulls
# torchaudio 2.11, a CUDA build that cannot load beside torch 2.13 CPU: nothing here imports it, but transformers
# imports any torchaudio it finds, so it is removed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fesa-installed
PYTEST_ARGS ?=
DEMO_DIR ?= demo_out

.PHONY: install test test-fast lint format demo demo-choose demo-controls demo-source demo-espeak slurm-deps clean

install: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --disable-pip-version-check setuptools wheel cython numpy
	$(PY) -m pip install --disable-pip-version-check --no-build-isolation -e ".[test,slurm,export,hf]"
	$(PY) -m pip uninstall --disable-pip-version-check -y torchaudio
	touch $(STAMP)

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

# ruff.toml: one line length, pyflakes, pycodestyle, import order; and the formatter's layout.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The whole method on the synthetic demo corpus, all 5 folds, on the CPU; resumable (run it again to continue).
# Every fold starts from examples/demo/source_model.pt, as IEMOCAP folds start from hubert_base_ls960.pt.
demo: install
	$(VENV)/bin/fesa make-demo-corpus --overwrite $(DEMO_DIR)/corpus
	$(VENV)/bin/fesa run examples/demo/experiment.yaml --exp-dir $(DEMO_DIR)/exp corpus=$(DEMO_DIR)/corpus

# The demo's fine-tuning settings, chosen on validation UA only (benchmarks/choose_finetune.py logs every candidate
# and fold in $(DEMO_DIR)/choose/search.tsv, the winner in choice.json); reuses make demo's TAPT stages.
demo-choose: install
	$(VENV)/bin/fesa make-demo-corpus --overwrite $(DEMO_DIR)/corpus
	$(VENV)/bin/fesa run examples/demo/experiment.yaml --exp-dir $(DEMO_DIR)/exp corpus=$(DEMO_DIR)/corpus --stages prepare:tapt
	$(VENV)/bin/python benchmarks/choose_finetune.py --exp $(DEMO_DIR)/exp --out $(DEMO_DIR)/choose

# The demo's question, asked with controls: continued pretraining on the method's frame clusters against the same
# CPT on utterance labels, on shuffled clusters and on the TAPT stage's own units (same budget for all four). Shares
# every stage make demo already ran; the report pairs the method with each control.
demo-controls: install
	$(VENV)/bin/fesa make-demo-corpus --overwrite $(DEMO_DIR)/corpus
	$(VENV)/bin/fesa run examples/demo/experiment.yaml --exp-dir $(DEMO_DIR)/exp corpus=$(DEMO_DIR)/corpus alignment=true --grid cpt_targets=clusters,utterance,shuffled,tapt

# Rebuild examples/demo/source_model.pt (about 13 minutes): unlabelled speakers outside every session, MFCC
# k-means targets, 4,000 updates of masked prediction.
demo-source: install
	bash examples/demo/make_source_model.sh $(DEMO_DIR)/source

# The demo's configuration on a corpus made differently (espeak-ng voices, words and prosody): is it robust?
demo-espeak: install
	$(VENV)/bin/fesa make-demo-corpus --overwrite --synthesizer espeak $(DEMO_DIR)/espeak-corpus
	$(VENV)/bin/fesa run examples/demo/experiment.yaml --exp-dir $(DEMO_DIR)/espeak-exp corpus=$(DEMO_DIR)/espeak-corpus

# Debian's SLURM and munge, for examples/slurm/local_cluster.sh and the SLURM tests (as root; .ci/run calls it).
slurm-deps:
	apt-get install -y --no-install-recommends slurm-wlm munge || (apt-get update && apt-get install -y --no-install-recommends slurm-wlm munge)

clean:
	rm -rf $(VENV) $(DEMO_DIR)
