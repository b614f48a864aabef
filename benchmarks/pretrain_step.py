r"""Step time and MFU of HuBERT Base pretraining, with transformers/PyTorch on the same device.

    python benchmarks/pretrain_step.py [--batch 2 --seconds 8 --steps 3 --dtype float32]
    python benchmarks/pretrain_step.py --batch 8 --seconds 15.6 --dtype bfloat16   # one GPU

Times the jitted update step of experiments/hubert_pretrain.py with `preset=base` (waveform
conv front end, 12 post-LN blocks, d=768, fairseq's masking and AdamW) on random audio with
random cluster labels (K=500 at 50 Hz, as HuBERT iteration 2), so no data is needed.

  * FLOPs per step: XLA's cost_analysis() of the compiled step (forward + backward + AdamW),
    and an analytic count (3 x forward matmul/conv FLOPs) as a cross-check, because XLA does
    not count FLOPs inside library calls (cuDNN convolutions, custom kernels) on GPU.
  * MFU = FLOPs per step / step time / peak, where the peak is a large matmul measured in this
    run on the same device, in the step's compute dtype (printed, with the other dtype's too).
  * If torch and transformers import: a transformers HubertModel with the same architecture,
    batch and mask, a masked-prediction loss (projection + cosine logits over K cluster
    embeddings + cross-entropy; no feature penalty, so its loss value differs from mlasr's),
    backward, grad clipping and AdamW (fused on CUDA), autocast for bf16, timed on the same device
    (cuda when present) in a child process that runs first (so JAX's GPU memory pool does not
    starve it); prints the JAX / PyTorch step-time ratio.

Needs only jax, flax, optax, ml_collections (+ torch, transformers for the comparison): the
mlasr modules on this path import no grain/librosa/jiwer; the update step is mlasr.steps',
the one mlasr.train uses.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_RATE = 16000


def _parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=2, help="utterances per device")
  p.add_argument("--seconds", type=float, default=8.0, help="length of each utterance")
  p.add_argument("--steps", type=int, default=3, help="timed steps (after 2 warm-up steps)")
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                 help="compute dtype of the encoder (parameters and AdamW stay float32)")
  p.add_argument("--num-classes", type=int, default=500, help="k-means clusters K")
  p.add_argument("--preset", default="base", choices=("base", "large"),
                 help="experiments/hubert_pretrain.py preset (waveform front ends)")
  p.add_argument("--layers", type=int, default=0, help="override the number of blocks (smoke)")
  p.add_argument("--matmul-size", type=int, default=0,
                 help="n of the n x n peak matmul (default 8192 on GPU/TPU, 2048 on CPU)")
  p.add_argument("--torch", default="auto", choices=("auto", "yes", "no"),
                 help="also time transformers' HubertModel (auto: if importable)")
  p.add_argument("--out", default=None, help="write the results as JSON here")
  p.add_argument("--torch-child", default=None, help=argparse.SUPPRESS)  # internal
  return p.parse_args(argv)


# ------------------------------------------------------------------------------------------
# The configuration: experiments/hubert_pretrain.py, shared by both frameworks.
# ------------------------------------------------------------------------------------------
def load_config(preset: str, dtype: str, layers: int = 0):
  spec = importlib.util.spec_from_file_location(
      "hubert_pretrain_experiment", os.path.join(ROOT, "experiments", "hubert_pretrain.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(f"preset={preset},targets=labels,label_rate=50.0")
  config.model.encoder = dict(config.model.encoder, dtype=dtype,
                              **(dict(num_layers=layers) if layers else {}))
  return config


def encoder_config(config):
  from mlasr.models import encoder as encoder_lib  # pylint: disable=import-outside-toplevel
  return encoder_lib.config_from_fields(config.model.encoder)


def num_frames(enc, num_samples: int) -> int:
  for k, s in zip(enc.conv_kernel, enc.conv_stride):
    num_samples = (num_samples - k) // s + 1
  return num_samples


def make_batch(batch: int, seconds: float, num_frames_: int, num_classes: int) -> dict:
  rng = np.random.default_rng(0)
  samples = int(round(seconds * SAMPLE_RATE))
  return dict(audio=(0.1 * rng.standard_normal((batch, samples))).astype(np.float32),
              audio_mask=np.ones((batch, samples), np.int32),
              targets=rng.integers(0, num_classes, (batch, num_frames_)).astype(np.int32),
              target_mask=np.ones((batch, num_frames_), np.int32),
              example_mask=np.ones((batch,), np.int32))


def analytic_flops(enc, batch: int, num_samples: int, final_dim: int, num_classes: int) -> float:
  """3 x forward FLOPs (2 per multiply-add) of convs and matmuls: the usual training estimate."""
  fwd, length, channels = 0.0, num_samples, 1
  for dim, k, s in zip(enc.conv_dim, enc.conv_kernel, enc.conv_stride):
    length = (length - k) // s + 1
    fwd += 2.0 * length * channels * k * dim
    channels = dim
  f, d = length, enc.d_model
  fwd += 2.0 * f * channels * d                                              # projection
  fwd += 2.0 * f * d * (d // enc.pos_conv_groups) * enc.pos_conv_kernel      # pos conv
  per_layer = 2.0 * f * d * d * 4 + 2.0 * 2 * f * f * d + 2.0 * 2 * f * d * enc.ffn_dim
  fwd += enc.num_layers * per_layer
  fwd += 2.0 * f * d * final_dim + 2.0 * f * final_dim * num_classes          # logits
  return 3.0 * batch * fwd


# ------------------------------------------------------------------------------------------
# JAX: the mlasr step and a matmul peak.
# ------------------------------------------------------------------------------------------
def jax_step(args, config) -> dict:
  import jax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from mlasr import optim, steps  # pylint: disable=import-outside-toplevel
  from mlasr.models import hubert_pretrain  # pylint: disable=import-outside-toplevel
  from mlasr.tasks import hubert as hubert_task  # pylint: disable=import-outside-toplevel

  model = hubert_pretrain.build(config, args.num_classes,
                                nnx.Rngs(params=config.seed, dropout=config.seed + 1))
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  graphdef, state = nnx.split((model, nnx.Optimizer(model, tx, wrt=nnx.Param)))
  num_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  update_step = steps.make_update_step(graphdef, hubert_task, schedule, config.seed)

  enc = model.encoder.config
  batch = jax.device_put(make_batch(args.batch, args.seconds,
                                    num_frames(enc, int(round(args.seconds * SAMPLE_RATE))),
                                    args.num_classes))
  t0 = time.perf_counter()
  compiled = jax.jit(update_step, donate_argnums=(0,)).lower(state, batch, 0).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  memory = compiled.memory_analysis()
  for step in range(2):  # warm-up (autotuning, first-touch allocation)
    state, metrics = compiled(state, batch, step)
  jax.block_until_ready(metrics)
  times = []
  for step in range(2, 2 + args.steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch, step)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  return dict(step_s=float(np.median(times)), step_times_s=times, compile_s=compile_s,
              xla_flops=float(cost.get("flops", 0.0)) if cost else 0.0,
              xla_bytes_accessed=float(cost.get("bytes accessed", 0.0)) if cost else 0.0,
              temp_bytes=int(getattr(memory, "temp_size_in_bytes", 0) or 0),
              num_params=int(num_params), loss=float(metrics["loss"]),
              mask_fraction=float(metrics["mask_fraction"]),
              analytic_flops=analytic_flops(enc, args.batch,
                                            int(round(args.seconds * SAMPLE_RATE)),
                                            config.model.final_dim, args.num_classes))


def matmul_peak(size: int, dtype: str, repeats: int = 10) -> float:
  """FLOP/s of an n x n @ n x n matmul at JAX's default precision (best of `repeats`)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  keys = jax.random.split(jax.random.key(0))
  a, b = (jax.random.normal(k, (size, size), jnp.dtype(dtype)) for k in keys)
  # Chained in one program so launch overhead is amortised; the scale keeps entries ~N(0, 1).
  inner = 4

  @jax.jit
  def chain(a, b):
    for _ in range(inner):
      a = (a @ b) * jnp.asarray(size ** -0.5, a.dtype)
    return a

  jax.block_until_ready(chain(a, b))
  times = []
  while len(times) < repeats and (len(times) < 3 or sum(times) < 2.0):  # slow CPUs: fewer
    t0 = time.perf_counter()
    jax.block_until_ready(chain(a, b))
    times.append(time.perf_counter() - t0)
  return 2.0 * size ** 3 * inner / min(times)


