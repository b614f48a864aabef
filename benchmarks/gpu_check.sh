#!/usr/bin/env bash
# The device check for a lent one-GPU machine (H100 / H200): HuBERT Base pretraining step
# time and MFU (benchmarks/pretrain_step.py) at a realistic per-GPU batch, in bf16 and fp32,
# each against transformers' PyTorch HubertModel on the same GPU. Results go to $OUT.
#
# That machine has python3 with jax[cuda], flax, optax, orbax, torch and transformers, and no
# network. The benchmark path imports no grain/librosa/jiwer; the one package it lacks is
# ml_collections (pure Python), carried as a wheel. Prepare once on this side, in the repo root:
#
#   echo /.whl/ >> "$(git rev-parse --git-path info/exclude)"
#   python3 -m pip download --no-deps -d .whl ml-collections==1.1.0
#
# then run with the device tool: command "bash benchmarks/gpu_check.sh", carry [".whl"],
# timeout_s 540 (about 4-6 min of work: two benchmark runs, each a JAX compile + 12 steps
# and a PyTorch child of 12 steps). Without .whl/ it installs ml_collections from PyPI, which
# only works on a machine with network. Knobs: BATCH (8), UTT_SECONDS (15.6), STEPS (10),
# DTYPES ("bfloat16 float32").
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/mlasr_gpu_check}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"

if ! "$PY" -c "import ml_collections" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/mlasr_site \
      .whl/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:/tmp/mlasr_site"
  else
    "$PY" -m pip install -q ml-collections==1.1.0 || exit 1
  fi
fi

{
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv
  "$PY" -c "import jax, torch, transformers, flax; print('jax', jax.__version__, jax.devices());
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers',
      transformers.__version__, 'flax', flax.__version__)"
} 2>&1 | tee "$OUT/env.txt"

status=0
for dtype in ${DTYPES:-bfloat16 float32}; do
  # A hung or crashed run must not eat the lease: each gets at most 4 minutes.
  timeout 240 "$PY" benchmarks/pretrain_step.py --batch "${BATCH:-8}" \
    --seconds "${UTT_SECONDS:-15.6}" --steps "${STEPS:-10}" --dtype "$dtype" --torch auto \
    --out "$OUT/pretrain_$dtype.json" 2>&1 | tee "$OUT/pretrain_$dtype.log"
  code=${PIPESTATUS[0]}
  [ "$code" -eq 0 ] || { echo "pretrain_step.py --dtype $dtype failed: exit $code"; status=1; }
done
exit $status
