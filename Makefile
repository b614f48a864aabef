# mlasr: the two commands that do everything on a fresh Debian/Ubuntu machine are
#   make demo    build the default benchmark, train, evaluate, print the per-language table
#   make test    install test dependencies and run the suite
SHELL := /bin/bash
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
DATA ?= $(HOME)/mlasr_data
WORK ?= $(HOME)/mlasr_runs
# pytest-xdist workers: most tests compile XLA programs on one core, so two workers keep a
# 2-core machine busy (make test TEST_WORKERS=0 runs in one process).
TEST_WORKERS ?= auto

# Debian packages: speech engines for the generated benchmark, sclite for scoring checks,
# cmake/g++/zlib to build the kenlm Python module (pip builds it from source); ffmpeg reads
# the containers libsndfile cannot (m4a/aac, webm, video) for mlasr.transcribe, and
# alsa-utils ships the recorded human voices its tests transcribe.
# festival-hi/-mr/-te are only Recommends of the NSK voices, which --no-install-recommends
# skips; without them those voices fail with "could not open file hindi_phones.scm".
APT_PACKAGES := espeak-ng festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
  festival-hi festival-mr festival-te festvox-hi-nsk festvox-mr-nsk festvox-te-nsk festvox-ru \
  festvox-italp16k festvox-itapc16k festvox-czech-dita festvox-czech-ph festvox-czech-krb \
  festvox-czech-machac festvox-suopuhe-mv festvox-suopuhe-lj festvox-ca-ona-hts sctk sox \
  cmake g++ zlib1g-dev ffmpeg alsa-utils

.PHONY: help install-system install install-test test demo bench clean-demo

help:
	@echo "make demo | make test | make bench"

# apt-get runs only when something is missing, so repeated runs stay fast.
install-system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:" $$missing; \
	  SUDO=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

install: install-system
	$(PIP) install -q -e .

install-test: install
	$(PIP) install -q -e '.[test]'

test: install-test
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS) tests

demo: install
	$(PYTHON) -m data_prep.synth_benchmark --preset demo --out $(DATA)/demo
	$(PYTHON) -m mlasr.train --config experiments/demo_ctc.py:root=$(DATA)/demo --workdir $(WORK)/demo_ctc
	$(PYTHON) -m mlasr.evaluate --workdir $(WORK)/demo_ctc --split test
	$(PYTHON) -m mlasr.lm --workdir $(WORK)/demo_ctc
	$(PYTHON) -m mlasr.lm --workdir $(WORK)/demo_ctc --tune --tune_kinds=char --beam=8 \
	    --lm_weights=0.2,0.4,0.6 --word_bonuses=0,1,2
	$(PYTHON) -m mlasr.evaluate --workdir $(WORK)/demo_ctc --split test --decoder=beam_lm \
	    --lm_kind=char --beam=8
	$(PYTHON) -m mlasr.evaluate --workdir $(WORK)/demo_ctc --split test --adapter_lang=auto
	$(PYTHON) -m mlasr.evaluators.compare --workdir $(WORK)/demo_ctc --split test

bench: install-test
	$(PYTHON) benchmarks/pipeline_throughput.py
	$(PYTHON) benchmarks/model_speed.py

clean-demo:
	rm -rf $(WORK)/demo_ctc
