r"""Per-language adapter files: size, and the cost of swapping one into a running model.

    python benchmarks/adapter_swap.py --workdir ~/mlasr_runs/adapters_paper/adapters_char

Exports every language's adapter (+ head) of a trained `experiments/ctc_adapters.py` run to
safetensors (mlasr.models.adapters.export_language), then times on one test-shaped batch:
  * the first call of the jitted predict step (compile + run), the baseline;
  * loading one language's file into the model (mlasr.evaluate.load_adapter);
  * the next call of the same jitted step with the swapped weights, and whether it compiled
    again (jit cache size before/after).
Prints sizes per language and the ratio swap+call / first call.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax
import numpy as np
from flax import nnx

from mlasr import evaluate
from mlasr.models import adapters, surgery
from mlasr.tasks import ctc as ctc_task


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--seconds", type=float, default=6.0)
  p.add_argument("--batch", type=int, default=8)
  args = p.parse_args()
  _, _, model, _ = evaluate.restore_model(args.workdir)
  langs = list(model.langs)
  flat = {k: np.asarray(v) for k, v in
          surgery.flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param))).items()}
  total = sum(v.size for v in flat.values())
  out = tempfile.mkdtemp()
  files = {}
  print(f"model: {total / 1e6:.2f}M parameters ({4 * total / 2**20:.1f} MiB float32)")
  print("| lang | adapter + head parameters | file KiB | share of the model |")
  print("|---|---:|---:|---:|")
  for lang in langs:
    info = adapters.export_language(flat, lang, os.path.join(out, adapters.ADAPTER_FILE.format(lang=lang)))
    files[lang] = info["path"]
    print(f"| {lang} | {info['num_params']:,} | {info['bytes'] / 1024:.1f} | "
          f"{info['num_params'] / total:.2%} |")

  rng = np.random.default_rng(0)
  n = int(args.seconds * 16000)
  batch = dict(audio=rng.normal(0, 0.1, [args.batch, n]).astype(np.float32),
               audio_mask=np.ones([args.batch, n], np.int32),
               lang_id=np.zeros([args.batch], np.int32))
  graphdef, state = nnx.split(model)
  predict = jax.jit(lambda st, b: ctc_task.predict(nnx.merge(graphdef, st), b))
  tic = time.perf_counter()
  jax.block_until_ready(predict(state, batch))
  first = time.perf_counter() - tic
  tic = time.perf_counter()
  jax.block_until_ready(predict(state, batch))
  warm = time.perf_counter() - tic
  print(f"\nfirst call (compile + run): {first:.2f} s; warm call: {warm * 1e3:.0f} ms")
  for lang in langs[1:3]:
    size = predict._cache_size()  # pylint: disable=protected-access
    tic = time.perf_counter()
    evaluate.load_adapter(model, files[lang], lang=langs[0])  # into the slot batches use
    load = time.perf_counter() - tic
    _, state = nnx.split(model)
    tic = time.perf_counter()
    jax.block_until_ready(predict(state, batch))
    call = time.perf_counter() - tic
    print(f"swap in {lang}'s adapter: load {load * 1e3:.0f} ms, next call {call * 1e3:.0f} ms, "
          f"compiled again: {predict._cache_size() != size}; "  # pylint: disable=protected-access
          f"(load + call) / first call = {(load + call) / first:.3f}")


if __name__ == "__main__":
  main()
