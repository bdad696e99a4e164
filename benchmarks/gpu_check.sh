#!/usr/bin/env bash
# GPU check: one script for a CUDA machine without internet, under 8 minutes.
#
#   bash benchmarks/gpu_check.sh --prepare   # on the development machine: copy Fashion-MNIST
#                                            # (4 .gz files, 30 MB) into data/fashion-mnist/
#   bash benchmarks/gpu_check.sh [OUT_DIR]   # on the GPU machine (default OUT_DIR: $OUT, else
#                                            # ./gpu_check_out); needs python3 with torch,
#                                            # torchvision, numpy, PyYAML, tqdm; purenoise is
#                                            # used from src/ (PYTHONPATH), nothing is installed
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh /tmp/gc
#                                            # the same steps with tiny sizes on a CPU (a dry run)
#
# Steps, each under its own time limit, each writing its log to OUT_DIR, and OUT_DIR/summary.txt
# gets every step's figures as soon as the step ends (also when a later step fails):
#   1. environment (GPU, torch, triton)                                      limit  60 s
#   2. Fashion-MNIST-LT OPeN, the full configs/fmnist_lt_r100/open.yaml recipe, loader: device
#      (30 epochs, resnet_small), with its test-set evaluation                limit 150 s
#   3. WRN-28-10, bf16, channels_last, compiled, device loader, synthetic CIFAR-10-LT data:
#      ERM vs OPeN epochs and steps, recompiles, peak memory, the projected 200-epoch recipe
#      and OPeN with noise rows in their own pass (benchmarks/gpu_bench.py)   limit 300 s
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

if [ "${1:-}" = "--prepare" ]; then
    mkdir -p data/fashion-mnist
    cp /usr/share/datasets/fashion-mnist/*-ubyte.gz data/fashion-mnist/
    ls -l data/fashion-mnist
    echo "now run it with: carry data/fashion-mnist, command: bash benchmarks/gpu_check.sh"
    exit 0
fi

OUT_DIR=${1:-${OUT:-$REPO/gpu_check_out}}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
SUMMARY=$OUT_DIR/summary.txt
PY=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
QUICK=()
FMNIST_QUICK=()
if [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then
    QUICK=(--quick)
    FMNIST_QUICK=(--set epochs=2 --set defer_epoch=1 --set limit_batches=5 --set milestones=[] --set workers=0)
fi
WORK=$(mktemp -d)  # run folders with checkpoints stay out of OUT_DIR (they are large)
export PYTHONPATH=$REPO/src:$REPO/benchmarks${PYTHONPATH:+:$PYTHONPATH}
export PURENOISE_CACHE_DIR=$WORK/cache
export PYTHONUNBUFFERED=1
START=$(date +%s)
: > "$SUMMARY"

note() { echo "$*" | tee -a "$SUMMARY"; }
finish() { note "== total wall time $(( $(date +%s) - START )) s; logs in $OUT_DIR"; }
trap finish EXIT

# run_step NAME LIMIT_S COMMAND...: never stops the script; records the exit status and time.
run_step() {
    local name=$1 limit=$2
    shift 2
    local t0 rc
    t0=$(date +%s)
    note "== $name (limit ${limit} s, started at +$(( t0 - START )) s)"
    set +e
    timeout --kill-after=15 "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
    rc=$?
    set -e
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then note "-- $name: TIMED OUT after $(( $(date +%s) - t0 )) s"
    else note "-- $name: exit $rc after $(( $(date +%s) - t0 )) s"; fi
    return 0
}

# 1. environment
run_step env 60 bash -c "nvidia-smi -L || true; $PY - <<'EOF'
import torch, torchvision, importlib.util
print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda)
print('gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NONE')
print('triton', importlib.util.find_spec('triton') is not None)
import purenoise; print('purenoise from', purenoise.__file__)
EOF"
cat "$OUT_DIR/env.log" >> "$SUMMARY"

# 2. Fashion-MNIST-LT, the OPeN recipe on the GPU (data carried from the development machine)
FMNIST=$REPO/data/fashion-mnist
if [ -f "$FMNIST/train-images-idx3-ubyte.gz" ] || [ -f "$FMNIST/train-images-idx3-ubyte" ]; then
    run_step fmnist_open 150 "$PY" -m purenoise train -c configs/fmnist_lt_r100/open.yaml \
        --out "$WORK/fmnist_open" --set device="$DEVICE" --set loader=device --set data_root="$FMNIST" \
        --set workers=4 --set progress=false \
        ${FMNIST_QUICK[@]+"${FMNIST_QUICK[@]}"}
    for f in metrics.jsonl eval.json config.yaml; do
        [ -f "$WORK/fmnist_open/$f" ] && cp "$WORK/fmnist_open/$f" "$OUT_DIR/fmnist_open_$f"
    done
    if [ -f "$WORK/fmnist_open/eval.json" ]; then
        "$PY" - "$WORK/fmnist_open" >> "$SUMMARY" <<'EOF' || true
import json, sys
run = sys.argv[1]
lines = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
ev = json.load(open(f"{run}/eval.json"))
train_s = sum(l["time_s"] for l in lines)
print(f"fmnist_lt_r100 OPeN ({len(lines)} epochs, loader device): top-1 {ev['top1']:.4f}, many {ev['many']}, "
      f"medium {ev['medium']}, few {ev['few']}; training {train_s:.1f} s "
      f"({sum(l['images_per_s'] for l in lines) / len(lines):,.0f} img/s mean over epochs)")
EOF
    fi
    tail -n 3 "$OUT_DIR/fmnist_open.log" >> "$SUMMARY" || true
else
    note "-- fmnist_open: SKIPPED, no Fashion-MNIST files in $FMNIST (run --prepare and carry data/fashion-mnist)"
fi

# 3. WRN-28-10 throughput, compiled, and the projected paper recipe
run_step wrn_bench 300 "$PY" benchmarks/gpu_bench.py --device "$DEVICE" --out "$OUT_DIR" ${QUICK[@]+"${QUICK[@]}"}
grep -E "^(torch|setup|  epoch|trainer|interleaved|work per training image|device loader|cudnn|peak|projected|targets|OPeN with noise rows)" "$OUT_DIR/wrn_bench.log" >> "$SUMMARY" || true
grep -E "Error|error:" "$OUT_DIR/wrn_bench.log" | tail -n 5 >> "$SUMMARY" || true

# 3b. If compiling failed (no C compiler for Triton's launcher, say), the same without compile,
#     in whatever is left of the 8 minutes.
if ! grep -q "^trainer epochs" "$OUT_DIR/wrn_bench.log"; then
    LEFT=$(( 470 - ($(date +%s) - START) ))
    if [ "$LEFT" -ge 90 ]; then
        run_step wrn_bench_eager "$LEFT" "$PY" benchmarks/gpu_bench.py --device "$DEVICE" --no-compile \
            --out "$OUT_DIR/eager" ${QUICK[@]+"${QUICK[@]}"}
        grep -E "^(setup|  epoch|trainer|interleaved|peak|projected|targets)" "$OUT_DIR/wrn_bench_eager.log" \
            | sed 's/^/[eager] /' >> "$SUMMARY" || true
    else
        note "-- wrn_bench_eager: not run, only $LEFT s left"
    fi
fi
