"""The speech encoder of every mlasr model: HuBERT / wav2vec 2.0 in Flax NNX, with conformer
convolution modules and a cheaper log-mel front end as options.

Semantics follow transformers' `HubertModel` / `Wav2Vec2Model` (and fairseq): front end ->
(feature LayerNorm) -> Linear -> dropout -> learned mask embedding on masked frames ->
padded frames zeroed -> + grouped conv positional embedding -> post-LN (Base) or pre-LN
(Large, final LayerNorm) transformer with key-padding masks and layerdrop.

    model = Encoder(PRESETS["base"], rngs=nnx.Rngs(params=0, dropout=1))
    out = model(audio, audio_mask, deterministic=False)   # out.hidden [B, F, D]
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from mlasr import masking
from mlasr.features import FrameSpec
from mlasr.models import frontends, layers


SCAN_LAYERS = ("auto", "scan", "loop")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Every knob of the encoder. Defaults are HuBERT Base."""
  frontend: str = "waveform"            # "waveform" | "logmel"
  # Waveform conv extractor.
  conv_dim: tuple[int, ...] = (512,) * 7
  conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
  conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
  conv_bias: bool = False
  extractor_mode: str = "default"       # "default" (GroupNorm 1st conv) | "layer_norm"
  masked_group_norm: bool = True        # False = transformers (stats include padding)
  # Per-utterance zero-mean unit-variance waveform (transformers' feature extractor
  # do_normalize=True, which most public wav2vec 2.0 / XLS-R / MMS fine-tunes expect).
  normalize_waveform: bool = False
  conv_impl: str = "xla"                # "xla" | "matmul" (reshape + dot; slower on CPU)
  feature_grad_mult: float = 0.1        # gradient scale into the front end (0 = frozen)
  # Log-mel front end.
  sample_rate: int = 16000
  n_fft: int = 400
  win_length: int = 400                 # 25 ms
  hop_length: int = 160                 # 10 ms
  n_mels: int = 80
  logmel_norm: str = "utterance"        # "utterance" | "none"
  logmel_subsample: int = 2             # 2 -> 50 Hz, 4 -> 25 Hz
  subsampler: str = "stack"             # "stack" | "conv2d"
  subsampler_channels: int = 64
  # SpecAugment on the normalised log-mels, training only (Park et al. 2019; adaptive time
  # masks of Park et al. 2020: count and width proportional to the utterance length).
  specaug_freq_masks: int = 0           # masks per utterance (LibriSpeech LD policy: 2)
  specaug_freq_width: int = 27          # widest frequency mask, in mel bins (F)
  specaug_time_mask_rate: float = 0.0   # masks per frame, pM (0.04 in Park 2020)
  specaug_time_width_ratio: float = 0.04  # widest time mask as a share of the length, pS
  specaug_max_time_masks: int = 20      # cap on the adaptive count
  # Projection and transformer.
  feat_proj_layer_norm: bool = True
  d_model: int = 768
  num_layers: int = 12
  num_heads: int = 12
  ffn_dim: int = 3072
  pos_conv_kernel: int = 128
  pos_conv_groups: int = 16
  layer_norm_first: bool = False        # False = post-LN (Base), True = pre-LN (Large)
  layer_norm_eps: float = 1e-5
  conv_module_kernel: int = 0           # >0 adds a conformer conv module to every block
  dropout: float = 0.1                  # residual branches and after pos-conv add
  attention_dropout: float = 0.1
  activation_dropout: float = 0.0
  feat_proj_dropout: float = 0.1
  layerdrop: float = 0.05
  # Compute dtype; parameters (and so optimizer state and checkpoints) are always float32.
  # "auto": bfloat16 on a GPU or TPU (fp32 master weights, fp32 norms and softmax), float32
  # on CPU, where bf16 matmuls are emulated and slower. `compute_dtype` resolves it.
  dtype: str = "auto"
  remat: str = "none"                   # activation checkpointing per block: none|full|dots
  # How the blocks run: "scan" (one lax.scan over their stacked weights: XLA compiles one
  # block instead of num_layers copies), "loop" (a Python loop) or "auto": scan for training
  # calls, and for inference too except on CPU, where the 6-block demo model's update step
  # compiled in 23-28 % less time and ran as fast or faster scanned, while the 4-block tiny
  # encoder's forward alone ran 15-25 % slower (benchmarks/train_throughput.py,
  # model_speed.py). Same numbers either way, dropout masks included; checkpoints do not
  # change (weights stay stored per block). Calls with `after_block` (adapters) always loop.
  scan_layers: str = "auto"
  # softmax(qk)v: "auto" (cuDNN fused on a GPU when no attention dropout is active, else the
  # hand-written reference) | "reference" | "xla" | "cudnn" (drops attention dropout);
  # see layers.Attention.
  attention_impl: str = "auto"
  # Positional conv: "split" (one conv per group; fastest on CPU) | "grouped" (one conv with
  # feature_group_count; meant for GPU/TPU) | "auto" (split on CPU, grouped elsewhere).
  pos_conv_impl: str = "auto"

  @property
  def compute_dtype(self) -> jnp.dtype:
    """The dtype the layers compute in: `dtype`, with "auto" resolved for this backend."""
    if self.dtype == "auto":
      return jnp.dtype(jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16)
    return jnp.dtype(self.dtype)

  def __post_init__(self):
    # Configs from ml_collections / JSON carry lists; the config must stay hashable because
    # NNX keeps it as static graph data.
    for name in ("conv_dim", "conv_kernel", "conv_stride"):
      object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
    if self.scan_layers not in SCAN_LAYERS:
      raise ValueError(f"EncoderConfig.scan_layers={self.scan_layers!r}; use one of "
                       f"{SCAN_LAYERS}")


