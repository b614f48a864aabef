"""Small Flax NNX building blocks of the mlasr encoders.

Every parameter is created through `param()` so that it carries logical axis names
(`out_sharding` metadata, applied later by the sharding rules; never sharded eagerly).
Parameters are float32; each layer casts to its compute `dtype` on use. Normalisation
statistics and softmax are computed in float32 whatever the compute dtype.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Initializer = jax.nn.initializers.Initializer


def param(init: Initializer, key: jax.Array, shape: Sequence[int],
          names: Sequence[str | None]) -> nnx.Param:
  """A float32 Param with logical axis names (one per dimension)."""
  if len(names) != len(shape):
    raise ValueError(f"logical names {names} do not match parameter shape {shape}")
  return nnx.Param(init(key, tuple(shape), jnp.float32), out_sharding=tuple(names),
                   eager_sharding=False)


def gelu(x: jax.Array) -> jax.Array:
  # The exact (erf) GELU of fairseq and transformers' "gelu"; the tanh approximation
  # differs by ~1e-3 and would break checkpoint parity.
  return jax.nn.gelu(x, approximate=False)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def grad_multiply(x: jax.Array, scale: float) -> jax.Array:
  """Identity forward; multiplies the gradient by `scale` (fairseq GradMultiply)."""
  return x


def _grad_multiply_fwd(x, scale):
  return x, None


def _grad_multiply_bwd(scale, _, g):
  return (g * scale,)


grad_multiply.defvjp(_grad_multiply_fwd, _grad_multiply_bwd)


class Dense(nnx.Module):
  """y = x @ W + b with W [in, out] named `names`."""

  def __init__(self, in_dim: int, out_dim: int, names: tuple[str | None, str | None], *,
               use_bias: bool = True, dtype=jnp.float32, rngs: nnx.Rngs,
               kernel_init: Initializer = jax.nn.initializers.lecun_normal()):
    self.kernel = param(kernel_init, rngs.params(), (in_dim, out_dim), names)
    self.bias = (param(jax.nn.initializers.zeros, rngs.params(), (out_dim,), names[1:])
                 if use_bias else None)
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


class LayerNorm(nnx.Module):
  """LayerNorm over the last axis, statistics in float32 (two-pass variance)."""

  def __init__(self, dim: int, *, eps: float = 1e-5, names: tuple[str] = ("norm",),
               dtype=jnp.float32, rngs: nnx.Rngs):
    self.scale = param(jax.nn.initializers.ones, rngs.params(), (dim,), names)
    self.bias = param(jax.nn.initializers.zeros, rngs.params(), (dim,), names)
    self.eps = eps
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    return layer_norm(x, self.scale[...], self.bias[...], self.eps, self.dtype)


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float,
               dtype) -> jax.Array:
  """LayerNorm over the last axis in float32; `scale`/`bias` broadcast against x."""
  x32 = x.astype(jnp.float32)
  mean = x32.mean(-1, keepdims=True)
  var = jnp.square(x32 - mean).mean(-1, keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + eps) * scale + bias).astype(dtype)


def depthwise_conv1d(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """'Same' depthwise conv over time as a sum of shifted slices.

  x: [B, T, C], kernel: [K, C] (K odd). On CPU this was ~3x faster than XLA's grouped
  convolution (benchmarks/model_speed.py measures both).
  """
  k = kernel.shape[0]
  half = k // 2
  t = x.shape[1]
  xp = jnp.pad(x, ((0, 0), (half, k - 1 - half), (0, 0)))
  out = xp[:, 0:t] * kernel[0]
  for i in range(1, k):
    out = out + xp[:, i:i + t] * kernel[i]
  return out


def depthwise_conv1d_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The same as `depthwise_conv1d` through `lax.conv_general_dilated` (for comparison)."""
  k, c = kernel.shape
  half = k // 2
  return jax.lax.conv_general_dilated(
      x, kernel[:, None, :], window_strides=(1,), padding=[(half, k - 1 - half)],
      dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=c)


POS_CONV_IMPLS = ("auto", "split", "grouped")


