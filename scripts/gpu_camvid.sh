#!/bin/bash
# Issue 14, item 5, in one call of the device tool (a GPU machine that reaches nothing outside it):
# the GPU speed sweep of `bench speed`, then `deep-camvid-gpu` (paper widths, 360x480, from scratch)
# for as many networks as the time left allows, then the leaderboard of what finished.
#
# Here, once:  python scripts/pack_for_device.py --camvid ../shared/datasets/camvid   (writes device-carry/)
# Then the device tool's run, from the repository root, with carry ["device-carry"] and timeout_s 600:
#     bash scripts/gpu_camvid.sh
# Everything ends by BUDGET_S (default 530 s, inside the call's 600, which a slow machine start can
# shorten): the speed sweep gets at most SPEED_S (an equal share a network), the training step
# alone STEP_S, the training loader alone LOADER_S, training what is left
# but REPORT_S for the leaderboard and the files.
# What comes back ($OUT, at most 8 files): gpu.txt, speed.md, step.md, loader.md, leaderboard.md, leaderboard.csv,
# results.tar.gz (records, per-image scores, each network's history.csv and curves, the report's plots
# (predictions grid, worst images, ...), GPU utilisation every 5 s), log.txt.
# Overrides: TRAIN=0 (the speed sweep alone), ONLY=segnet,unet (only these jobs), SPEED_MODELS=, SPEED_S=, STEP_MODELS=, STEP_S=, LOADER_S=,
# JOBS=3 (jobs side by side on the one GPU, `bench run --workers`; tried once, session 32: slower, keep 1);
# for a dry run on a CPU: DEVICE=cpu SUITE=path.yaml BUDGET_S=... OUT=folder
set -uo pipefail
out=$(cd "${OUT:?OUT: the folder whose files come back}" && pwd)
carry=${CARRY:-device-carry}
device=${DEVICE:-cuda}
suite=${SUITE:-deep-camvid-gpu}
budget_s=${BUDGET_S:-530}
speed_s=${SPEED_S:-150}
report_s=${REPORT_S:-45}
step_s=${STEP_S:-75}  # the training step alone (scripts/train_step_options.py), 0: skip
loader_s=${LOADER_S:-40}  # the training loader alone (scripts/train_loader_speed.py), 0: skip
speed_models=${SPEED_MODELS-fcn8s,segnet,unet}
# DilatedNet last: its one epoch beside two other jobs took 378 s (session 32); alone, with
# cuDNN's benchmark mode, its step says whether that was the GPU's work
step_models=${STEP_MODELS-${speed_models:+$speed_models,}dilatednet}
train=${TRAIN:-1}  # 0: the speed sweep alone
jobs=${JOBS:-1}  # jobs side by side, each with the suite's data workers; records say how many shared the GPU
results=${RESULTS:-/tmp/segbench-gpu}
export PYTHONUNBUFFERED=1
exec > >(tee "$out/log.txt") 2>&1
cd "$(dirname "$0")/.."
[ -d "$carry/camvid" ] || { echo "$carry/camvid missing: run scripts/pack_for_device.py here first and carry $carry"; exit 2; }
left() { echo $(( budget_s - SECONDS )); }

echo "== install $(date -u +%T)"
# the machine's own torch and libraries stay: no dependencies, no build isolation (no index there);
# its Python (3.12) is newer than the one segbench pins, hence --ignore-requires-python
python3 -m pip install --quiet --no-deps --no-build-isolation --ignore-requires-python -e . \
    || { echo "segbench did not install"; exit 3; }
python3 - <<'EOF' | tee "$out/gpu.txt"
import platform, torch, torchvision
print("python", platform.python_version(), "torch", torch.__version__, "torchvision", torchvision.__version__)
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$out/gpu.txt"

