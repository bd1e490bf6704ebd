#!/bin/bash
# The long CamVid runs of issue 14 (hours on a CPU): deep-camvid, then the held-out-sequence
# check scored on val and on the held-out frames (the second reuses the first one's fits).
# Resumable: rerun it and finished jobs are skipped, an interrupted training continues from
# its last checkpoint.   usage: scripts/camvid_long.sh OUT_DIR [DATA_ROOT]   (THREADS=n to limit)
set -euo pipefail
out=${1:?usage: scripts/camvid_long.sh OUT_DIR [DATA_ROOT]}
data=${2:-../shared/datasets/camvid}
threads=${THREADS:-$(nproc)}
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
cd "$(dirname "$0")/.."
python -m bench run --suite deep-camvid --data-root "$data" --out "$out/camvid" --no-progress
for split in val 0006R0; do
    python -m bench run --suite deep-camvid-holdout --data-root "$data" --out "$out/camvid-holdout" \
        --eval-split "$split" --no-progress
done