PRESETS: dict[str, EncoderConfig] = {
    # CPU-friendly: 25 Hz log-mel frames (4x stacking), 4 conformer-ish blocks, d=192.
    # Set frontend="waveform" to get a narrow HuBERT conv stack instead (conv_dim 256).
    "tiny": EncoderConfig(
        frontend="logmel", logmel_subsample=4, conv_dim=(256,) * 7, d_model=192,
        num_layers=4, num_heads=4, ffn_dim=768, pos_conv_kernel=32, pos_conv_groups=16,
        conv_module_kernel=15, dropout=0.1, attention_dropout=0.1, feat_proj_dropout=0.1,
        layerdrop=0.0, feature_grad_mult=1.0),
    "base": EncoderConfig(),
    "large": EncoderConfig(
        extractor_mode="layer_norm", conv_bias=True, d_model=1024, num_layers=24,
        num_heads=16, ffn_dim=4096, layer_norm_first=True, dropout=0.0,
        attention_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0, feature_grad_mult=1.0),
}


def config_from_fields(fields) -> EncoderConfig:
  """`config.model.encoder` of a run (a preset name, "tiny" if absent, and field overrides)."""
  fields = dict(fields)
  return get_config(fields.pop("preset", "tiny"), **fields)


def get_config(name: str, **overrides) -> EncoderConfig:
  """A preset by name with field overrides, e.g. get_config("tiny", num_layers=2)."""
  if name not in PRESETS:
    raise KeyError(f"unknown encoder preset {name!r}; known: {sorted(PRESETS)}")
  return dataclasses.replace(PRESETS[name], **overrides)


def _call_block(block, x, frame_mask, deterministic):
  return block(x, frame_mask, deterministic)