echo "== speed $(date -u +%T), at most $speed_s s"
: > "$out/speed.md"
models=(${speed_models//,/ })
each=$(( speed_s / ${#models[@]} ))  # an equal share: one slow network does not starve the others
for model in "${models[@]}"; do
    rm -f "/tmp/speed-$model.md"  # `--out`: the table so far after every row, so a time limit keeps the rows
    # bf16 first (what training runs): FCN-8s's and U-Net's first strict-fp32 NHWC batch of 8 did
    # not finish its warm-up in the 10 s or so left of 30 (session 32). SIGABRT at the limit: faulthandler prints where it was
    timeout -s ABRT -k 5 "$each" python3 -X faulthandler -m bench speed --model "$model" --device "$device" --input 360x480 \
        --num-classes 11 --batch-sizes 1,8,32 --precisions bf16,fp32 --channels-last \
        --warmup 5 --iters 20 --min-time 1 --no-e2e --format md --out "/tmp/speed-$model.md" > /dev/null \
        || echo "speed $model: rc $? (124: stopped at its $each s; the rows measured before are below)" >> "$out/speed.md"
    cat "/tmp/speed-$model.md" >> "$out/speed.md" 2>/dev/null
done

echo "== training step alone $(date -u +%T), at most $step_s s"
# data already on the GPU: held against the runs' training images/s, it says what the loader costs
[ "$step_s" -gt 0 ] && timeout -s ABRT -k 5 "$step_s" python3 -X faulthandler scripts/train_step_options.py \
    --device "$device" --width 1 --input 360x480 --batch 8 --iters 5 --networks "$step_models" \
    --options "bf16 + channels-last" | tee "$out/step.md"

echo "== training loader alone $(date -u +%T), at most $loader_s s"
# the trainer's loader with the suite's 8 workers and no step: what this host's cores supply
[ "$loader_s" -gt 0 ] && timeout -s ABRT -k 5 "$loader_s" python3 -X faulthandler scripts/train_loader_speed.py \
    --data-root "$carry/camvid" --workers 8 --epochs 3 | tee "$out/loader.md"

train_s=$(( $(left) - report_s ))
echo "== train $(date -u +%T), at most $train_s s"
# DataLoader workers pass batches through /dev/shm: where it is small, load in the main process
shm_kib=$(df -k --output=size /dev/shm 2>/dev/null | tail -1 | tr -d ' ')
if [ "${shm_kib:-0}" -lt 4194304 ] && [ -f "$suite" -o -f "bench/suites/$suite.yaml" ]; then
    src=$([ -f "$suite" ] && echo "$suite" || echo "bench/suites/$suite.yaml")
    sed 's/num_workers: [0-9]*/num_workers: 0/' "$src" > /tmp/gpu-suite.yaml && suite=/tmp/gpu-suite.yaml
    echo "/dev/shm holds ${shm_kib:-?} KiB: data loading in the main process ($suite)"
fi
mkdir -p "$results"
command -v nvidia-smi >/dev/null && { nvidia-smi dmon -s um -d 5 > "$results/gpu_utilisation.txt" 2>&1 & dmon=$!; }
if [ "$train" = 1 ] && [ "$train_s" -gt 30 ]; then
    timeout -k 10 "$train_s" python3 -m bench run --suite "$suite" ${ONLY:+--only "$ONLY"} --data-root "$carry/camvid" \
        --device "$device" --out "$results" --workers "$jobs" --no-progress
    echo "train rc $? $(date -u +%T) (124: stopped at the time limit; finished jobs have their records)"
fi
[ -n "${dmon:-}" ] && kill "$dmon" 2>/dev/null
timeout -k 5 "$(( report_s - 15 ))" python3 -m bench report --out "$results" > /dev/null
cp "$results/leaderboard.md" "$results/leaderboard.csv" "$out/" 2>/dev/null
(cd "$results" && tar -czf "$out/results.tar.gz" --ignore-failed-read records records.jsonl per_image \
    leaderboard.md per_class_iou.csv ./*.png gpu_utilisation.txt runs/*/history.csv runs/*/curves.png \
    2>/dev/null)
echo "== done $(date -u +%T), $SECONDS s"