# ------------------------------------------------------------------------------------------
# PyTorch: transformers HubertModel + masked-prediction head, same batch and mask.
# ------------------------------------------------------------------------------------------
def torch_step(args, config) -> dict:
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from mlasr import masking  # pylint: disable=import-outside-toplevel

  enc = encoder_config(config)
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  # JAX's default precision runs float32 matmuls as TF32 on NVIDIA GPUs; match it.
  torch.set_float32_matmul_precision("high")
  torch.backends.cudnn.benchmark = True
  hf_cfg = transformers.HubertConfig(
      hidden_size=enc.d_model, num_hidden_layers=enc.num_layers,
      num_attention_heads=enc.num_heads, intermediate_size=enc.ffn_dim,
      conv_dim=enc.conv_dim, conv_kernel=enc.conv_kernel, conv_stride=enc.conv_stride,
      conv_bias=enc.conv_bias, num_conv_pos_embeddings=enc.pos_conv_kernel,
      num_conv_pos_embedding_groups=enc.pos_conv_groups,
      feat_extract_norm="group" if enc.extractor_mode == "default" else "layer",
      do_stable_layer_norm=enc.layer_norm_first, hidden_dropout=enc.dropout,
      attention_dropout=enc.attention_dropout, activation_dropout=enc.activation_dropout,
      feat_proj_dropout=enc.feat_proj_dropout, layerdrop=enc.layerdrop,
      feat_proj_layer_norm=enc.feat_proj_layer_norm, mask_time_prob=0.05)
  model = transformers.HubertModel(hf_cfg).to(device).train()
  final_dim, k = config.model.final_dim, args.num_classes
  proj = torch.nn.Linear(enc.d_model, final_dim).to(device)
  label_embs = torch.nn.Parameter(torch.rand(k, final_dim, device=device))
  params = list(model.parameters()) + list(proj.parameters()) + [label_embs]
  opt_cfg = config.optim
  optimizer = torch.optim.AdamW(params, lr=opt_cfg.lr, betas=(opt_cfg.b1, opt_cfg.b2),
                                eps=opt_cfg.eps, weight_decay=opt_cfg.weight_decay,
                                fused=device.type == "cuda")
  num_samples = int(round(args.seconds * SAMPLE_RATE))
  frames = num_frames(enc, num_samples)
  batch = make_batch(args.batch, args.seconds, frames, k)
  mc = config.model.masking
  mask = masking.compute_mask_indices((args.batch, frames), None, mc.mask_prob, mc.mask_length,
                                      mc.min_masks, np.random.default_rng(0))
  audio = torch.from_numpy(batch["audio"]).to(device)
  targets = torch.from_numpy(batch["targets"]).long().to(device)
  mask_t = torch.from_numpy(mask).to(device)
  mask_f = mask_t.float()
  autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                            enabled=args.dtype == "bfloat16")

  def step():
    with autocast:
      hidden = model(audio, mask_time_indices=mask_t).last_hidden_state
      logits = _cosine_logits(proj(hidden).float(), label_embs, config.model.logit_temp)
      # Over all frames, then masked (as mlasr does): boolean indexing would sync the host.
      nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
      loss = (nll * mask_f).sum() / mask_f.sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, opt_cfg.clip_norm)
    optimizer.step()
    return loss

  def sync():
    if device.type == "cuda":
      torch.cuda.synchronize()

  for _ in range(2):
    step()
  sync()
  times = []
  for _ in range(args.steps):
    t0 = time.perf_counter()
    loss = step()
    sync()
    times.append(time.perf_counter() - t0)
  return dict(step_s=float(np.median(times)), step_times_s=times, loss=loss.item(),
              device=str(torch.cuda.get_device_name() if device.type == "cuda" else "cpu"),
              num_params=int(sum(p.numel() for p in params)), torch=torch.__version__,
              transformers=transformers.__version__)