# Activation checkpointing trades compute for memory: "full" recomputes each block in the
# backward pass, "dots" keeps matmul outputs (without a batch dim) and recomputes the rest.
_REMAT_POLICIES = {"full": None,
                   "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}


def _remat_policy(name: str):
  """The jax.checkpoint policy of EncoderConfig.remat `name` ("none" is handled by callers)."""
  if name not in _REMAT_POLICIES:
    raise ValueError(f"EncoderConfig.remat={name!r}; use 'none', 'full' or 'dots'.")
  return _REMAT_POLICIES[name]


def _remat_block(name: str):
  if name == "none":
    return _call_block
  return nnx.remat(_call_block, policy=_remat_policy(name), static_argnums=(3,))


class EncoderOutput(NamedTuple):
  hidden: jax.Array                 # [B, F, D] last hidden state (after final LN if pre-LN)
  frame_mask: jax.Array             # [B, F] bool, True on real frames
  features: jax.Array               # [B, F, C] front-end features before LN/projection
  layer_hiddens: tuple[jax.Array, ...] | None  # transformer input + every block's output


class Encoder(nnx.Module):
  """HuBERT / wav2vec 2.0 encoder (waveform or log-mel front end)."""

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    cfg = config
    self.config = cfg
    dtype = cfg.compute_dtype
    if cfg.frontend == "waveform":
      self.frontend = frontends.WaveformFrontend(cfg, rngs=rngs)
    elif cfg.frontend == "logmel":
      self.frontend = frontends.LogMelFrontend(cfg, rngs=rngs)
    else:
      raise ValueError(f"frontend must be 'waveform' or 'logmel', got {cfg.frontend!r}")
    c, d = self.frontend.out_dim, cfg.d_model
    self.feature_layer_norm = (layers.LayerNorm(c, eps=cfg.layer_norm_eps, dtype=dtype,
                                                rngs=rngs) if cfg.feat_proj_layer_norm else None)
    self.projection = layers.Dense(c, d, ("conv_out", "embed"), dtype=dtype, rngs=rngs)
    self.feat_proj_dropout = nnx.Dropout(cfg.feat_proj_dropout, rngs=rngs)
    self.mask_embedding = layers.param(jax.nn.initializers.uniform(1.0), rngs.params(), (d,),
                                       ("embed",))
    # pos_conv_kernel=0: no convolutional positional embedding (a conformer conv module in
    # every block already gives the model relative position).
    self.pos_conv = (layers.PositionalConv(d, cfg.pos_conv_kernel, cfg.pos_conv_groups,
                                           dtype=dtype, impl=cfg.pos_conv_impl, rngs=rngs)
                     if cfg.pos_conv_kernel else None)
    # Post-LN: LayerNorm after the pos-conv add; pre-LN: LayerNorm after the last block.
    self.layer_norm = layers.LayerNorm(d, eps=cfg.layer_norm_eps, dtype=dtype, rngs=rngs)
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
    self.layers = nnx.List([
        layers.TransformerBlock(
            d, cfg.num_heads, cfg.ffn_dim, layer_norm_first=cfg.layer_norm_first,
            dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
            activation_dropout=cfg.activation_dropout,
            conv_module_kernel=cfg.conv_module_kernel, eps=cfg.layer_norm_eps, dtype=dtype,
            attention_impl=cfg.attention_impl, rngs=rngs)
        for _ in range(cfg.num_layers)])
    self.layerdrop_rngs = rngs["dropout"].fork() if cfg.layerdrop > 0 else None
    self.dtype = dtype

  @property
  def d_model(self) -> int:
    return self.config.d_model

  @property
  def frame_spec(self) -> FrameSpec:
    """The front end's frame arithmetic: `.num_frames(n)`, `.rate` (Hz), `.hop` (samples)."""
    return self.frontend.frame_spec

  def frame_lengths(self, num_samples):
    """Number of output frames for `num_samples` real samples (int, numpy or jax array)."""
    return self.frame_spec.num_frames(num_samples)

  def __call__(self, audio: jax.Array, audio_mask: jax.Array | None = None, *,
               time_mask: jax.Array | None = None, channel_mask: jax.Array | None = None,
               deterministic: bool = True, output_hidden_states: bool = False,
               after_block=None) -> EncoderOutput:
    """Encodes a right-padded batch.

    Args:
      audio: [B, T] float waveform at 16 kHz.
      audio_mask: [B, T] (bool or int), 1 on real samples; None = all real.
      time_mask: optional [B, F] bool, frames to replace by the learned mask embedding.
      channel_mask: optional [B, D] bool, channels of the projected features set to zero.
      deterministic: True disables dropout and layerdrop.
      output_hidden_states: also return the transformer input and every block's output.
      after_block: optional (block index, x) -> x applied to each block's output, e.g. the
        per-language adapters of mlasr.models.adapters.
    """
    cfg = self.config
    if audio_mask is None:
      audio_mask = jnp.ones(audio.shape, bool)
    audio_mask = audio_mask.astype(bool)
    features, frame_mask = self.frontend(audio, audio_mask, deterministic)
    if cfg.feature_grad_mult == 0.0:
      features = jax.lax.stop_gradient(features)
    elif cfg.feature_grad_mult != 1.0:
      features = layers.grad_multiply(features, cfg.feature_grad_mult)

    x = features
    if self.feature_layer_norm is not None:
      x = self.feature_layer_norm(x)
    x = self.feat_proj_dropout(self.projection(x), deterministic=deterministic)
    if time_mask is not None:
      x = jnp.where(time_mask[..., None], self.mask_embedding[...].astype(x.dtype), x)
    if channel_mask is not None:  # fine-tuning channel masking (fairseq apply_mask)
      x = masking.apply_channel_mask(x, channel_mask)

    x = jnp.where(frame_mask[..., None], x, 0)  # as transformers: padding out of the pos conv
    if self.pos_conv is not None:
      x = x + self.pos_conv(x)
    if not cfg.layer_norm_first:
      x = self.layer_norm(x)
    x = self.dropout(x, deterministic=deterministic)

    if self.scans_blocks(deterministic, after_block is not None):
      x, hiddens = self._scan_blocks(x, frame_mask, deterministic, output_hidden_states)
    else:
      x, hiddens = self._loop_blocks(x, frame_mask, deterministic, after_block)
    if cfg.layer_norm_first:
      x = self.layer_norm(x)
    return EncoderOutput(hidden=x, frame_mask=frame_mask, features=features,
                         layer_hiddens=tuple(hiddens) if output_hidden_states else None)

  def scans_blocks(self, deterministic: bool, has_after_block: bool = False) -> bool:
    """Whether a call runs its blocks as one lax.scan (see EncoderConfig.scan_layers)."""
    mode = self.config.scan_layers
    if has_after_block or len(self.layers) < 2 or mode == "loop":
      return False
    return mode == "scan" or not deterministic or jax.default_backend() != "cpu"

  def _keep_block(self, key: jax.Array) -> jax.Array:
    """Layerdrop: whether a block's output is kept (True) or the block is skipped."""
    return jax.random.uniform(key) >= self.config.layerdrop

  def _loop_blocks(self, x, frame_mask, deterministic, after_block):
    """The blocks one after another (Python loop): XLA compiles every block separately."""
    hiddens = [x]
    run_block = _remat_block(self.config.remat)
    for i, block in enumerate(self.layers):
      y = run_block(block, x, frame_mask, deterministic)
      if after_block is not None:
        y = after_block(i, y)
      if self.config.layerdrop > 0 and not deterministic:
        y = jnp.where(self._keep_block(self.layerdrop_rngs()), y, x)
      x = y
      hiddens.append(x)
    return x, hiddens

  def _scan_blocks(self, x, frame_mask, deterministic, output_hidden_states):
    """The blocks as one `lax.scan` over their stacked state; the loop's numbers exactly.

    Each block's state (weights, and the key and counter of each of its dropout streams) is
    stacked along a new leading axis inside the traced step, so the body is compiled once and
    checkpoints keep their per-block layout. Stacking copies the block weights once per step
    (and their gradients flow back through the stack), a cost linear in the parameter count
    that is small next to any batch's activations. The dropout streams advance exactly as in
    the loop, and layerdrop draws its per-block keys in the loop's order, so training
    randomness does not depend on `scan_layers`.
    """
    cfg = self.config
    graphdef = nnx.graphdef(self.layers[0])
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves),
                           *[nnx.state(block) for block in self.layers])
    use_layerdrop = cfg.layerdrop > 0 and not deterministic
    keys = (jnp.stack([self.layerdrop_rngs() for _ in self.layers]) if use_layerdrop
            else jnp.zeros([len(self.layers)], jnp.uint32))  # unused placeholder per block

    def body(x, state_and_key):
      state, key = state_and_key
      block = nnx.merge(graphdef, state)
      y = block(x, frame_mask, deterministic)
      if use_layerdrop:
        y = jnp.where(self._keep_block(key), y, x)
      rng_state = None if deterministic else nnx.state(block, nnx.RngState)
      return y, (y if output_hidden_states else None, rng_state)

    if cfg.remat != "none":
      body = jax.checkpoint(body, policy=_remat_policy(cfg.remat), prevent_cse=False)
    x_in = x
    x, (ys, rng_states) = jax.lax.scan(body, x, (stacked, keys))
    if not deterministic:  # the dropout counters move on, as in the loop
      for i, block in enumerate(self.layers):
        nnx.update(block, jax.tree.map(lambda leaf: leaf[i], rng_states))
    hiddens = [x_in, *(ys[i] for i in range(len(self.layers)))] if output_hidden_states else []
    return x, hiddens


