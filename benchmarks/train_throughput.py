"""Training throughput on this machine, in audio-seconds per wall-second (×realtime).

    python benchmarks/train_throughput.py [--seconds 6 --batch 8 --steps 5 --out train.json]

Times the jitted mlasr CTC update step (forward, backward, AdamW) for
  1. the demo model (experiments/demo_ctc.py: log-mel front end, 6 conformer-style blocks),
  2. the `tiny` preset with the HuBERT waveform conv front end, and
  3. for reference in the same run, a transformers PyTorch HubertForCTC with the identical
     architecture as (2), on the same audio and labels (AdamW, same learning rate),
and prints ×realtime for each and the JAX / PyTorch ratio. Each JAX model runs twice in the
same process, with its blocks as a Python loop and as one `lax.scan` (EncoderConfig.scan_layers),
so the before/after of that choice is measured on the same machine state. Compile time
(lowering + XLA compile of the update step) is excluded from ×realtime and reported.
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np
from flax import nnx

from mlasr import config_lib, optim
from mlasr.steps import make_update_step
from mlasr.models import ctc as ctc_model
from mlasr.tasks import ctc as ctc_task

VOCAB = 64


def make_batch(batch: int, seconds: float, labels: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  samples = int(seconds * 16000)
  return dict(audio=(0.1 * rng.normal(size=(batch, samples))).astype(np.float32),
              audio_mask=np.ones((batch, samples), np.int32),
              labels=rng.integers(1, VOCAB, size=(batch, labels)).astype(np.int32),
              label_mask=np.ones((batch, labels), np.int32),
              lang_id=np.zeros(batch, np.int32), example_mask=np.ones(batch, np.int32))


def jax_throughput(encoder: dict, batch: dict, steps: int) -> tuple[float, float]:
  config = config_lib.base_config()
  config.model.encoder = encoder
  model = ctc_model.build(config, VOCAB, nnx.Rngs(params=0, dropout=1))
  tx, schedule = optim.make_optimizer(config.optim, 1000)
  graphdef, state = nnx.split((model, nnx.Optimizer(model, tx, wrt=nnx.Param)))
  step_fn = jax.jit(make_update_step(graphdef, ctc_task, schedule, 0), donate_argnums=(0,))
  t0 = time.perf_counter()
  step_fn = step_fn.lower(state, batch, 0).compile()
  compile_s = time.perf_counter() - t0
  state, metrics = step_fn(state, batch, 0)  # warm-up
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for step in range(steps):
    state, metrics = step_fn(state, batch, step + 1)
  jax.block_until_ready(metrics)
  seconds = batch["audio"].size / 16000 * steps
  return seconds / (time.perf_counter() - t0), compile_s


def torch_throughput(encoder: dict, batch: dict, steps: int) -> float:
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from mlasr.models import encoder as encoder_lib  # pylint: disable=import-outside-toplevel
  fields = dict(encoder)
  cfg = encoder_lib.get_config(fields.pop("preset"), **fields)
  hf_cfg = transformers.HubertConfig(
      vocab_size=VOCAB, hidden_size=cfg.d_model, num_hidden_layers=cfg.num_layers,
      num_attention_heads=cfg.num_heads, intermediate_size=cfg.ffn_dim,
      conv_dim=list(cfg.conv_dim), conv_kernel=list(cfg.conv_kernel),
      conv_stride=list(cfg.conv_stride), conv_bias=cfg.conv_bias,
      feat_extract_norm="group", num_conv_pos_embeddings=cfg.pos_conv_kernel,
      num_conv_pos_embedding_groups=cfg.pos_conv_groups, do_stable_layer_norm=False,
      hidden_dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
      activation_dropout=cfg.activation_dropout, feat_proj_dropout=cfg.feat_proj_dropout,
      layerdrop=cfg.layerdrop, mask_time_prob=0.0, ctc_loss_reduction="mean", pad_token_id=0)
  model = transformers.HubertForCTC(hf_cfg).train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
  audio = torch.from_numpy(batch["audio"])
  labels = torch.from_numpy(batch["labels"]).long()

  def step():
    opt.zero_grad()
    loss = model(audio, labels=labels).loss
    loss.backward()
    opt.step()

  step()  # warm-up
  t0 = time.perf_counter()
  for _ in range(steps):
    step()
  return batch["audio"].size / 16000 * steps / (time.perf_counter() - t0)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--seconds", type=float, default=6.0)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  batch = make_batch(args.batch, args.seconds, labels=int(args.seconds * 12))
  demo = dict(preset="tiny", num_layers=6, layer_norm_first=True)
  waveform = dict(preset="tiny", frontend="waveform", conv_module_kernel=0, feature_grad_mult=1.0)
  results = {}
  for name, encoder in (("demo_logmel", demo), ("tiny_waveform", waveform)):
    for suffix, how in (("_loop", "loop"), ("", "scan")):
      results[f"{name}{suffix}_xrt"], results[f"{name}{suffix}_compile_s"] = jax_throughput(
          dict(encoder, scan_layers=how), batch, args.steps)
  results["torch_tiny_waveform_xrt"] = torch_throughput(waveform, batch, args.steps)
  results["jax_over_torch"] = results["tiny_waveform_xrt"] / results["torch_tiny_waveform_xrt"]
  results.update(batch=args.batch, seconds=args.seconds, steps=args.steps,
                 devices=str(jax.devices()))
  print(f"batch {args.batch} x {args.seconds:.1f} s, {args.steps} timed steps")
  for name, label in (("demo_logmel", "demo model (log-mel, 6 blocks)"),
                      ("tiny_waveform", "tiny, waveform front end (JAX)")):
    for suffix, how in (("_loop", "loop"), ("", "scan")):
      print(f"  {label + ', ' + how:38s} {results[f'{name}{suffix}_xrt']:8.1f} x realtime "
            f"(compile {results[f'{name}{suffix}_compile_s']:.1f} s)")
  print(f"  {'same architecture, PyTorch/HF':38s} {results['torch_tiny_waveform_xrt']:8.1f} "
        "x realtime")
  print(f"  {'JAX (scan) / PyTorch':38s} {results['jax_over_torch']:8.2f}")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
