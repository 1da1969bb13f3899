#!/bin/bash
# Harness runs behind results/compare/controlled (sequential, 2 shared CPU cores).
cd /work/main
OUT=results/compare/controlled
TASKS='benchmark.data_tasks=[{name: LocalXQuADRetrieval, subsets: [en, de, de-en, en-de]}, LocalBelebeleRetrieval, LocalLegalBenchCorporateLobbying, LocalCranfield, LocalVaswani]'
for m in bm25 splade_tiny splare_tiny splade_tiny_llm; do
  extra=""
  case $m in splare_tiny|splade_tiny_llm) extra="model.backbone.max_length=256";; esac
  start=$(date +%s)
  HF_HUB_OFFLINE=1 .venv/bin/python -m harness model=$m benchmark=controlled "$TASKS" $extra \
     run.results_dir=$OUT/results run.show_progress=false > $OUT/logs/$m.log 2>&1
  echo "$m rc=$? seconds=$(( $(date +%s) - start ))" >> $OUT/logs/timing.txt
done