class PositionalConv(nnx.Module):
  """wav2vec 2.0 relative positional embedding: weight-normed grouped conv + GELU.

  Weight norm over dim=2 as in fairseq/transformers: for every kernel tap k,
  W[k] = g[k] * v[k] / ||v[k]|| (norm over input and output channels).
  Even kernels drop the last output frame (transformers' SamePadLayer).
  `impl`: "split" (one plain conv per group), "grouped" (one feature_group_count conv) or
  "auto" (split on CPU, grouped on GPU/TPU); the two agree to float rounding.
  """

  def __init__(self, dim: int, kernel: int, groups: int, *, dtype=jnp.float32,
               impl: str = "auto", rngs: nnx.Rngs):
    if dim % groups:
      raise ValueError(f"d_model={dim} is not divisible by pos_conv_groups={groups}")
    if impl not in POS_CONV_IMPLS:
      raise ValueError(f"pos_conv_impl must be one of {POS_CONV_IMPLS}, got {impl!r}")
    std = (2.0 / (kernel * dim / groups)) ** 0.5  # kaiming-normal, as transformers' init
    self.weight_v = param(jax.nn.initializers.normal(std), rngs.params(),
                          (kernel, dim // groups, dim), (None, None, "embed"))
    v_norm = jnp.sqrt(jnp.square(self.weight_v[...]).sum((1, 2)))
    self.weight_g = nnx.Param(v_norm, out_sharding=(None,), eager_sharding=False)
    self.bias = param(jax.nn.initializers.zeros, rngs.params(), (dim,), ("embed",))
    self.kernel, self.groups, self.dtype, self.impl = kernel, groups, dtype, impl

  def resolve_impl(self) -> str:
    if self.impl != "auto":
      return self.impl
    # On CPU one plain conv per group is 1.4x (d=768, k=128) to 4x (d=192, k=32) faster than
    # XLA's feature_group_count conv (benchmarks/model_speed.py --kernels-only); GPUs and
    # TPUs have native grouped-conv kernels, where one launch should beat 16
    # (benchmarks/gpu_step.py times both).
    return "split" if jax.default_backend() == "cpu" else "grouped"

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, F, D] -> [B, F, D]
    v = self.weight_v[...]
    w = v * (self.weight_g[...] / jnp.sqrt(jnp.square(v).sum((1, 2))))[:, None, None]
    pad = self.kernel // 2
    x, w = x.astype(self.dtype), w.astype(self.dtype)
    if self.resolve_impl() == "grouped":
      y = jax.lax.conv_general_dilated(
          x, w, window_strides=(1,), padding=[(pad, pad)],
          dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=self.groups)
    else:
      gi, go = w.shape[1], w.shape[2] // self.groups
      y = jnp.concatenate([
          jax.lax.conv_general_dilated(
              x[..., g * gi:(g + 1) * gi], w[..., g * go:(g + 1) * go], window_strides=(1,),
              padding=[(pad, pad)], dimension_numbers=("NWC", "WIO", "NWC"))
          for g in range(self.groups)], axis=-1)
    if self.kernel % 2 == 0:
      y = y[:, :-1]
    return gelu(y + self.bias[...].astype(self.dtype))


ATTENTION_IMPLS = ("auto", "reference", "xla", "cudnn")


def cudnn_attention_supported(dtype, head_dim: int) -> bool:
  """Whether cuDNN's fused (flash) attention can run here for this compute dtype/head size.

  It needs an NVIDIA GPU of compute capability >= 8.0 (Ampere, Hopper), half-precision inputs
  (there is no float32 kernel) and a head size that is a multiple of 8 up to 128.
  """
  if jax.default_backend() != "gpu":
    return False
  capability = getattr(jax.devices()[0], "compute_capability", None)
  try:
    if capability is None or float(capability) < 8.0:
      return False
  except ValueError:  # a ROCm device reports e.g. "gfx90a": no cuDNN there
    return False
  return jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16) and head_dim % 8 == 0 and \
      head_dim <= 128


# cuDNN's fused attention with per-example key lengths refuses sequence lengths that are not a
# multiple of 64 ("Unsupported sequence length Q 599, KV 599" on an H200, jax 0.11.2).
CUDNN_SEQ_MULTIPLE = 64


def length_masked_attention(q, k, v, lengths, implementation: str,
                            multiple: int = CUDNN_SEQ_MULTIPLE) -> jax.Array:
  """softmax(q k^T) v over the first `lengths[b]` keys, q pre-scaled; [B, T, H, Dh].

  The time axis is zero-padded up to a multiple of `multiple` for the kernel and cut back
  after: padded keys lie beyond every length (never attended), padded query rows are
  dropped, so the result is the unpadded attention's.
  """
  t = q.shape[1]
  pad = (-t) % multiple
  if pad:
    q, k, v = (jnp.pad(a, ((0, 0), (0, pad), (0, 0), (0, 0))) for a in (q, k, v))
  out = jax.nn.dot_product_attention(q, k, v, scale=1.0, key_value_seq_lengths=lengths,
                                     implementation=implementation)
  return out[:, :t]


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
  logging.warning(message)


