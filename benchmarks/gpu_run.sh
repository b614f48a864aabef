#!/usr/bin/env bash
# The prepared one-GPU run of issue 15 (H100 / H200): benchmarks/gpu_step.py at batch 32 x the
# longest training bucket (12 s), bf16, with its component timings, whole-step variants and
# transformers eager+SDPA / torch.compile comparison. Results: $OUT/gpu_step.json (+ log,
# env.txt); copy them to benchmarks/results/<device>_<date>/ on this side once fetched.
#
# The device machine has python3 with jax[cuda], flax, optax, orbax, torch and transformers,
# and no network; what else mlasr imports travels as wheels:
#
#   echo /.whl/ >> "$(git rev-parse --git-path info/exclude)"
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl ml-collections==1.1.0 soxr soundfile cffi \
#     pycparser jiwer rapidfuzz
#
# (ml_collections for the configs; soxr/soundfile/cffi via mlasr.data.augment, which
# config_lib imports; jiwer/rapidfuzz via mlasr.metrics, which the CTC task's evaluator
# imports. The image has the rest: jax[cuda], flax, optax, orbax, etils, torch.)
#
# then the device tool: command "bash benchmarks/gpu_run.sh", carry [".whl"], timeout_s 560.
# Budget (measured on an H200, 2026-12-04): a Base variant compiles in 37-130 s (scanned
# blocks 37-101 s, the Python loop 129 s), the PyTorch child with torch.compile takes ~1.5
# min, the components ~1 min; a fresh machine starts in ~30 s. gpu_step.py stops starting
# new variants after TIME_BUDGET seconds (default 300) and rewrites its JSON after every
# measurement, so a cut-short run still reports what it finished. Next run, with the
# PyTorch baseline already in benchmarks/results/h200_2026-12-04/:
#   VARIANTS=fast,fast_split_pos_conv,fast_matmul_frontend,ctc_fast,today TORCH=no \
#   TIME_BUDGET=330 bash benchmarks/gpu_run.sh
# Knobs: BATCH (32), STEPS (10), REPEATS (5), VARIANTS (gpu_step.py's default order: fast,
# today,fast_split_pos_conv,fast_matmul_frontend,ctc_fast,fast_loop,fast_threefry,
# xla_attention), TORCH (auto|yes|no), TORCH_COMPILE (auto: with CUDA), PROFILE (variants
# traced with jax.profiler after timing: fast,today), SMOKE=1 (tiny shapes, for a CPU check
# of this script).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/mlasr_gpu_run}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# A rerun on the same (still warm) machine reuses the compiled steps.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/mlasr_jax_cache}"
PY="${PYTHON:-python3}"

# Whatever mlasr imports that the device image lacks travels as wheels in .whl/ (no network
# there): installed into a private folder, never over the image's own packages.
NEEDED="import ml_collections, soxr, soundfile, jiwer"
if ! "$PY" -c "$NEEDED" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/mlasr_site \
    .whl/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/mlasr_site"
fi
if ! "$PY" -c "$NEEDED"; then
  echo "a module mlasr imports is missing and not in .whl/ (see the comment at the top)"
  exit 1
fi

{
  command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv
  "$PY" -c "import jax, flax; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__)"
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available(), 'transformers', transformers.__version__)" 2>&1 || true
} 2>&1 | tee "$OUT/env.txt"

args=(--out-dir "$OUT" --batch "${BATCH:-32}" --steps "${STEPS:-10}" --repeats "${REPEATS:-5}"
      --time-budget "${TIME_BUDGET:-300}" --torch "${TORCH:-auto}"
      --torch-compile "${TORCH_COMPILE:-auto}")
[ -n "${VARIANTS:-}" ] && args+=(--variants "$VARIANTS")
[ -n "${PROFILE:-}" ] && args+=(--profile "$PROFILE")
[ "${SMOKE:-0}" = 1 ] && args+=(--smoke)
# A hung run must not eat the lease: at most 8.5 minutes.
timeout 510 "$PY" benchmarks/gpu_step.py "${args[@]}" 2>&1 | tee "$OUT/gpu_step.log"
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || echo "gpu_step.py failed: exit $status (partial results in $OUT)"
exit "$status"
