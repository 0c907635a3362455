#!/usr/bin/env bash
# One epoch of all-MiniLM-L6-v2 on SST-2 (GLUE train 67,349 / dev 872), as recorded in
# benchmarks/README.md. Needs ../shared/data/sst2 beside the repo (not part of the tests).
# Usage: bash benchmarks/sst2.sh [extra train_cls.py flags, e.g. --mixed_precision mixed_bfloat16]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SST2_DIR:-../shared/data/sst2}
python pipelines/train_cls.py --model minilm-l6 \
  --train_file "$DATA/train.tsv" --validation_file "$DATA/dev.tsv" \
  --text_column sentence --label_column label \
  --epochs 1 --batch_size 32 --max_seq_length 128 --learning_rate 1e-4 \
  --run_name sst2-minilm-l6 "$@"