class Attention(nnx.Module):
  """Multi-head self-attention with key padding mask; weights [D, H, Dh].

  `impl` chooses how softmax(q k^T) v is computed:
    - "reference": the hand-written softmax over the full [B, H, F, F] score matrix, the
      only implementation with attention dropout on the probabilities.
    - "xla": `jax.nn.dot_product_attention(implementation="xla")`, fed the same pre-scaled
      q and boolean mask; it agrees with "reference" to float rounding (~1e-6 in float32,
      outputs and gradients; tests/test_fast_paths.py), and on CPU its forward+backward was
      1.6-2x slower (benchmarks/model_speed.py --kernels-only). Attention dropout, when
      active, uses "reference" (the library call has no dropout).
    - "cudnn": cuDNN fused attention with per-example key lengths (the mask must be
      right-padded, as the encoder's frame masks are; time is padded to the kernel's
      multiple of 64 and cut back, `length_masked_attention`). **Attention dropout is not applied**
      (a documented deviation: the cuDNN kernel bakes its dropout seed into the compiled
      program, so the masks would repeat every step; without it the kernel stays
      stateless). Where cuDNN cannot run (CPU, float32, odd head size) it falls back to "xla"
      with a warning, so a GPU config still evaluates on a laptop.
    - "auto" (default): "cudnn" where it is supported and no attention dropout is active
      (evaluation, or attention_dropout=0), else "reference" -- so on CPU the numerics are
      exactly today's.
  """

  def __init__(self, dim: int, heads: int, dropout: float, *, dtype=jnp.float32,
               impl: str = "auto", rngs: nnx.Rngs):
    if dim % heads:
      raise ValueError(f"d_model={dim} is not divisible by num_heads={heads}")
    if impl not in ATTENTION_IMPLS:
      raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
    dh = dim // heads
    init = jax.nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2))
    for name in ("q", "k", "v"):
      setattr(self, f"{name}_kernel",
              param(init, rngs.params(), (dim, heads, dh), ("embed", "heads", "kv")))
      setattr(self, f"{name}_bias",
              param(jax.nn.initializers.zeros, rngs.params(), (heads, dh), ("heads", "kv")))
    self.out_kernel = param(jax.nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2),
                            rngs.params(), (heads, dh, dim), ("heads", "kv", "embed"))
    self.out_bias = param(jax.nn.initializers.zeros, rngs.params(), (dim,), ("embed",))
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.dtype = dtype
    self.impl = impl
    if impl == "cudnn" and dropout > 0:
      _warn_once(f"attention_impl='cudnn': attention_dropout={dropout} is not applied "
                 "(cuDNN would repeat one dropout mask every step); set it to 0 to silence this")

  def resolve_impl(self, deterministic: bool, head_dim: int) -> str:
    """The implementation a call will use (see the class docstring)."""
    dropout_active = not deterministic and self.dropout.rate > 0
    if self.impl == "auto":
      if not dropout_active and cudnn_attention_supported(self.dtype, head_dim):
        return "cudnn"
      return "reference"
    if self.impl == "cudnn":
      if cudnn_attention_supported(self.dtype, head_dim):
        return "cudnn"
      _warn_once(f"attention_impl='cudnn' is not supported on {jax.default_backend()} with "
                 f"dtype {jnp.dtype(self.dtype).name}, head size {head_dim}: using 'xla'")
      return "reference" if dropout_active else "xla"
    if self.impl == "xla" and dropout_active:
      return "reference"
    return self.impl

  def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
    dt = self.dtype
    x = x.astype(dt)

    def proj(name):
      k, b = getattr(self, f"{name}_kernel"), getattr(self, f"{name}_bias")
      return jnp.einsum("btd,dhk->bthk", x, k[...].astype(dt)) + b[...].astype(dt)

    q, k, v = proj("q"), proj("k"), proj("v")  # [B, F, H, Dh]
    # q is scaled before the product (as fairseq) and the library calls get scale=1, so all
    # implementations see the same rounded q.
    q = q * (q.shape[-1] ** -0.5)
    impl = self.resolve_impl(deterministic, q.shape[-1])
    if impl == "reference":
      scores = jnp.einsum("bqhk,bshk->bhqs", q, k).astype(jnp.float32)
      # A finite bias (not -inf) keeps all-padding rows (padding examples) NaN-free.
      scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
      probs = jax.nn.softmax(scores, axis=-1)
      probs = self.dropout(probs, deterministic=deterministic).astype(dt)
      out = jnp.einsum("bhqs,bshk->bqhk", probs, v)
    elif impl == "xla":
      out = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :].astype(bool),
                                         scale=1.0, implementation="xla")
    else:
      # Key lengths from the right-padded mask. An all-padding row (a padding example) gets
      # length 1 so that the kernel never normalises over zero keys (NaN); that row's output
      # is never used (the loss and the pooling mask it out).
      lengths = jnp.maximum(mask.astype(jnp.int32).sum(-1), 1)
      out = length_masked_attention(q, k, v, lengths, "cudnn")
    return jnp.einsum("bqhk,hkd->bqd", out, self.out_kernel[...].astype(dt)) + \
        self.out_bias[...].astype(dt)


