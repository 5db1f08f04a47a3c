#!/usr/bin/env bash
# One prepared run for a GPU machine (< 8 minutes on one H100): GPU checks, a 1-GPU torchrun NCCL
# training run and its resume, and the throughput benchmarks for DiT-XL/2 and DiT-B/4 at 256x256
# (latent 32x32x4) in bf16, printed as one table at the end (also written to $OUT/gpu_table.md).
#
#   bash benchmarks/gpu_check.sh                # on the GPU machine, from anywhere
#   bash benchmarks/gpu_check.sh --cpu-dry-run  # the same steps, tiny sizes, on CPU (checks the script)
#
# Installs nothing beyond requirements.txt: if the current python cannot import torch, diffusers
# and minidit, it makes a venv in $OUT/venv from requirements.txt. (The GPU machine has no internet:
# there, use a python that already has requirements.txt installed, e.g. PYTHON=/path/to/python.)
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--cpu-dry-run" ]; then DRY=1; fi
OUT=${OUT:-$(mktemp -d /tmp/minidit-gpu-check.XXXX)}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then PY=.venv/bin/python; fi
if ! "$PY" -c "import torch, diffusers, einops, minidit" 2>/dev/null; then
  echo "== installing requirements.txt into $OUT/venv"
  python3 -m venv "$OUT/venv" && "$OUT/venv/bin/pip" install -q -r requirements.txt
  PY="$OUT/venv/bin/python"
fi
TORCHRUN=("$PY" -m torch.distributed.run)
TABLE="$OUT/gpu_table.md"
: > "$TABLE"
FAILED=()
step() {  # step NAME TIMEOUT_S CMD...: run, record failure, keep going
  local name=$1 limit=$2; shift 2
  echo; echo "== $name"
  local t0=$SECONDS
  if timeout "$limit" "$@"; then echo "-- $name: ok ($((SECONDS - t0)) s)"
  else echo "-- $name: FAILED (exit $?, $((SECONDS - t0)) s)"; FAILED+=("$name"); fi
}
"$PY" -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"

if [ $DRY = 1 ]; then
  DEV=(--device cpu); TINY=(--input-size 8 --in-channels 1 --num-classes 10)
  step "gpu checks (dry run)" 300 "$PY" benchmarks/gpu_checks.py "${DEV[@]}" --model DiT-P/2 "${TINY[@]}" --no-compile
  TRAIN=(--preset digits --device cpu --max-steps 4 --log-every 2 --ckpt-every 2 --num-sampling-steps 5 --grid-columns 1)
  MODEL_BENCH=(--models DiT-P/2 "${TINY[@]}" --batch-size 4 --reps 2 --warmup 1 --precision fp32 bf16)
  STEP_BENCH=(--model DiT-P/2 "${TINY[@]}" --batch-size 4 --reps 2 --variants baseline fused-adamw bf16 grad-ckpt)
  SAMPLE_BENCH=(--model DiT-P/2 "${TINY[@]}" --num-samples 2 --reps 1 --samplers ddim50)
  NPROC=1
else
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible: use --cpu-dry-run')"
  DEV=(--device cuda)
  step "gpu checks" 240 "$PY" benchmarks/gpu_checks.py "${DEV[@]}" --model DiT-B/4
  TRAIN=(--preset digits --device cuda --max-steps 40 --log-every 10 --ckpt-every 20 --precision bf16 --num-workers 2)
  MODEL_BENCH=(--models DiT-XL/2 DiT-B/4 --batch-size 64 --reps 10 --warmup 3 --precision bf16 fp32)
  STEP_BENCH=(--model DiT-XL/2 --batch-size 32 --reps 8 --warmup 3 --variants baseline naive-optim fused-adamw bf16 grad-ckpt fast)
  SAMPLE_BENCH=(--model DiT-XL/2 --num-samples 32 --reps 1 --precision bf16)
  NPROC=1
fi

# a 1-GPU torchrun run (NCCL on a GPU, gloo on CPU), then --resume from its last checkpoint
RUNS="$OUT/runs"
step "torchrun train" 240 "${TORCHRUN[@]}" --standalone --nproc_per_node $NPROC -m minidit.train "${TRAIN[@]}" --results-dir "$RUNS"
LAST_STEP=$(grep -o -- '--max-steps [0-9]*' <<< "${TRAIN[*]}" | awk '{print $2}')
step "torchrun resume" 240 "${TORCHRUN[@]}" --standalone --nproc_per_node $NPROC -m minidit.train "${TRAIN[@]}" \
  --results-dir "$RUNS" --resume latest --max-steps $((LAST_STEP * 2))
step "resumed checkpoint reached step $((LAST_STEP * 2))" 60 "$PY" -c "
import sys, torch; sys.path.insert(0, '.')
from minidit.training.checkpoint import find_latest
p = find_latest('$RUNS'); ck = torch.load(p, map_location='cpu', weights_only=False)
print(p, 'step', ck['step']); sys.exit(0 if ck['step'] == $((LAST_STEP * 2)) else 1)"

step "model throughput" 300 "$PY" benchmarks/bench_model.py "${DEV[@]}" "${MODEL_BENCH[@]}" --out "$TABLE"
step "training step" 300 "$PY" benchmarks/bench_train_step.py "${DEV[@]}" "${STEP_BENCH[@]}" --out "$TABLE"
step "sampling" 180 "$PY" benchmarks/bench_sampling.py "${DEV[@]}" "${SAMPLE_BENCH[@]}" --out "$TABLE"

echo; echo "================ results ($TABLE)"
cat "$TABLE"
if [ ${#FAILED[@]} -gt 0 ]; then echo; echo "FAILED: ${FAILED[*]}"; exit 1; fi
echo; echo "all steps passed"
