"""Per-device memory of the CTC train step, compiled ahead of time on a fake CPU mesh.

    python benchmarks/aot_memory.py [--num_devices 64 --models base,large
        --presets dp,fsdp,fsdp_tp --tensor 4 --clip_seconds 15 --clips_per_device 2
        --dtype float32 --out aot_memory.json]

Nothing is allocated: the state is `jax.eval_shape` of (model, optimizer) turned into
ShapeDtypeStructs that carry the shardings mlasr.sharding derives from the logical axis
rules, and the batch is ShapeDtypeStructs too. The real train step
(mlasr.steps.make_update_step, what mlasr.train runs, on mlasr.tasks.ctc) is lowered and compiled for the mesh, and XLA's
`memory_analysis()` gives per-device bytes of arguments, outputs and temporaries. A config that
does not fit shows up here, before a pod is booked.

Caveat: the numbers come from XLA's CPU compiler. Parameter and optimizer bytes are exact for
any backend (they follow from the shardings); temporaries (activations kept for the backward
pass, gathered weights) are the CPU compiler's buffer assignment and are a guide for TPU/GPU,
whose compilers fuse and rematerialise differently (usually less, never wildly more).
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":
  # The fake device count must be fixed before jax is imported.
  _n = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--num_devices=")), None)
  if _n is None and "--num_devices" in sys.argv:
    _n = sys.argv[sys.argv.index("--num_devices") + 1]
  # Level 0 skips LLVM optimisation of code that never runs; buffer assignment, and so
  # memory_analysis, is decided on the HLO before that and does not change.
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={_n or 64}"
                             " --xla_backend_optimization_level=0")
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=wrong-import-position
import argparse
import json
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mlasr import config_lib, optim, sharding, steps
from mlasr.models import ctc, encoder as encoder_lib
from mlasr.tasks import ctc as ctc_task

SAMPLE_RATE = 16000
GiB = 2**30


def build_fn(enc_cfg: encoder_lib.EncoderConfig, vocab_size: int, seed: int = 0):
  """() -> (CTCModel, nnx.Optimizer) exactly as mlasr.train builds them (AdamW + clipping)."""
  opt_cfg = config_lib.base_config().optim
  opt_cfg.update(schedule="constant", lr=1e-4, clip_norm=1.0)

  def build():
    model = ctc.CTCModel(enc_cfg, vocab_size, 0.0, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
    tx, _ = optim.make_optimizer(opt_cfg, 1000)
    return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

  return build


def abstract_batch(batch_size: int, num_samples: int, num_labels: int, batch_sharding) -> dict:
  """ShapeDtypeStructs of a mlasr.data.pipeline train batch, laid out by `batch_sharding`."""
  def struct(shape, dtype):
    return jax.ShapeDtypeStruct(shape, dtype, sharding=batch_sharding)

  return dict(audio=struct((batch_size, num_samples), jnp.float32),
              audio_mask=struct((batch_size, num_samples), jnp.int32),
              labels=struct((batch_size, num_labels), jnp.int32),
              label_mask=struct((batch_size, num_labels), jnp.int32),
              lang_id=struct((batch_size,), jnp.int32),
              example_mask=struct((batch_size,), jnp.int32))


def analyze(build, rules, mesh, clips_per_device: int, num_samples: int,
            num_labels: int) -> dict:
  """Lowers + compiles the sharded train step for abstract inputs; per-device byte counts."""
  graphdef, structs, shardings = sharding.abstract_state(build, rules, mesh)
  batch_sh = sharding.batch_sharding(mesh, rules)
  batch_devices = mesh.size // _replicas_of_batch(batch_sh)
  batch = abstract_batch(clips_per_device * batch_devices, num_samples, num_labels, batch_sh)
  step = sharding.shard_update_step(
      steps.make_update_step(graphdef, ctc_task, optax.constant_schedule(1e-4), 0),
      shardings, batch_sh)
  t0 = time.time()
  compiled = step.lower(structs, batch, 0).compile()
  compile_s = time.time() - t0
  mem = compiled.memory_analysis()
  model_state, opt_state = structs[0], structs[1]
  out = dict(
      mesh=dict(mesh.shape), global_batch=batch["audio"].shape[0],
      num_params=sum(x.size for x in _params(model_state)),
      params_bytes=sharding.bytes_per_device(_params(model_state)),
      opt_state_bytes=sharding.bytes_per_device(opt_state),
      batch_bytes=sharding.bytes_per_device(batch),
      argument_bytes=int(mem.argument_size_in_bytes),
      output_bytes=int(mem.output_size_in_bytes),
      alias_bytes=int(mem.alias_size_in_bytes),
      temp_bytes=int(mem.temp_size_in_bytes),
      compile_seconds=round(compile_s, 1))
  # Donated state aliases the outputs, so the peak is arguments + new outputs + temporaries.
  out["peak_bytes"] = out["argument_bytes"] + out["output_bytes"] - out["alias_bytes"] + \
      out["temp_bytes"]
  return out


def _params(state) -> list:
  leaves = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable))
  return [v.get_value() for v in leaves if isinstance(v, nnx.Param)]


def _replicas_of_batch(batch_sh) -> int:
  """How many devices hold the same batch rows (mesh axes not in the batch spec)."""
  used = set()
  for axes in batch_sh.spec:
    used.update((axes,) if isinstance(axes, str) else (axes or ()))
  n = 1
  for name, size in batch_sh.mesh.shape.items():
    if name not in used:
      n *= size
  return n


def preset_mesh(preset: str, tensor: int) -> list[tuple[str, int]]:
  if preset == "dp":
    return [("data", -1), ("fsdp", 1), ("tensor", 1)]
  if preset == "fsdp":
    return [("data", 1), ("fsdp", -1), ("tensor", 1)]
  return [("data", 1), ("fsdp", -1), ("tensor", tensor)]


def markdown(rows: list[dict]) -> str:
  head = ("| model | preset | mesh (data,fsdp,tensor) | params | clips/dev × s | params GiB "
          "| opt GiB | temp GiB | peak GiB | compile s |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for r in rows:
    m = r["mesh"]
    lines.append(
        f"| {r['model']} | {r['preset']} | {m['data']},{m['fsdp']},{m['tensor']} "
        f"| {r['num_params'] / 1e6:.0f}M | {r['clips_per_device']}×{r['clip_seconds']:g} "
        f"| {r['params_bytes'] / GiB:.3f} | {r['opt_state_bytes'] / GiB:.3f} "
        f"| {r['temp_bytes'] / GiB:.2f} | {r['peak_bytes'] / GiB:.2f} | {r['compile_seconds']} |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_devices", type=int, default=64)
  parser.add_argument("--models", default="base,large")
  parser.add_argument("--presets", default="dp,fsdp,fsdp_tp")
  parser.add_argument("--tensor", type=int, default=4, help="tensor axis size for fsdp_tp")
  parser.add_argument("--clip_seconds", type=float, default=15.0)
  parser.add_argument("--clips_per_device", type=int, default=2)
  parser.add_argument("--labels_per_second", type=float, default=20.0)
  parser.add_argument("--vocab_size", type=int, default=256)
  parser.add_argument("--dtype", default="float32", help="compute dtype (params stay float32)")
  parser.add_argument("--out", default="aot_memory.json")
  args = parser.parse_args()
  if jax.device_count() != args.num_devices:
    raise SystemExit(f"Expected {args.num_devices} fake devices, got {jax.device_count()}: run "
                     "this file as a script so XLA_FLAGS is set before jax is imported.")
  num_samples = int(args.clip_seconds * SAMPLE_RATE)
  num_labels = int(args.clip_seconds * args.labels_per_second)
  rows = []
  for model_name in args.models.split(","):
    enc_cfg = encoder_lib.get_config(model_name, frontend="waveform", dtype=args.dtype)
    for preset in args.presets.split(","):
      mesh = sharding.make_mesh(preset_mesh(preset, args.tensor))
      row = analyze(build_fn(enc_cfg, args.vocab_size), sharding.PRESETS[preset], mesh,
                    args.clips_per_device, num_samples, num_labels)
      row.update(model=model_name, preset=preset, clip_seconds=args.clip_seconds,
                 clips_per_device=args.clips_per_device, dtype=args.dtype,
                 backend="cpu (fake devices)")
      rows.append(row)
      print(markdown([row]).splitlines()[-1], flush=True)
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump(dict(args=vars(args), rows=rows), f, indent=2)
  print(markdown(rows))
  print(f"Wrote {os.path.abspath(args.out)}")


if __name__ == "__main__":
  main()
