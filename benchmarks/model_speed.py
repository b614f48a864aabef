"""Inference speed of the mlasr encoder on this CPU, with transformers' HubertModel as reference.

    python benchmarks/model_speed.py [--seconds 8 --batch 4 --repeats 3 --out speed.json]

Reports the real-time factor (RTF = compute seconds / audio seconds, lower is faster) of the
`tiny` preset with both front ends, of the same waveform architecture with and without the
conformer conv module, and of a transformers PyTorch HubertModel with the identical
architecture on the same audio, and the tiny preset with its blocks as one lax.scan instead of
the Python loop that EncoderConfig.scan_layers="auto" picks for CPU inference. Also times the
CPU kernel choices (shifted-slice depthwise conv vs XLA grouped conv, reshape+matmul strided
conv vs XLA conv, positional conv split into one conv per group vs one grouped conv, attention
implementations); `--kernels-only` times just those.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mlasr.models import encoder as encoder_lib, frontends, layers


def _time(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # compile / warm up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def jax_rtf(cfg: encoder_lib.EncoderConfig, audio: np.ndarray, repeats: int) -> float:
  model = encoder_lib.Encoder(cfg, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  run = jax.jit(lambda s, a, m: nnx.merge(graphdef, s)(a, m).hidden)
  a, m = jnp.asarray(audio), jnp.ones(audio.shape, bool)
  return _time(lambda: run(state, a, m), repeats) / (audio.size / cfg.sample_rate)


def torch_rtf(cfg: encoder_lib.EncoderConfig, audio: np.ndarray, repeats: int) -> float:
  import torch
  import transformers

  hf_cfg = transformers.HubertConfig(
      hidden_size=cfg.d_model, num_hidden_layers=cfg.num_layers,
      num_attention_heads=cfg.num_heads, intermediate_size=cfg.ffn_dim,
      conv_dim=cfg.conv_dim, conv_kernel=cfg.conv_kernel, conv_stride=cfg.conv_stride,
      conv_bias=cfg.conv_bias, num_conv_pos_embeddings=cfg.pos_conv_kernel,
      num_conv_pos_embedding_groups=cfg.pos_conv_groups,
      feat_extract_norm="group" if cfg.extractor_mode == "default" else "layer",
      do_stable_layer_norm=cfg.layer_norm_first)
  model = transformers.HubertModel(hf_cfg).eval()
  x = torch.from_numpy(audio)

  def run():
    with torch.inference_mode():
      return model(x).last_hidden_state

  run()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
  return float(np.median(times)) / (audio.size / cfg.sample_rate)


def kernel_times(repeats: int) -> dict[str, float]:
  """Milliseconds per call of the CPU kernel alternatives at tiny-model sizes."""
  rng = np.random.default_rng(0)
  out = {}
  x = jnp.asarray(rng.standard_normal((4, 800, 192)), jnp.float32)  # 32 s at 25 Hz
  w = jnp.asarray(rng.standard_normal((15, 192)), jnp.float32)
  for name, fn in (("depthwise_shifted_slices", layers.depthwise_conv1d),
                   ("depthwise_xla_grouped", layers.depthwise_conv1d_xla)):
    f = jax.jit(fn)
    out[name] = 1e3 * _time(lambda: f(x, w), repeats)
  x = jnp.asarray(rng.standard_normal((4, 16000, 256)), jnp.float32)  # 2nd conv layer input
  w = jnp.asarray(rng.standard_normal((3, 256, 256)), jnp.float32) * 0.05
  for name, fn in (("strided_conv_matmul", frontends.strided_conv1d),
                   ("strided_conv_xla", frontends.strided_conv1d_xla)):
    f = jax.jit(fn, static_argnums=2)
    out[name] = 1e3 * _time(lambda: f(x, w, 2), repeats)
  # Positional conv (weight norm + conv + GELU), tiny (d=192, k=32) and Base (d=768, k=128)
  # sizes, 16 groups: EncoderConfig.pos_conv_impl "split" vs "grouped".
  for label, (b, f, d, k) in (("tiny", (4, 800, 192, 32)), ("base", (2, 400, 768, 128))):
    x = jnp.asarray(rng.standard_normal((b, f, d)), jnp.float32)
    for impl in ("split", "grouped"):
      conv = layers.PositionalConv(d, k, 16, impl=impl, rngs=nnx.Rngs(0))
      graphdef, state = nnx.split(conv)
      g = jax.jit(lambda s, x, gd=graphdef: nnx.merge(gd, s)(x))
      out[f"pos_conv_{label}_{impl}"] = 1e3 * _time(lambda: g(state, x), repeats)
  # Self-attention at tiny sizes (4 heads of 48, 800 frames), forward + backward.
  for impl in ("reference", "xla"):
    attn = layers.Attention(192, 4, 0.0, impl=impl, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(attn)
    x = jnp.asarray(rng.standard_normal((4, 800, 192)), jnp.float32)
    mask = jnp.arange(800)[None] < jnp.array([800, 700, 500, 300])[:, None]
    g = jax.jit(jax.grad(lambda s, x, gd=graphdef: jnp.sum(
        nnx.merge(gd, s)(x, mask, True) ** 2), argnums=1))
    out[f"attention_fwd_bwd_{impl}"] = 1e3 * _time(lambda: g(state, x), repeats)
  return out


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--seconds", type=float, default=8.0, help="length of each utterance")
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--out", default=None, help="write the results as JSON here")
  p.add_argument("--kernels-only", action="store_true", help="only the kernel timings")
  args = p.parse_args()
  if args.kernels_only:
    kernels = kernel_times(args.repeats)
    print(f"kernels (ms/call, median of {args.repeats}, {jax.default_backend()}):")
    for k, v in kernels.items():
      print(f"  {k:34s} {v:8.2f}")
    if args.out:
      with open(args.out, "w") as f:
        json.dump({"kernels_ms": kernels}, f, indent=2)
    return

  tiny = encoder_lib.PRESETS["tiny"]
  audio = (0.1 * np.random.default_rng(0).standard_normal(
      (args.batch, int(args.seconds * tiny.sample_rate)))).astype(np.float32)
  wave = dataclasses.replace(tiny, frontend="waveform")
  wave_plain = dataclasses.replace(wave, conv_module_kernel=0)
  rows = {
      "jax tiny logmel x4 (+conv module)": jax_rtf(tiny, audio, args.repeats),
      "jax tiny logmel x4 (+conv module), blocks scanned": jax_rtf(
          dataclasses.replace(tiny, scan_layers="scan"), audio, args.repeats),
      "jax tiny logmel x4 conv2d subsampler": jax_rtf(
          dataclasses.replace(tiny, subsampler="conv2d"), audio, args.repeats),
      "jax tiny waveform (+conv module)": jax_rtf(wave, audio, args.repeats),
      "jax tiny waveform (no conv module)": jax_rtf(wave_plain, audio, args.repeats),
      "jax tiny waveform, matmul strided conv": jax_rtf(
          dataclasses.replace(wave_plain, conv_impl="matmul"), audio, args.repeats),
      "torch transformers HubertModel (= waveform, no conv module)": torch_rtf(
          wave_plain, audio, args.repeats),
  }
  ratio = (rows["torch transformers HubertModel (= waveform, no conv module)"] /
           rows["jax tiny waveform (no conv module)"])
  kernels = kernel_times(args.repeats)
  print(f"audio: {args.batch} x {args.seconds:.1f} s, {jax.device_count()} {jax.default_backend()} "
        f"device(s), median of {args.repeats}")
  print(f"{'model':62s} {'RTF':>8s}")
  for k, v in rows.items():
    print(f"{k:62s} {v:8.4f}")
  print(f"torch / jax RTF ratio (same architecture): {ratio:.2f}x")
  print("kernels (ms/call):", ", ".join(f"{k} {v:.1f}" for k, v in kernels.items()))
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"rtf": rows, "torch_over_jax": ratio, "kernels_ms": kernels,
                 "batch": args.batch, "seconds": args.seconds}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