def _cosine_logits(x, embs, temp: float):
  import torch  # pylint: disable=import-outside-toplevel
  x = torch.nn.functional.normalize(x, dim=-1, eps=1e-8)
  e = torch.nn.functional.normalize(embs, dim=-1, eps=1e-8)
  return torch.einsum("bfd,kd->bfk", x, e) / temp


def run_torch_child(args, argv: list[str]) -> dict | None:
  """torch_step in a child process (fresh allocator, no JAX in it); None when unavailable."""
  if args.torch == "no":
    return None
  if args.torch == "auto" and not all(importlib.util.find_spec(m)
                                      for m in ("torch", "transformers")):
    print("torch/transformers not importable: skipping the PyTorch comparison")
    return None
  out = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"pretrain_step_torch_{os.getpid()}.json")
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--torch-child", out],
                        check=False)
  if proc.returncode != 0:
    if args.torch == "yes":
      raise RuntimeError(f"the PyTorch step failed (exit {proc.returncode}); see above")
    print(f"PyTorch step failed (exit {proc.returncode}); continuing without it")
    return None
  with open(out, encoding="utf-8") as f:
    result = json.load(f)
  os.remove(out)
  return result


def main(argv=None) -> dict:
  args = _parse_args(argv)
  config = load_config(args.preset, args.dtype, args.layers)
  if args.torch_child:
    with open(args.torch_child, "w", encoding="utf-8") as f:
      json.dump(torch_step(args, config), f)
    return {}

  # First, so that JAX's GPU memory pool (75% of the card by default) does not starve it.
  torch_result = run_torch_child(args, sys.argv[1:] if argv is None else list(argv))
  import jax  # pylint: disable=import-outside-toplevel
  device = jax.devices()[0]
  size = args.matmul_size or (2048 if device.platform == "cpu" else 8192)
  peaks = {dt: matmul_peak(size, dt) for dt in ("float32", "bfloat16")}
  result = jax_step(args, config)
  peak = peaks[args.dtype]
  out = dict(device=f"{device.platform}: {device.device_kind}", jax=jax.__version__,
             batch=args.batch, seconds=args.seconds, dtype=args.dtype, preset=args.preset,
             num_classes=args.num_classes, matmul_size=size, peak_flops=peaks,
             jax_step=result, torch_step=torch_result,
             mfu_xla_flops=result["xla_flops"] / result["step_s"] / peak,
             mfu_analytic_flops=result["analytic_flops"] / result["step_s"] / peak)
  audio_s = args.batch * args.seconds
  print(f"device: {out['device']} (jax {jax.__version__}); HuBERT {args.preset} pretraining, "
        f"{result['num_params'] / 1e6:.1f}M params, batch {args.batch} x {args.seconds:g} s, "
        f"compute dtype {args.dtype}, K={args.num_classes}")
  print(f"peak measured here ({size}^3 matmul, JAX default precision): " +
        ", ".join(f"{dt} {p / 1e12:.3f} TFLOP/s" for dt, p in peaks.items()))
  print(f"JAX step: {result['step_s'] * 1e3:.1f} ms median of {args.steps} "
        f"(compile {result['compile_s']:.1f} s), {audio_s / result['step_s']:.1f} s audio/s, "
        f"loss {result['loss']:.3f}, mask fraction {result['mask_fraction']:.2f}")
  print(f"FLOPs/step: XLA cost_analysis {result['xla_flops'] / 1e12:.3f} TFLOP; analytic "
        f"3 x forward {result['analytic_flops'] / 1e12:.3f} TFLOP")
  print(f"MFU vs the measured {args.dtype} matmul peak: {100 * out['mfu_xla_flops']:.1f}% "
        f"(XLA FLOPs), {100 * out['mfu_analytic_flops']:.1f}% (analytic FLOPs)")
  if torch_result:
    ratio = result["step_s"] / torch_result["step_s"]
    out["jax_over_torch_step_time"] = ratio
    print(f"PyTorch {torch_result['torch']} + transformers {torch_result['transformers']} "
          f"HubertModel step on {torch_result['device']}: {torch_result['step_s'] * 1e3:.1f} ms "
          f"({torch_result['num_params'] / 1e6:.1f}M params, loss {torch_result['loss']:.3f}); "
          f"MFU with the same analytic FLOPs "
          f"{100 * result['analytic_flops'] / torch_result['step_s'] / peak:.1f}%")
    print(f"JAX / PyTorch step time: {ratio:.2f} (< 1: JAX faster)")
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(out, f, indent=2)
    print(f"wrote {args.out}")
  return out


if __name__ == "__main__":
  main()
