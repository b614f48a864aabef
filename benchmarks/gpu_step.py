r"""HuBERT Base training step on one GPU: step time, spread, MFU, compile time, variants.

    python benchmarks/gpu_step.py                  # one GPU: batch 32 x 12 s, bf16
    python benchmarks/gpu_step.py --smoke          # any machine, tiny shapes (CPU check)
    bash benchmarks/gpu_run.sh                     # the prepared device run (see there)

The methodology of issue 15:
  * The step is mlasr.steps.make_update_step (what mlasr.train runs) of
    experiments/hubert_pretrain.py `preset=base` (fairseq masking, AdamW, K=500 cluster
    labels at 50 Hz) on random audio, at batch 32 x the longest training bucket
    (config.data.bucket_seconds[-1] = 12 s), compute dtype bf16 (parameters and AdamW
    float32). Layerdrop is 0, as in the PyTorch baseline, so both do the same work.
  * Timing: `--repeats` rounds of `--steps` steps dispatched back to back with no host sync
    between them (only at the end of a round); per-round mean step time; the median over
    rounds is reported with min / max. One extra round copies each step's batch from host
    numpy arrays (host-to-device copy exercised; no input pipeline beyond that).
  * MFU = FLOPs per step / step time / peak, with FLOPs both analytic (3 x forward
    matmul/conv FLOPs; XLA does not count FLOPs inside cuDNN calls) and from XLA's
    cost_analysis, against (a) a bf16 8192^3 matmul measured in this run and (b) the
    datasheet dense bf16 peak of the card (H200 / H100 SXM 989 TFLOP/s, H100 PCIe 756).
  * Variants (whole step, each compiled once; compile seconds recorded per variant/shape):
      today      attention_impl=reference, pos_conv_impl=split, prng threefry, blocks as
                 a Python loop (before #15)
      fast       attention_impl=cudnn (no attention dropout: see layers.Attention),
                 pos_conv_impl=grouped, prng unsafe_rbg, blocks as one lax.scan
      fast_loop, fast_threefry, xla_attention, grouped_only   isolate one change each
      ctc_fast   CTC fine-tuning step of the same encoder with the `fast` settings
    and per-component fwd+bwd timings at the step's shapes: attention reference / xla /
    cudnn, positional conv split / grouped.
  * If torch + transformers import (with CUDA on a GPU machine): transformers HubertModel of
    the same architecture, batch and mask, attn_implementation="sdpa" (recorded), eager and
    under torch.compile (compile time recorded), masked-prediction loss, AdamW (fused on
    CUDA), bf16 autocast; run first in a child process so JAX's memory pool cannot starve it.

Results: one JSON (rewritten after every measurement, so a run cut short keeps what it
finished) under --out-dir, default benchmarks/results/<device>_<date>/gpu_step.json.
Nothing is downloaded: models are built from configs, data is random.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pretrain_step as ps  # pylint: disable=wrong-import-position  # shared config/FLOPs

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, by device_kind text.
DATASHEET_BF16 = (("H200", 989.4e12), ("H100 PCIe", 756.0e12), ("H100 NVL", 835.0e12),
                  ("H100", 989.4e12), ("A100", 312.0e12), ("L40S", 362.05e12))

VARIANTS = {
    "today": dict(attention_impl="reference", pos_conv_impl="split", prng="threefry",
                  scan_layers="loop"),
    "fast": dict(attention_impl="cudnn", pos_conv_impl="grouped", prng="unsafe_rbg"),
    "fast_loop": dict(attention_impl="cudnn", pos_conv_impl="grouped", prng="unsafe_rbg",
                      scan_layers="loop"),
    "fast_threefry": dict(attention_impl="cudnn", pos_conv_impl="grouped", prng="threefry"),
    "xla_attention": dict(attention_impl="xla", pos_conv_impl="grouped", prng="threefry"),
    "grouped_only": dict(attention_impl="reference", pos_conv_impl="grouped", prng="threefry"),
    # fast with 16 split positional convs: isolates the grouped conv inside the whole step.
    "fast_split_pos_conv": dict(attention_impl="cudnn", pos_conv_impl="split",
                                prng="unsafe_rbg"),
    # The front end's convs as reshape + matmul (tensor cores even for the 1-channel layer).
    "fast_matmul_frontend": dict(attention_impl="cudnn", pos_conv_impl="grouped",
                                 prng="unsafe_rbg", conv_impl="matmul"),
    "ctc_fast": dict(attention_impl="cudnn", pos_conv_impl="grouped", prng="unsafe_rbg",
                     task="ctc"),
}
# Tiny encoder for --smoke: every code path, seconds of CPU.
SMOKE_ENCODER = dict(conv_dim=(32,) * 7, d_model=64, num_heads=4, ffn_dim=128, num_layers=2,
                     pos_conv_kernel=16, pos_conv_groups=16)


def _parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--smoke", action="store_true",
                 help="tiny encoder, batch 2 x 1 s, 2 x 2 steps: checks the script anywhere")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--seconds", type=float, default=0.0,
                 help="utterance length (default: the longest training bucket of the config)")
  p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
  p.add_argument("--steps", type=int, default=10, help="steps per timed round")
  p.add_argument("--repeats", type=int, default=5, help="timed rounds (median over them)")
  p.add_argument("--variants",
                 default="fast,today,fast_split_pos_conv,fast_matmul_frontend,ctc_fast,"
                 "fast_loop,fast_threefry,xla_attention",
                 help=f"comma-separated, in priority order; known: {','.join(VARIANTS)}")
  p.add_argument("--components", default="yes", choices=("yes", "no"),
                 help="per-component attention / positional conv timings")
  p.add_argument("--torch", default="auto", choices=("auto", "yes", "no"))
  p.add_argument("--torch-compile", default="auto", choices=("auto", "yes", "no"),
                 help="also time torch.compile (auto: only with CUDA)")
  p.add_argument("--profile", default="fast,today",
                 help="variants traced with jax.profiler after timing (3 steps), comma list")
  p.add_argument("--time-budget", type=float, default=0.0,
                 help="seconds; skip the remaining variants once exceeded (0 = no limit)")
  p.add_argument("--matmul-size", type=int, default=0, help="default 8192 (GPU), 512 (smoke)")
  p.add_argument("--out-dir", default="", help="default benchmarks/results/<device>_<date>")
  p.add_argument("--torch-child", default=None, help=argparse.SUPPRESS)  # internal
  args = p.parse_args(argv)
  if args.smoke:
    args.batch, args.steps, args.repeats = 2, 2, 2
    args.seconds = args.seconds or 1.0
    if args.variants == p.get_default("variants"):  # every code path, fewer compiles
      args.variants = "fast,today,ctc_fast"
  return args


def load_config(args, variant: dict):
  """experiments/hubert_pretrain.py preset=base (or the CTC base config) with the variant."""
  config = ps.load_config("base", args.dtype)
  enc = dict(config.model.encoder, layerdrop=0.0,
             attention_impl=variant["attention_impl"], pos_conv_impl=variant["pos_conv_impl"],
             scan_layers=variant.get("scan_layers", "scan"))
  if "conv_impl" in variant:
    enc["conv_impl"] = variant["conv_impl"]
  if args.smoke:
    enc.update(SMOKE_ENCODER)
  config.model.encoder = enc
  return config


def default_seconds(args) -> float:
  return args.seconds or float(ps.load_config("base", args.dtype).data.bucket_seconds[-1])


def datasheet_peak(device_kind: str) -> float | None:
  return next((v for k, v in DATASHEET_BF16 if k in device_kind), None)


def round_stats(step_times: list[float]) -> dict:
  t = np.asarray(step_times)
  return dict(median_s=float(np.median(t)), min_s=float(t.min()), max_s=float(t.max()),
              spread=float((t.max() - t.min()) / np.median(t)), rounds_s=[float(x) for x in t])


def time_rounds(run_step, state, batches, first_step: int, steps: int, repeats: int):
  """Mean step time of each of `repeats` rounds of `steps` unsynchronised steps."""
  import jax  # pylint: disable=import-outside-toplevel
  out, step = [], first_step
  for _ in range(repeats):
    t0 = time.perf_counter()
    for i in range(steps):
      state, metrics = run_step(state, batches[i % len(batches)], step)
      step += 1
    jax.block_until_ready((state, metrics))
    out.append((time.perf_counter() - t0) / steps)
  return state, metrics, out, step


# ------------------------------------------------------------------------------------------
# JAX whole-step variants.
# ------------------------------------------------------------------------------------------
def ctc_batch(batch: int, samples: int, frames: int, vocab: int) -> dict:
  rng = np.random.default_rng(0)
  labels_len = max(frames // 4, 1)  # ~12 characters per second of speech
  return dict(audio=(0.1 * rng.standard_normal((batch, samples))).astype(np.float32),
              audio_mask=np.ones((batch, samples), np.int32),
              labels=rng.integers(1, vocab, (batch, labels_len)).astype(np.int32),
              label_mask=np.ones((batch, labels_len), np.int32),
              example_mask=np.ones((batch,), np.int32))


def jax_variant(args, name: str, seconds: float) -> dict:
  import jax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from mlasr import checkpoint, optim, steps  # pylint: disable=import-outside-toplevel
  variant = VARIANTS[name]
  # Before any key of this variant exists (the update step makes its own at build time).
  checkpoint.set_prng_impl(variant["prng"])
  config = load_config(args, variant)
  samples = int(round(seconds * ps.SAMPLE_RATE))
  enc_cfg = ps.encoder_config(config)
  frames = ps.num_frames(enc_cfg, samples)
  rngs = nnx.Rngs(params=config.seed, dropout=config.seed + 1)
  if variant.get("task") == "ctc":
    from mlasr.models import ctc as ctc_model  # pylint: disable=import-outside-toplevel
    from mlasr.tasks import ctc as task  # pylint: disable=import-outside-toplevel
    from mlasr import config_lib  # pylint: disable=import-outside-toplevel
    vocab = 64
    # The CTC run config (head, final dropout, fine-tuning optimizer) on the same encoder.
    ctc_config = config_lib.base_config("ctc")
    ctc_config.model.encoder = config.model.encoder
    ctc_config.total_steps = config.total_steps
    config = ctc_config
    model = ctc_model.build(config, vocab, rngs)
    host = [ctc_batch(args.batch, samples, frames, vocab) for _ in range(2)]
    flops = ps.analytic_flops(enc_cfg, args.batch, samples, 0, 0) + \
        3.0 * 2 * args.batch * frames * enc_cfg.d_model * vocab
  else:
    from mlasr.models import hubert_pretrain  # pylint: disable=import-outside-toplevel
    from mlasr.tasks import hubert as task  # pylint: disable=import-outside-toplevel
    model = hubert_pretrain.build(config, 500, rngs)
    host = [ps.make_batch(args.batch, seconds, frames, 500) for _ in range(2)]
    flops = ps.analytic_flops(enc_cfg, args.batch, samples, config.model.final_dim, 500)
  host[1]["audio"] = host[1]["audio"][:, ::-1].copy()  # a second, different batch
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  graphdef, state = nnx.split((model, nnx.Optimizer(model, tx, wrt=nnx.Param)))
  update_step = steps.make_update_step(graphdef, task, schedule, config.seed)
  batches = [jax.device_put(b) for b in host]

  t0 = time.perf_counter()
  compiled = jax.jit(update_step, donate_argnums=(0,)).lower(state, batches[0], 0).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  memory = compiled.memory_analysis()
  state, metrics, _, step = time_rounds(compiled, state, batches, 0, 2, 1)  # warm-up
  state, metrics, rounds, step = time_rounds(compiled, state, batches, step, args.steps,
                                             args.repeats)

  def from_host(s, b, i):  # host numpy -> device inside the loop, still unsynchronised
    return compiled(s, jax.device_put(b), i)

  state, metrics, h2d, step = time_rounds(from_host, state, host, step, args.steps, 1)
  profile = None
  if name in args.profile.split(","):
    trace_dir = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"gpu_step_trace_{name}")
    try:
      state, step, profile = profile_steps(compiled, state, batches, step, 3, trace_dir,
                                           float(np.median(rounds)))
    except Exception as e:  # pylint: disable=broad-except  # the timings above still count
      profile = dict(error=f"{type(e).__name__}: {e}"[:2000])
  return dict(variant=variant, task=variant.get("task", "hubert"), batch=args.batch,
              seconds=seconds, frames=frames, compile_s=compile_s, **round_stats(rounds),
              host_to_device_round_s=h2d[0], analytic_flops=flops,
              xla_flops=float(cost.get("flops", 0.0)),
              temp_bytes=int(getattr(memory, "temp_size_in_bytes", 0) or 0),
              loss=float(metrics["loss"]),
              audio_seconds_per_second=args.batch * seconds / float(np.median(rounds)),
              profile=profile)


# ------------------------------------------------------------------------------------------
# jax.profiler trace of a few steps, summarised on the machine into kernels by category.
# ------------------------------------------------------------------------------------------
# First match wins; names are XLA/cuDNN/cuBLAS kernel names on GPU (fusions are named after
# their root op, e.g. "loop_multiply_fusion", "triton_gemm_dot_7", "cudnn_fmha...").
KERNEL_CATEGORIES = (
    ("attention (cuDNN/flash)", ("sdpa", "fmha", "flash", "attention", "mha")),
    ("convolution", ("fprop", "dgrad", "wgrad", "convolution", "conv_general", "implicit",
                     "winograd",
                     "conv1d", "conv2d")),
    ("matmul", ("gemm", "cutlass", "xmma", "nvjet", "cublas", "dot", "matmul", "wgmma")),
    ("random bits", ("rng", "threefry", "philox", "random")),
    ("copy/transpose", ("memcpy", "memset", "copy", "transpose", "dynamic_update_slice",
                        "dynamic-update-slice", "concatenate", "pad")),
    ("reduction fusion", ("reduce", "input_", "softmax", "norm")),
    ("elementwise fusion", ("fusion", "loop_", "elementwise", "convert", "select",
                            "multiply", "add", "exp")),
)


def kernel_category(name: str) -> str:
  low = name.lower()
  return next((cat for cat, keys in KERNEL_CATEGORIES if any(k in low for k in keys)), "other")


def summarise_trace(trace_dir: str, num_steps: int, step_s: float, top: int = 30) -> dict:
  """Device kernels of a jax.profiler trace: time per category and the top kernels.

  Reads the XSpace the profiler wrote (jax.profiler.ProfileData); on a GPU the device
  plane's stream lines hold one event per kernel. Without a device plane (CPU) the host
  plane's XLA thunk events stand in, so the code path runs in --smoke.
  """
  import glob  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  paths = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))
  if not paths:
    return dict(error=f"no *.xplane.pb under {trace_dir}")
  data = jax.profiler.ProfileData.from_file(paths[-1])
  planes = list(data.planes)
  device = [p for p in planes if p.name.startswith("/device:")]
  chosen = device or [p for p in planes if p.name.startswith("/host:")]
  per_kernel: dict[str, list[float]] = {}
  hlo_ops: dict[str, dict[str, int]] = {}
  details: dict[str, str] = {}
  line_ms: dict[str, float] = {}
  busy_ns = 0.0
  for plane in chosen:
    lines = list(plane.lines)
    # On a device plane the kernels sit on "Stream #N" lines; derived lines ("XLA Ops",
    # "XLA Modules", "Steps") repeat their time. Host planes: XLA's thunks, not Python.
    streams = [ln for ln in lines if ln.name.lower().startswith("stream")]
    kept = streams or [ln for ln in lines if not ln.name.startswith(("XLA", "Steps"))]
    for line in kept:
      for event in line.events:
        if event.name.startswith("$"):  # Python frames of the host trace
          continue
        d = float(event.duration_ns)
        # XLA tags each GPU kernel with the HLO instruction that launched it ("hlo_op"):
        # the link from a cuDNN/cuBLAS kernel name back to the model's op.
        stats = dict(event.stats)
        ops = hlo_ops.setdefault(event.name, {})
        for key in ("hlo_op", "tf_op", "long_name"):
          if key in stats:
            ops[f"{key}={stats[key]}"[:200]] = ops.get(f"{key}={stats[key]}"[:200], 0) + 1
        if "kernel_details" in stats and event.name not in details:
          details[event.name] = str(stats["kernel_details"])[:300]
        line_ms[f"{plane.name} {line.name}"] = line_ms.get(f"{plane.name} {line.name}",
                                                           0.0) + d / 1e6
        entry = per_kernel.setdefault(event.name, [0.0, 0])
        entry[0] += d
        entry[1] += 1
        busy_ns += d
  by_cat: dict[str, float] = {}
  for name, (ns, _) in per_kernel.items():
    cat = kernel_category(name)
    by_cat[cat] = by_cat.get(cat, 0.0) + ns
  per_step = lambda ns: ns / 1e6 / num_steps  # pylint: disable=unnecessary-lambda-assignment
  kernels = sorted(per_kernel.items(), key=lambda kv: -kv[1][0])
  return dict(
      planes=[p.name for p in chosen], source="device streams" if device else "host threads",
      steps=num_steps, step_ms=step_s * 1e3,
      kernel_ms_per_step=per_step(busy_ns),
      # Kernel time over wall time: under 1 means the GPU waited (launch gaps, host work,
      # or streams overlapping makes it over 1).
      busy_fraction=busy_ns / 1e9 / num_steps / step_s if step_s else None,
      categories_ms_per_step={c: per_step(ns) for c, ns in
                              sorted(by_cat.items(), key=lambda kv: -kv[1])},
      top_kernels=[dict(name=n[:300], category=kernel_category(n), ms_per_step=per_step(ns),
                        calls_per_step=c / num_steps,
                        hlo_ops=dict(sorted(hlo_ops.get(n, {}).items(),
                                            key=lambda kv: -kv[1])[:8]),
                        kernel_details=details.get(n))
                   for n, (ns, c) in kernels[:top]],
      distinct_kernels=len(per_kernel),
      lines_ms={k: v for k, v in sorted(line_ms.items(), key=lambda kv: -kv[1])[:20]})


def profile_steps(run_step, state, batches, first_step: int, num_steps: int,
                  trace_dir: str, step_s: float) -> tuple:
  import jax  # pylint: disable=import-outside-toplevel
  jax.block_until_ready(state)
  with jax.profiler.trace(trace_dir):
    state, _, _, step = time_rounds(run_step, state, batches, first_step, num_steps, 1)
  return state, step, summarise_trace(trace_dir, num_steps, step_s)


# ------------------------------------------------------------------------------------------
# Per-component timings at the step's shapes (fwd + bwd, bf16).
# ------------------------------------------------------------------------------------------
def components(args, seconds: float) -> dict:
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from mlasr.models import encoder as encoder_lib, frontends, layers  # pylint: disable=import-outside-toplevel

  enc = encoder_lib.get_config("base", **(SMOKE_ENCODER if args.smoke else {}))
  frames = ps.num_frames(enc, int(round(seconds * ps.SAMPLE_RATE)))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((args.batch, frames, enc.d_model)), args.dtype)
  # Realistic padding: lengths spread over the bucket as a length-bucketed batch has them.
  lengths = np.linspace(frames, frames * 0.75, args.batch).astype(np.int32)
  mask = jnp.arange(frames)[None] < jnp.asarray(lengths)[:, None]
  modules = {f"attention_{impl}": layers.Attention(enc.d_model, enc.num_heads, 0.0,
                                                   dtype=args.dtype, impl=impl,
                                                   rngs=nnx.Rngs(0))
             for impl in ("reference", "xla", "cudnn")}
  modules.update({f"pos_conv_{impl}": layers.PositionalConv(
      enc.d_model, enc.pos_conv_kernel, enc.pos_conv_groups, dtype=args.dtype, impl=impl,
      rngs=nnx.Rngs(0)) for impl in ("split", "grouped")})
  out = dict(shape=[args.batch, frames, enc.d_model])
  for name, module in modules.items():
    if name.startswith("attention"):
      resolved = module.resolve_impl(True, enc.d_model // enc.num_heads)
      call = lambda m, x: m(x, mask, True)  # pylint: disable=unnecessary-lambda-assignment
    else:
      resolved = module.resolve_impl()
      call = lambda m, x: m(x)  # pylint: disable=unnecessary-lambda-assignment
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def loss(p, x, gd=graphdef, rest=rest, call=call):
      return jnp.sum(call(nnx.merge(gd, p, rest), x).astype(jnp.float32) ** 2)

    f = jax.jit(jax.grad(loss, argnums=(0, 1)))
    t0 = time.perf_counter()
    try:
      jax.block_until_ready(f(params, x))
    except Exception as e:  # pylint: disable=broad-except  # recorded, as for the variants
      out[name] = dict(resolved_impl=resolved, error=f"{type(e).__name__}: {e}"[:2000])
      continue
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      for _ in range(args.steps):
        g = f(params, x)
      jax.block_until_ready(g)
      times.append((time.perf_counter() - t0) / args.steps)
    out[name] = dict(resolved_impl=resolved, compile_s=compile_s, **round_stats(times))
  # The waveform front end (7 strided convs over the raw samples; its first layer has one
  # input channel, which cuDNN cannot put on tensor cores): XLA conv vs reshape + matmul.
  samples = int(round(seconds * ps.SAMPLE_RATE))
  audio = jnp.asarray(0.1 * rng.standard_normal((args.batch, samples)), jnp.float32)
  audio_mask = jnp.ones((args.batch, samples), bool)
  for impl in ("xla", "matmul"):
    fe_cfg = encoder_lib.get_config("base", conv_impl=impl, dtype=args.dtype,
                                    **(SMOKE_ENCODER if args.smoke else {}))
    module = frontends.WaveformFrontend(fe_cfg, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def fe_loss(p, gd=graphdef, rest=rest):  # weights only: no gradient into the audio
      y, _ = nnx.merge(gd, p, rest)(audio, audio_mask)
      return jnp.sum(y.astype(jnp.float32) ** 2)

    f = jax.jit(jax.grad(fe_loss))
    name = f"frontend_{impl}"
    t0 = time.perf_counter()
    try:
      jax.block_until_ready(f(params))
    except Exception as e:  # pylint: disable=broad-except
      out[name] = dict(resolved_impl=impl, error=f"{type(e).__name__}: {e}"[:2000])
      continue
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      for _ in range(args.steps):
        g = f(params)
      jax.block_until_ready(g)
      times.append((time.perf_counter() - t0) / args.steps)
    out[name] = dict(resolved_impl=impl, compile_s=compile_s, **round_stats(times))
  return out


def matmul_peak(size: int) -> float:
  return ps.matmul_peak(size, "bfloat16")


# ------------------------------------------------------------------------------------------
# PyTorch: transformers HubertModel, eager (SDPA) and torch.compile.
# ------------------------------------------------------------------------------------------
def torch_steps(args, seconds: float) -> dict:
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from mlasr import masking  # pylint: disable=import-outside-toplevel

  import logging  # pylint: disable=import-outside-toplevel
  import warnings  # pylint: disable=import-outside-toplevel
  # transformers' boolean-index masking makes dynamo break the graph (aten.nonzero) and warn
  # at length on every recompile; the count of breaks is recorded instead.
  warnings.filterwarnings("ignore", category=UserWarning)
  try:
    torch._logging.set_logs(dynamo=logging.ERROR)  # pylint: disable=protected-access
  except (AttributeError, TypeError):
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)

  config = load_config(args, VARIANTS["today"])
  enc = ps.encoder_config(config)
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch.set_float32_matmul_precision("high")  # as JAX's default precision (TF32) on GPU
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
      feat_proj_dropout=enc.feat_proj_dropout, layerdrop=0.0,
      feat_proj_layer_norm=enc.feat_proj_layer_norm, mask_time_prob=0.05,
      attn_implementation="sdpa")
  samples = int(round(seconds * ps.SAMPLE_RATE))
  frames = ps.num_frames(enc, samples)
  batch = ps.make_batch(args.batch, seconds, frames, 500)
  mc = config.model.masking
  mask = masking.compute_mask_indices((args.batch, frames), None, mc.mask_prob,
                                      mc.mask_length, mc.min_masks, np.random.default_rng(0))
  audio = torch.from_numpy(batch["audio"]).to(device)
  targets = torch.from_numpy(batch["targets"]).long().to(device)
  mask_t = torch.from_numpy(mask).to(device)
  mask_f = mask_t.float()
  use_compile = args.torch_compile == "yes" or (args.torch_compile == "auto" and
                                                device.type == "cuda")
  results = dict(device=str(torch.cuda.get_device_name() if device.type == "cuda" else "cpu"),
                 torch=torch.__version__, transformers=transformers.__version__)
  for mode in ("eager", "compile") if use_compile else ("eager",):
    torch.manual_seed(0)
    model = transformers.HubertModel(hf_cfg).to(device).train()
    proj = torch.nn.Linear(enc.d_model, config.model.final_dim).to(device)
    label_embs = torch.nn.Parameter(torch.rand(500, config.model.final_dim, device=device))
    params = list(model.parameters()) + list(proj.parameters()) + [label_embs]
    oc = config.optim
    optimizer = torch.optim.AdamW(params, lr=oc.lr, betas=(oc.b1, oc.b2), eps=oc.eps,
                                  weight_decay=oc.weight_decay, fused=device.type == "cuda")
    forward = torch.compile(model) if mode == "compile" else model

    def step(forward=forward, proj=proj, label_embs=label_embs, params=params,
             optimizer=optimizer):
      with torch.autocast(device.type, dtype=torch.bfloat16,
                          enabled=args.dtype == "bfloat16"):
        hidden = forward(audio, mask_time_indices=mask_t).last_hidden_state
        logits = ps._cosine_logits(proj(hidden).float(), label_embs,  # pylint: disable=protected-access
                                   config.model.logit_temp)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets,
                                                reduction="none")
        loss = (nll * mask_f).sum() / mask_f.sum()
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(params, oc.clip_norm)
      optimizer.step()
      return loss

    def sync():
      if device.type == "cuda":
        torch.cuda.synchronize()

    t0 = time.perf_counter()
    for _ in range(2):  # warm-up; for torch.compile this is the compilation
      loss = step()
    sync()
    warmup_s = time.perf_counter() - t0
    rounds = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      for _ in range(args.steps):
        loss = step()
      sync()
      rounds.append((time.perf_counter() - t0) / args.steps)
    results[mode] = dict(attn_implementation=model.config._attn_implementation,  # pylint: disable=protected-access
                         warmup_s=warmup_s, loss=float(loss.item()), **round_stats(rounds))
    if mode == "compile":
      counters = getattr(getattr(torch, "_dynamo", None), "utils", None)
      breaks = getattr(counters, "counters", {}).get("graph_break", {})
      results[mode]["graph_breaks"] = int(sum(breaks.values()))
    del model, optimizer, forward
    if device.type == "cuda":
      torch.cuda.empty_cache()
  return results


def run_torch_child(args, argv: list[str]) -> dict | None:
  if args.torch == "no":
    return None
  if not all(importlib.util.find_spec(m) for m in ("torch", "transformers")):
    if args.torch == "yes":
      raise RuntimeError("--torch yes but torch/transformers are not importable")
    print("torch/transformers not importable: no PyTorch comparison")
    return None
  path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"gpu_step_torch_{os.getpid()}.json")
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--torch-child",
                         path], check=False)
  if proc.returncode != 0:
    if args.torch == "yes":
      raise RuntimeError(f"the PyTorch child failed (exit {proc.returncode})")
    print(f"PyTorch child failed (exit {proc.returncode}); continuing without it")
    return dict(error=f"exit {proc.returncode}")
  with open(path, encoding="utf-8") as f:
    out = json.load(f)
  os.remove(path)
  return out


# ------------------------------------------------------------------------------------------
def _mfu(result: dict, peaks: dict) -> dict:
  out = {}
  for peak_name, peak in peaks.items():
    if peak:
      out[f"vs_{peak_name}"] = dict(
          analytic=result["analytic_flops"] / result["median_s"] / peak,
          xla=result["xla_flops"] / result["median_s"] / peak)
  return out


def main(argv=None) -> dict:
  argv = sys.argv[1:] if argv is None else list(argv)
  args = _parse_args(argv)
  seconds = default_seconds(args)
  if args.torch_child:
    with open(args.torch_child, "w", encoding="utf-8") as f:
      json.dump(torch_steps(args, seconds), f)
    return {}
  t_start = time.perf_counter()
  torch_result = run_torch_child(args, argv)  # first: before JAX takes the GPU memory pool

  import jax  # pylint: disable=import-outside-toplevel
  device = jax.devices()[0]
  kind = f"{device.platform}: {device.device_kind}"
  out_dir = args.out_dir or os.path.join(
      HERE, "results", f"{device.device_kind.replace(' ', '_').lower()}_"
      f"{datetime.date.today().isoformat()}{'_smoke' if args.smoke else ''}")
  os.makedirs(out_dir, exist_ok=True)
  out_path = os.path.join(out_dir, "gpu_step.json")
  size = args.matmul_size or (512 if args.smoke or device.platform == "cpu" else 8192)
  peaks = dict(measured_bf16_matmul=matmul_peak(size),
               datasheet_dense_bf16=datasheet_peak(device.device_kind))
  report = dict(device=kind, jax=jax.__version__, smoke=args.smoke, batch=args.batch,
                seconds=seconds, dtype=args.dtype, steps_per_round=args.steps,
                rounds=args.repeats, matmul_size=size, peaks_flops=peaks, variants={},
                # A warm persistent cache makes compile_s a cache load, not a compile.
                compilation_cache_dir=jax.config.jax_compilation_cache_dir,
                skipped=[], torch=torch_result)

  def write():
    with open(out_path, "w", encoding="utf-8") as f:
      json.dump(report, f, indent=2)

  write()
  print(f"{kind}, jax {jax.__version__}: batch {args.batch} x {seconds:g} s, {args.dtype}; "
        f"bf16 matmul peak measured {peaks['measured_bf16_matmul'] / 1e12:.1f} TFLOP/s, "
        f"datasheet {(peaks['datasheet_dense_bf16'] or 0) / 1e12:.1f}")
  if args.components == "yes":
    report["components"] = components(args, seconds)
    write()
    for name, r in report["components"].items():
      if isinstance(r, dict) and "error" in r:
        print(f"  {name:22s} FAILED {r['error'][:300]}")
      elif isinstance(r, dict):
        print(f"  {name:22s} ({r['resolved_impl']:9s}) fwd+bwd {r['median_s'] * 1e3:8.2f} ms "
              f"[{r['min_s'] * 1e3:.2f}, {r['max_s'] * 1e3:.2f}], compile {r['compile_s']:.1f} s")
  for name in filter(None, args.variants.split(",")):
    if name not in VARIANTS:
      raise SystemExit(f"unknown variant {name!r}; known: {sorted(VARIANTS)}")
    if args.time_budget and time.perf_counter() - t_start > args.time_budget:
      report["skipped"].append(name)
      print(f"  {name}: skipped (time budget {args.time_budget:.0f} s spent)")
      continue
    try:
      r = jax_variant(args, name, seconds)
    except Exception as e:  # pylint: disable=broad-except
      # One failing variant (e.g. a cuDNN version without this kernel) must not cost the
      # others on a machine lent for minutes: record it and go on.
      report["variants"][name] = dict(error=f"{type(e).__name__}: {e}"[:2000])
      write()
      print(f"  {name}: FAILED {type(e).__name__}: {str(e)[:300]}")
      continue
    r["mfu"] = _mfu(r, peaks)
    report["variants"][name] = r
    write()
    mfu = r["mfu"].get("vs_measured_bf16_matmul", {}).get("analytic", 0.0)
    print(f"  {name:14s} step {r['median_s'] * 1e3:8.1f} ms [{r['min_s'] * 1e3:.1f}, "
          f"{r['max_s'] * 1e3:.1f}] over {args.repeats}x{args.steps}, compile "
          f"{r['compile_s']:.1f} s, {r['audio_seconds_per_second']:.0f} s audio/s, MFU "
          f"{100 * mfu:.1f}% (analytic, measured peak), h2d round "
          f"{r['host_to_device_round_s'] * 1e3:.1f} ms/step, loss {r['loss']:.3f}")
    prof = r.get("profile") or {}
    if "error" in prof:
      print(f"    profile FAILED {prof['error'][:300]}")
    elif prof:
      print(f"    profile ({prof['source']}): kernels {prof['kernel_ms_per_step']:.1f} ms/step "
            f"(busy {100 * (prof['busy_fraction'] or 0):.0f}% of the step): " +
            ", ".join(f"{c} {ms:.1f}" for c, ms in prof["categories_ms_per_step"].items()))
      for k in prof["top_kernels"][:8]:
        print(f"      {k['ms_per_step']:7.2f} ms x{k['calls_per_step']:.0f} "
              f"[{k['category']}] {k['name'][:90]}  <- {', '.join(list(k['hlo_ops'])[:2])[:120]}")
  if torch_result and "eager" in torch_result:
    for mode in ("eager", "compile"):
      if mode in torch_result:
        t = torch_result[mode]["median_s"]
        ratios = {n: t / v["median_s"] for n, v in report["variants"].items()
                  if v.get("task") == "hubert"}
        report[f"speedup_over_torch_{mode}"] = ratios
        print(f"  torch {mode} ({torch_result[mode]['attn_implementation']}): "
              f"{t * 1e3:.1f} ms/step; JAX speed-up: " +
              ", ".join(f"{n} {x:.2f}x" for n, x in ratios.items()))
  report["wall_s"] = time.perf_counter() - t_start
  write()
  print(f"wrote {out_path}")
  return report


if __name__ == "__main__":
  main()