# -------------------------------------------------------------------------------------------
# What a downstream head reads of the encoder (SUPERB / ML-SUPERB), and how deep each
# encoder parameter sits (layer-wise learning-rate decay, mlasr.optim).
# -------------------------------------------------------------------------------------------
def layer_logits_param(config: EncoderConfig) -> nnx.Param:
  """Zero logits, one per `layer_hiddens` entry (transformer input + every block): uniform
  softmax weights at init."""
  return nnx.Param(jnp.zeros([config.num_layers + 1], jnp.float32))


def needs_layer_hiddens(layer: int, layer_logits) -> bool:
  """Whether `layer_readout(out, layer, layer_logits)` needs output_hidden_states=True."""
  return layer_logits is not None or layer != -1


def layer_readout(out: EncoderOutput, layer: int = -1, layer_logits=None, *,
                  stop_gradient: bool = False) -> jax.Array:
  """The [B, F, D] representation a downstream head reads of an encoder output.

  layer_logits: a learned softmax-weighted sum of every `layer_hiddens` entry, each first
    normalised (zero mean, unit variance over D, no parameters): pre-LN residual streams grow
    with depth, and SUPERB's featurizer normalises too. `layer` is then ignored.
  layer: else one entry of `layer_hiddens` (0 = transformer input, i = block i's output),
    or -1: `out.hidden`, the encoder's own output (after the final LayerNorm of a pre-LN
    encoder, which `layer_hiddens[num_layers]` is not).
  stop_gradient: no gradient into the encoder (a frozen-encoder probe); the weights still
    get theirs.
  """
  if not needs_layer_hiddens(layer, layer_logits):
    return jax.lax.stop_gradient(out.hidden) if stop_gradient else out.hidden
  if out.layer_hiddens is None:
    raise ValueError("layer_readout of a middle layer or a weighted sum needs the encoder "
                     "called with output_hidden_states=True")
  hiddens = out.layer_hiddens
  if stop_gradient:
    hiddens = [jax.lax.stop_gradient(h) for h in hiddens]
  if layer_logits is None:
    return hiddens[layer]
  stacked = jnp.stack([layers.layer_norm(h, 1.0, 0.0, 1e-5, jnp.float32) for h in hiddens])
  return jnp.einsum("l,lbfd->bfd", jax.nn.softmax(layer_logits[...]), stacked)


