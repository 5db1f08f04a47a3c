#!/usr/bin/env bash
# One prepared run for a GPU machine: the GPU checks; the training-step benchmark for DiT-XL/2
# (the official loop's per-step work with its VAE, then baseline -> bf16 -> compile, with MFU); the
# training throughput of the paper's 12 grid models ($OUT/gpu_grid_throughput.json); a
# 1-GPU torchrun NCCL training run (bf16 + compile) and its resume; model throughput for DiT-XL/2
# and DiT-B/4 vs diffusers; sampling; and a headline XL/2 run at batch 128. It keeps to a time
# budget (GPU_CHECK_BUDGET_S, default 520 s): a step that would not fit is skipped and reported, so
# the summary table is always printed. Everything is logged to
# $OUT/gpu_check.log and the tables go to $OUT/gpu_table.md.
#
#   bash benchmarks/gpu_check.sh --fetch-wheels   # here (online): diffusers wheels into .whl/ (git-ignored)
#   bash benchmarks/gpu_check.sh                  # on the GPU machine, from anywhere
#   bash benchmarks/gpu_check.sh --cpu-dry-run    # the same steps, tiny sizes, on CPU (checks the script)
#
# What the GPU machine needs: a python3 with a CUDA build of torch (2.11 or the pinned 2.13: the code
# runs on both) and the rest of requirements.txt; no internet. Nothing is installed from the network:
# if .whl/ holds wheels (from --fetch-wheels on a machine with internet, copied along with the
# repository), they are installed into a temporary folder put on PYTHONPATH; without them the
# comparisons with diffusers are skipped and say so.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODE=gpu
case "${1:-}" in
  --cpu-dry-run) MODE=dry ;;
  --fetch-wheels) MODE=fetch ;;
  "") ;;
  *) echo "usage: bash benchmarks/gpu_check.sh [--cpu-dry-run | --fetch-wheels]"; exit 2 ;;
esac