class FeedForward(nnx.Module):
  """Linear -> GELU -> dropout -> Linear -> dropout."""

  def __init__(self, dim: int, hidden: int, activation_dropout: float, dropout: float, *,
               dtype=jnp.float32, rngs: nnx.Rngs):
    self.intermediate = Dense(dim, hidden, ("embed", "mlp"), dtype=dtype, rngs=rngs)
    self.output = Dense(hidden, dim, ("mlp", "embed"), dtype=dtype, rngs=rngs)
    self.activation_dropout = nnx.Dropout(activation_dropout, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    h = self.activation_dropout(gelu(self.intermediate(x)), deterministic=deterministic)
    return self.dropout(self.output(h), deterministic=deterministic)


class ConvModule(nnx.Module):
  """Conformer convolution module (without its own norm/residual, which the block adds).

  pointwise(D -> 2D) -> GLU -> depthwise conv (shifted slices) -> LayerNorm -> SiLU ->
  pointwise(D -> D) -> dropout. Padded frames are zeroed before the depthwise conv so that
  valid frames never see them.
  """

  def __init__(self, dim: int, kernel: int, dropout: float, *, dtype=jnp.float32,
               rngs: nnx.Rngs):
    if kernel % 2 == 0:
      raise ValueError(f"conv_module_kernel must be odd for a centred conv, got {kernel}")
    self.pointwise_in = Dense(dim, 2 * dim, ("embed", "mlp"), dtype=dtype, rngs=rngs)
    self.depthwise = param(jax.nn.initializers.lecun_normal(in_axis=0, out_axis=()),
                           rngs.params(), (kernel, dim), (None, "embed"))
    self.depthwise_bias = param(jax.nn.initializers.zeros, rngs.params(), (dim,), ("embed",))
    self.norm = LayerNorm(dim, dtype=dtype, rngs=rngs)
    self.pointwise_out = Dense(dim, dim, ("embed", "embed"), dtype=dtype, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.dtype = dtype

  def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
    a, b = jnp.split(self.pointwise_in(x), 2, axis=-1)
    h = a * jax.nn.sigmoid(b)
    h = jnp.where(mask[..., None], h, 0)
    h = depthwise_conv1d(h, self.depthwise[...].astype(self.dtype))
    h = h + self.depthwise_bias[...].astype(self.dtype)
    h = jax.nn.silu(self.norm(h))
    return self.dropout(self.pointwise_out(h), deterministic=deterministic)


class TransformerBlock(nnx.Module):
  """One wav2vec 2.0 / HuBERT encoder layer, post-LN or pre-LN (layer_norm_first).

  Post-LN: x = LN(x + drop(attn(x))); [x = LN_c(x + conv(x))]; x = LN_f(x + ffn(x)).
  Pre-LN:  x = x + drop(attn(LN(x))); [x = x + conv(LN_c(x))]; x = x + ffn(LN_f(x)).
  """

  def __init__(self, dim: int, heads: int, ffn_dim: int, *, layer_norm_first: bool,
               dropout: float, attention_dropout: float, activation_dropout: float,
               conv_module_kernel: int, eps: float, dtype=jnp.float32,
               attention_impl: str = "auto", rngs: nnx.Rngs):
    self.attention = Attention(dim, heads, attention_dropout, dtype=dtype, impl=attention_impl,
                               rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.layer_norm = LayerNorm(dim, eps=eps, dtype=dtype, rngs=rngs)
    if conv_module_kernel:
      self.conv_module = ConvModule(dim, conv_module_kernel, dropout, dtype=dtype, rngs=rngs)
      self.conv_norm = LayerNorm(dim, eps=eps, dtype=dtype, rngs=rngs)
    else:
      self.conv_module = self.conv_norm = None
    self.feed_forward = FeedForward(dim, ffn_dim, activation_dropout, dropout, dtype=dtype,
                                    rngs=rngs)
    self.final_layer_norm = LayerNorm(dim, eps=eps, dtype=dtype, rngs=rngs)
    self.layer_norm_first = layer_norm_first

  def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
    det = deterministic
    if self.layer_norm_first:
      x = x + self.dropout(self.attention(self.layer_norm(x), mask, det), deterministic=det)
      if self.conv_module is not None:
        x = x + self.conv_module(self.conv_norm(x), mask, det)
      return x + self.feed_forward(self.final_layer_norm(x), det)
    x = self.layer_norm(x + self.dropout(self.attention(x, mask, det), deterministic=det))
    if self.conv_module is not None:
      x = self.conv_norm(x + self.conv_module(x, mask, det))
    return self.final_layer_norm(x + self.feed_forward(x, det))