# Encoder parameters below the first block (the post-LN input LayerNorm is `layer_norm` too).
_INPUT_SIDE = ("frontend", "feature_layer_norm", "projection", "mask_embedding", "pos_conv")


def layer_depth(name: str, config: EncoderConfig) -> int:
  """How deep encoder parameter `name` sits, 0 .. num_layers + 1.

  `name` is its path inside the encoder ("layers/3/attention/q_kernel", "frontend/..."):
  0 below the first block (front end, feature LayerNorm, projection, mask embedding,
  positional conv, the input LayerNorm of a post-LN encoder), i + 1 for block i, and
  num_layers + 1 above the last block (the final LayerNorm of a pre-LN encoder). Raises
  ValueError for a name it does not know, so a new encoder part must be placed here.
  """
  parts = name.split("/")
  if parts[0] == "layers" and len(parts) > 1 and parts[1].isdigit():
    index = int(parts[1])
    if index >= config.num_layers:
      raise ValueError(f"encoder parameter {name!r}: block {index} of a "
                       f"{config.num_layers}-block encoder")
    return index + 1
  if parts[0] == "layer_norm":
    return config.num_layers + 1 if config.layer_norm_first else 0
  if parts[0] in _INPUT_SIDE:
    return 0
  raise ValueError(f"encoder parameter {name!r} has no layer depth; known parts: layers/<i>, "
                   f"layer_norm, {', '.join(_INPUT_SIDE)} (mlasr/models/encoder.py layer_depth)")
