#!/bin/bash
# splade_tiny_llm on the cross-lingual tasks of the same benchmark config only (262k LM head: slow on CPU).
cd /work/main
OUT=results/compare/controlled
TASKS='benchmark.data_tasks=[{name: LocalXQuADRetrieval, subsets: [en, de, de-en, en-de]}, LocalBelebeleRetrieval, LocalLegalBenchCorporateLobbying, LocalCranfield, LocalVaswani]'
start=$(date +%s)
HF_HUB_OFFLINE=1 .venv/bin/python -m harness model=splade_tiny_llm benchmark=controlled "$TASKS" model.backbone.max_length=256 \
   'run.tasks=[LocalXQuADRetrieval,LocalBelebeleRetrieval]' run.results_dir=$OUT/results run.show_progress=false > $OUT/logs/splade_tiny_llm.log 2>&1
echo "splade_tiny_llm rc=$? seconds=$(( $(date +%s) - start ))" >> $OUT/logs/timing.txt