PY=${PYTHON:-python3}
if [ -z "${PYTHON:-}" ] && [ $MODE != gpu ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi

if [ $MODE = fetch ]; then
  # the diffusers version the tests use, as a pure-python wheel, and importlib_metadata (which a
  # minimal GPU environment may lack), for the GPU machine's Python (WHEEL_PYTHON, default 3.12)
  VER=$("$PY" -c "import diffusers; print(diffusers.__version__)" 2>/dev/null || echo "")
  mkdir -p .whl
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${WHEEL_PYTHON:-3.12}" -d .whl \
    "diffusers${VER:+==$VER}" importlib_metadata || exit 1
  ls -l .whl
  exit 0
fi

OUT=${OUT:-$(mktemp -d /tmp/minidit-gpu-check.XXXX)}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
  SITE=$(mktemp -d /tmp/minidit-site.XXXX)
  echo "== installing the carried wheels into $SITE: $(cd .whl && echo *.whl)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl \
    && export PYTHONPATH="$ROOT:$SITE${PYTHONPATH#"$ROOT"}"  # the repo, then the wheels, then the rest
  # a carried diffusers that does not import beside the machine's own packages would fail every
  # comparison: then go on without it (the scripts time minidit alone and say so)
  if ! "$PY" -c "import diffusers" 2> /tmp/minidit-diffusers-import.txt; then
    echo "== the carried diffusers does not import here ($(tail -1 /tmp/minidit-diffusers-import.txt)): going on without it"
    export PYTHONPATH="$ROOT"
  fi
fi
BUDGET=${GPU_CHECK_BUDGET_S:-$([ $MODE = dry ] && echo 1800 || echo 520)}
TABLE="$OUT/gpu_table.md"
RUNS=$(mktemp -d /tmp/minidit-gpu-runs.XXXX)  # not under $OUT: run folders are too deep to come back
SUMMARY=()
FAILED=()

step() {  # step NAME LIMIT_S MIN_S CMD...: run within the budget, record the outcome, keep going
  local name=$1 limit=$2 need=$3; shift 3
  local left=$((BUDGET - SECONDS))
  # the CPU dry run checks that every step works, not its speed: a loaded CPU gets 3x the time
  [ $MODE = dry ] && limit=$((limit * 3))
  echo; echo "== $name (t = ${SECONDS} s of ${BUDGET} s)"
  if [ "$left" -lt "$need" ]; then
    echo "-- $name: SKIPPED (budget: $left s left, needs about $need s)"
    SUMMARY+=("| $name | skipped: $left s of the budget left | - |"); return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS rc=0
  timeout --kill-after=10 "$limit" "$@" || rc=$?
  if [ $rc = 0 ]; then
    echo "-- $name: ok ($((SECONDS - t0)) s)"; SUMMARY+=("| $name | ok | $((SECONDS - t0)) |")
  else
    local why="exit $rc"; [ $rc = 124 ] && why="timed out after $limit s"
    echo "-- $name: FAILED ($why)"; SUMMARY+=("| $name | FAILED ($why) | $((SECONDS - t0)) |"); FAILED+=("$name")
  fi
}

ENV_LINE=$("$PY" -c "
import torch
try:
    import diffusers; d = 'diffusers ' + diffusers.__version__
except ImportError:
    d = 'no diffusers'
g = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA GPU'
print(f'{g} | torch {torch.__version__} | {d}')" 2>&1 | tail -1)
echo "== $ENV_LINE"
{ echo "## gpu_check.sh ($MODE): $ENV_LINE"; echo; } >> "$TABLE"

if [ $MODE = dry ]; then
  DEV=(--device cpu); TINY=(--input-size 8 --in-channels 1 --num-classes 10)
  CHECKS=(--model DiT-P/2 "${TINY[@]}" --no-compile)
  STEP_BENCH=(--model DiT-P/2 --input-size 8 --in-channels 4 --num-classes 10 --batch-size 4 --reps 1 --warmup 2
              --variants bf16-fused official baseline bf16 fused-adamw grad-ckpt naive-optim)
  TRAIN=(--preset digits --device cpu --max-steps 4 --log-every 2 --ckpt-every 2 --num-sampling-steps 5
         --grid-columns 1)
  MODEL_BENCH=(--models DiT-P/2 DiT-P/4 "${TINY[@]}" --batch-size 4 --reps 1 --warmup 0 --precision bf16 fp32)
  SAMPLE_BENCH=(--model DiT-P/2 "${TINY[@]}" --num-samples 2 --reps 1 --warmup 0 --precision bf16)
  HEADLINE=(--model DiT-P/2 "${TINY[@]}" --batch-size 8 --reps 2 --warmup 2 --variants bf16-fused)
  GRID_BENCH=(--models DiT-P/2 DiT-P/4 --input-size 8 --num-classes 10 --batch-sizes 2 4 --reps 1 --warmup 2)
  HEADLINE_NAME="headline (dry run: DiT-P/2 bf16 + fused AdamW, batch 8)"
else
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA GPU visible to $PY: use --cpu-dry-run"; exit 1
  fi
  nvidia-smi -L 2>/dev/null || true
  DEV=(--device cuda)
  CHECKS=(--model DiT-B/4)
  # batch 64: every variant fits in 80 GB (fp32 XL/2 needs about 0.5 GB of activations per image)
  STEP_BENCH=(--model DiT-XL/2 --batch-size 64 --reps 6 --warmup 3
              --variants fast official baseline bf16-fused bf16 fused-adamw grad-ckpt naive-optim)
  # the paper's 12 grid models: per-GPU batch 32 (256 over 8 GPUs) and 256 (one GPU)
  GRID_BENCH=(--batch-sizes 32 256 --reps 6 --warmup 3)
  TRAIN=(--preset digits --device cuda --max-steps 40 --log-every 10 --ckpt-every 20 --precision bf16 --compile
         --num-workers 2)
  MODEL_BENCH=(--models DiT-XL/2 DiT-B/4 --batch-size 64 --reps 8 --warmup 3 --precision bf16 fp32)
  SAMPLE_BENCH=(--model DiT-XL/2 --num-samples 32 --reps 1 --precision bf16)
  HEADLINE=(--model DiT-XL/2 --batch-size 128 --reps 6 --warmup 3 --variants fast)
  HEADLINE_NAME="headline: DiT-XL/2 bf16 + compile + fused AdamW, batch 128"
fi

# most informative first: correctness, then the training step (the headline figure)
step "GPU checks (diffusers, bf16, compile, grad ckpt, no syncs)" 150 60 \
  "$PY" benchmarks/gpu_checks.py "${DEV[@]}" "${CHECKS[@]}"
step "training step benchmark" 210 120 "$PY" benchmarks/bench_train_step.py "${DEV[@]}" "${STEP_BENCH[@]}" --out "$TABLE"

step "grid models' training throughput" 150 60 "$PY" benchmarks/bench_gpu_grid.py "${DEV[@]}" "${GRID_BENCH[@]}" \
  --out "$TABLE" --json "$OUT/gpu_grid_throughput.json"

# a 1-GPU torchrun run (NCCL on a GPU, gloo on CPU), then --resume from its last checkpoint
LAST=$(grep -o -- '--max-steps [0-9]*' <<< "${TRAIN[*]}" | awk '{print $2}')
step "torchrun training run" 120 40 "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 \
  -m minidit.train "${TRAIN[@]}" --results-dir "$RUNS"
step "torchrun resume to step $((LAST * 2))" 90 30 "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 \
  -m minidit.train "${TRAIN[@]}" --results-dir "$RUNS" --resume latest --max-steps $((LAST * 2))
step "resumed run's last checkpoint is step $((LAST * 2))" 30 10 "$PY" -c "
import sys, torch
from minidit.training.checkpoint import find_latest
p = find_latest('$RUNS'); ck = torch.load(p, map_location='cpu', weights_only=False)
print(p, 'step', ck['step']); sys.exit(0 if ck['step'] == $((LAST * 2)) else 1)"

step "model throughput" 150 60 "$PY" benchmarks/bench_model.py "${DEV[@]}" "${MODEL_BENCH[@]}" --out "$TABLE"
step "sampling" 120 45 "$PY" benchmarks/bench_sampling.py "${DEV[@]}" "${SAMPLE_BENCH[@]}" --out "$TABLE"
step "$HEADLINE_NAME" 150 100 \
  "$PY" benchmarks/bench_train_step.py "${DEV[@]}" "${HEADLINE[@]}" --out "$TABLE"

{ echo; echo "### Steps"; echo; echo "| step | result | seconds |"; echo "|---|---|---|"
  printf '%s\n' "${SUMMARY[@]}"; } >> "$TABLE"
echo; echo "================ results ($TABLE, log $OUT/gpu_check.log; ${SECONDS} s in all)"
cat "$TABLE"
if [ ${#FAILED[@]} -gt 0 ]; then echo; echo "FAILED: ${FAILED[*]}"; exit 1; fi
echo; echo "no step failed"
