#!/bin/bash
# The "before" runs of results/micrec/before-after/: the code at 43f6bd5 (before issue 15),
# one `cdr reproduce` per seed with split.seed = seed (that code's cells set only `seed`).
# Usage: git worktree add /tmp/old 43f6bd5 && cd /tmp/old && pip install -e . (or PYTHONPATH=src)
#        bash run.sh OUT   then   python tools/before_after.py --before OUT/<dataset>/seed*/cells ...
set -euo pipefail
OUT=${1:?output directory}
export OMP_NUM_THREADS=1
for s in 0 1 2; do
  cdr reproduce micrec -t table2 -t table3 --seeds $s --set split.seed=$s \
    --set dataset.kind=synthetic --set dataset.size=default --out "$OUT/synthetic/seed$s"
  cdr reproduce micrec -t table2 -t table3 --seeds $s --set split.seed=$s \
    --out "$OUT/ml-100k-genres/seed$s"
done
