"""Front ends that turn a padded waveform batch into frame features for the encoder.

- `WaveformFrontend`: the wav2vec 2.0 / HuBERT 7-layer conv feature extractor
  ("default" = GroupNorm after the first conv only, "layer_norm" = LayerNorm after every conv).
- `LogMelFrontend`: 80-bin log-mel (25 ms / 10 ms at 16 kHz) computed in JAX, mean/var
  normalised honouring padding, subsampled by frame stacking (default) or a 2-layer conv2d.

Both return `(features [B, F, C], frame_mask [B, F])` and expose `frame_spec`
(mlasr.features.FrameSpec), whose `num_frames(num_samples)` (= `frame_lengths(num_samples)`)
gives exactly the number of output frames that only see real samples.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from mlasr import features
from mlasr.features import conv_out_length, lengths_to_mask, masked_time_norm, mel_filterbank
from mlasr.models import layers


def strided_conv1d(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
  """VALID strided 1-D conv as reshape + concat + one matmul (no XLA conv).

  x: [B, T, Cin], w: [K, Cin, Cout] -> [B, floor((T - K) / stride) + 1, Cout].
  Each output frame needs ceil(K / stride) consecutive stride-sized chunks of the input.
  """
  k, cin, cout = w.shape
  b, t, _ = x.shape
  t_out = (t - k) // stride + 1
  chunks = -(-k // stride)
  need = (t_out - 1 + chunks) * stride
  x = jnp.pad(x, ((0, 0), (0, need - t), (0, 0))) if need > t else x[:, :need]
  x = x.reshape(b, t_out - 1 + chunks, stride * cin)
  x = jnp.concatenate([x[:, j:j + t_out] for j in range(chunks)], axis=-1)
  if chunks * stride != k:
    x = x[..., :k * cin]
  return jnp.dot(x, w.reshape(k * cin, cout))


def strided_conv1d_xla(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
  return jax.lax.conv_general_dilated(x, w, (stride,), "VALID",
                                      dimension_numbers=("NWC", "WIO", "NWC"))


class WaveformFrontend(nnx.Module):
  """7-layer conv waveform feature extractor of wav2vec 2.0 / HuBERT."""

  def __init__(self, cfg, *, rngs: nnx.Rngs):
    if cfg.extractor_mode not in ("default", "layer_norm"):
      raise ValueError(f"extractor_mode must be 'default' or 'layer_norm', got "
                       f"{cfg.extractor_mode!r}")
    if not len(cfg.conv_dim) == len(cfg.conv_kernel) == len(cfg.conv_stride):
      raise ValueError(f"conv_dim/conv_kernel/conv_stride lengths differ: {cfg.conv_dim}, "
                       f"{cfg.conv_kernel}, {cfg.conv_stride}")
    if cfg.conv_impl not in ("xla", "matmul"):
      raise ValueError(f"conv_impl must be 'xla' or 'matmul', got {cfg.conv_impl!r}")
    self.cfg = cfg
    dtype = cfg.compute_dtype
    kernels, biases, scales, shifts = [], [], [], []
    cin = 1
    for i, (cout, k) in enumerate(zip(cfg.conv_dim, cfg.conv_kernel)):
      init = jax.nn.initializers.he_normal(in_axis=(0, 1), out_axis=2)
      kernels.append(layers.param(init, rngs.params(), (k, cin, cout),
                                  (None, "conv_in", "conv_out")))
      if cfg.conv_bias:
        biases.append(layers.param(jax.nn.initializers.zeros, rngs.params(), (cout,),
                                   ("conv_out",)))
      if cfg.extractor_mode == "layer_norm" or i == 0:
        scales.append(layers.param(jax.nn.initializers.ones, rngs.params(), (cout,), ("norm",)))
        shifts.append(layers.param(jax.nn.initializers.zeros, rngs.params(), (cout,),
                                   ("norm",)))
      cin = cout
    self.kernels = nnx.List(kernels)
    self.biases = nnx.List(biases)
    self.norm_scales = nnx.List(scales)
    self.norm_biases = nnx.List(shifts)
    self.dtype = dtype

  @property
  def out_dim(self) -> int:
    return self.cfg.conv_dim[-1]

  @property
  def frame_spec(self) -> features.FrameSpec:
    return features.FrameSpec(tuple(zip(self.cfg.conv_kernel, self.cfg.conv_stride)), 1)

  def frame_lengths(self, num_samples):
    return self.frame_spec.num_frames(num_samples)

  def __call__(self, audio: jax.Array, audio_mask: jax.Array, deterministic: bool = True):
    del deterministic  # no dropout in the conv stack
    cfg = self.cfg
    conv = strided_conv1d if cfg.conv_impl == "matmul" else strided_conv1d_xla
    num_samples = audio_mask.sum(-1).astype(jnp.int32)
    x = jnp.where(audio_mask, audio, 0)
    if cfg.normalize_waveform:
      x = normalize_waveform(x, audio_mask)
    x = x.astype(self.dtype)[..., None]  # [B, T, 1]
    for i, (k, s) in enumerate(zip(cfg.conv_kernel, cfg.conv_stride)):
      x = conv(x, self.kernels[i][...].astype(self.dtype), s)
      if cfg.conv_bias:
        x = x + self.biases[i][...].astype(self.dtype)
      if cfg.extractor_mode == "layer_norm":
        x = _affine(_layer_norm(x, 1e-5), self.norm_scales[i], self.norm_biases[i])
      elif i == 0:
        # GroupNorm with one group per channel = per-channel norm over time. transformers
        # takes statistics over padding too; masked_group_norm=True makes it pad-invariant.
        first = features.FrameSpec(((k, s),), 1)
        valid = (lengths_to_mask(first.num_frames(num_samples), x.shape[1])
                 if cfg.masked_group_norm else jnp.ones(x.shape[:2], bool))
        x = _affine(masked_time_norm(x, valid, 1e-5), self.norm_scales[0],
                    self.norm_biases[0])
      x = layers.gelu(x)
    return x, lengths_to_mask(self.frame_spec.num_frames(num_samples), x.shape[1])


def normalize_waveform(audio: jax.Array, audio_mask: jax.Array) -> jax.Array:
  """(x - mean) / sqrt(var + 1e-7) over each utterance's real samples, padding stays 0.

  What transformers' Wav2Vec2FeatureExtractor(do_normalize=True) does to every clip before
  the model sees it; folded into the model so imported checkpoints get the input they expect.
  """
  m = audio_mask.astype(jnp.float32)
  x = audio.astype(jnp.float32)
  count = jnp.maximum(m.sum(-1, keepdims=True), 1.0)
  mean = (x * m).sum(-1, keepdims=True) / count
  var = (jnp.square(x - mean) * m).sum(-1, keepdims=True) / count
  return jnp.where(audio_mask, (x - mean) * jax.lax.rsqrt(var + 1e-7), 0.0)


def _layer_norm(x: jax.Array, eps: float) -> jax.Array:
  x32 = x.astype(jnp.float32)
  mean = x32.mean(-1, keepdims=True)
  var = jnp.square(x32 - mean).mean(-1, keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def _affine(x, scale, bias):
  return x * scale[...].astype(x.dtype) + bias[...].astype(x.dtype)


class SpecAugment(NamedTuple):
  """Frequency and adaptive time masking of [B, T, F] features (masked values set to 0, the
  mean of utterance-normalised features).

  Each of `freq_masks` masks has a width drawn uniformly from [0, freq_width] and a start from
  [0, F - width]; an utterance of L frames gets min(max_time_masks, floor(time_mask_rate * L))
  time masks, each of width uniform in [0, floor(time_width_ratio * L)] starting in
  [0, L - width], so padding is never masked and short utterances are masked less.
  """
  freq_masks: int
  freq_width: int
  time_mask_rate: float
  time_width_ratio: float
  max_time_masks: int

  @classmethod
  def from_encoder_config(cls, cfg) -> "SpecAugment | None":
    out = cls(int(cfg.specaug_freq_masks), int(cfg.specaug_freq_width),
              float(cfg.specaug_time_mask_rate), float(cfg.specaug_time_width_ratio),
              int(cfg.specaug_max_time_masks))
    return out if out.freq_masks > 0 or out.time_mask_rate > 0 else None

  def masks(self, key: jax.Array, shape: tuple[int, int, int], lengths: jax.Array):
    """(freq_mask [B, F], time_mask [B, T]) booleans, True where masked."""
    b, t, f = shape
    kfw, kf0, ktw, kt0 = jax.random.split(key, 4)

    def spans(kw, k0, count, max_width, extent, size):
      # width ~ U{0..max_width}, start ~ U{0..extent - width}; [B, count] each.
      width = jnp.floor(jax.random.uniform(kw, (b, count)) * (max_width[:, None] + 1))
      start = jnp.floor(jax.random.uniform(k0, (b, count)) *
                        (extent[:, None] - width + 1))
      pos = jnp.arange(size, dtype=jnp.float32)[None, None, :]
      return (pos >= start[..., None]) & (pos < (start + width)[..., None])  # [B, count, size]

    freq = jnp.zeros((b, f), bool)
    if self.freq_masks > 0:
      width = jnp.full((b,), min(self.freq_width, f), jnp.float32)
      freq = spans(kfw, kf0, self.freq_masks, width, jnp.full((b,), f, jnp.float32), f).any(1)
    time = jnp.zeros((b, t), bool)
    if self.time_mask_rate > 0 and self.max_time_masks > 0:
      length = lengths.astype(jnp.float32)
      count = jnp.minimum(jnp.floor(self.time_mask_rate * length), self.max_time_masks)
      width = jnp.floor(self.time_width_ratio * length)
      m = spans(ktw, kt0, self.max_time_masks, width, length, t)
      active = jnp.arange(self.max_time_masks)[None, :] < count[:, None]
      time = (m & active[..., None]).any(1)
    return freq, time

  def __call__(self, key: jax.Array, feats: jax.Array, lengths: jax.Array) -> jax.Array:
    freq, time = self.masks(key, feats.shape, lengths)
    return jnp.where(freq[:, None, :] | time[:, :, None], jnp.zeros((), feats.dtype), feats)


class LogMelFrontend(nnx.Module):
  """Log-mel features + normalisation + ×2/×4 subsampling (frame stacking or conv2d)."""

  def __init__(self, cfg, *, rngs: nnx.Rngs):
    if cfg.logmel_subsample not in (2, 4):
      raise ValueError(f"logmel_subsample must be 2 or 4, got {cfg.logmel_subsample}")
    if cfg.logmel_norm == "global":
      raise ValueError("logmel_norm='global' is no longer supported: nothing computed its "
                       "corpus statistics nor saved them with a checkpoint. Use 'utterance' "
                       "(per-utterance mean/variance, the default) or 'none'.")
    if cfg.logmel_norm not in ("utterance", "none"):
      raise ValueError(f"logmel_norm must be utterance|none, got {cfg.logmel_norm!r}")
    if cfg.subsampler not in ("stack", "conv2d"):
      raise ValueError(f"subsampler must be 'stack' or 'conv2d', got {cfg.subsampler!r}")
    self.cfg = cfg
    self.dtype = cfg.compute_dtype
    mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels)  # fail early if librosa is missing
    self.specaug = SpecAugment.from_encoder_config(cfg)
    if self.specaug is not None:
      # Forked from "dropout": nnx.reseed(model, dropout=...) in the update step fixes the
      # masks as a function of (seed, step), as it does for dropout.
      self.specaug_rngs = rngs["dropout"].fork()
    if cfg.subsampler == "conv2d":
      ch = cfg.subsampler_channels
      init = jax.nn.initializers.he_normal(in_axis=(0, 1, 2), out_axis=3)
      self.conv1 = layers.param(init, rngs.params(), (3, 3, 1, ch),
                                (None, None, "conv_in", "conv_out"))
      self.conv2 = layers.param(init, rngs.params(), (3, 3, ch, ch),
                                (None, None, "conv_in", "conv_out"))
      self.conv1_bias = layers.param(jax.nn.initializers.zeros, rngs.params(), (ch,),
                                     ("conv_out",))
      self.conv2_bias = layers.param(jax.nn.initializers.zeros, rngs.params(), (ch,),
                                     ("conv_out",))

  @property
  def out_dim(self) -> int:
    cfg = self.cfg
    if cfg.subsampler == "stack":
      return cfg.n_mels * cfg.logmel_subsample
    return cfg.subsampler_channels * int(conv_out_length(conv_out_length(cfg.n_mels, 3, 2), 3, 2))

  @property
  def mel_spec(self) -> features.FrameSpec:
    """Frames of the log-mel spectrogram, before subsampling (100 Hz)."""
    return features.FrameSpec(((self.cfg.win_length, self.cfg.hop_length),), 1)

  @property
  def frame_spec(self) -> features.FrameSpec:
    cfg = self.cfg
    mel = (cfg.win_length, cfg.hop_length)
    if cfg.subsampler == "stack":
      return features.FrameSpec((mel,), cfg.logmel_subsample)
    return features.FrameSpec((mel, (3, 2), (3, cfg.logmel_subsample // 2)), 1)

  def frame_lengths(self, num_samples):
    return self.frame_spec.num_frames(num_samples)

  def __call__(self, audio: jax.Array, audio_mask: jax.Array, deterministic: bool = True):
    cfg = self.cfg
    audio = jnp.where(audio_mask, audio, 0)
    lengths = audio_mask.sum(-1).astype(jnp.int32)
    feats = features.log_mel(audio, sample_rate=cfg.sample_rate, n_fft=cfg.n_fft,
                             win_length=cfg.win_length, hop_length=cfg.hop_length,
                             n_mels=cfg.n_mels)
    mel_mask = lengths_to_mask(self.mel_spec.num_frames(lengths), feats.shape[1])
    if cfg.logmel_norm == "utterance":
      feats = masked_time_norm(feats, mel_mask, 1e-5)
    if self.specaug is not None and not deterministic:
      feats = self.specaug(self.specaug_rngs(), feats, self.mel_spec.num_frames(lengths))
    feats = jnp.where(mel_mask[..., None], feats, 0).astype(self.dtype)
    b, f, m = feats.shape
    s = cfg.logmel_subsample
    if cfg.subsampler == "stack":
      f_out = f // s
      x = feats[:, :f_out * s].reshape(b, f_out, s * m)
    else:
      dn = ("NHWC", "HWIO", "NHWC")
      x = jax.lax.conv_general_dilated(feats[..., None], self.conv1[...].astype(self.dtype),
                                       (2, 2), "VALID", dimension_numbers=dn)
      x = jax.nn.relu(x + self.conv1_bias[...].astype(self.dtype))
      x = jax.lax.conv_general_dilated(x, self.conv2[...].astype(self.dtype), (s // 2, 2),
                                       "VALID", dimension_numbers=dn)
      x = jax.nn.relu(x + self.conv2_bias[...].astype(self.dtype))
      x = x.reshape(b, x.shape[1], x.shape[2] * x.shape[3])  # [B, F', freq * ch]
    return x, lengths_to_mask(self.frame_spec.num_frames(lengths), x.shape[1])
