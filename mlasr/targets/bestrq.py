"""BEST-RQ targets (Chiu et al. 2022): a frozen random-projection quantizer on stacked log-mel.

    cfg = BestRQConfig(stack=4)                     # 4 x 10 ms -> 40 ms, 25 Hz labels
    targets, mask = bestrq_targets(audio, audio_mask, cfg)   # inside the jitted train step

Pure function of (audio, config): the projection and codebook are drawn from `config.seed`
(jax.random, so the same on every host and device) and never trained: no k-means, no
iteration, no dumping. Steps: log-mel exactly as the log-mel front end of mlasr.models
(`mlasr.features.log_mel`: 25 ms / 10 ms, center=False, 80 Slaney mel bins) -> per-utterance
mean/variance normalisation over real frames (as the front end's "utterance" norm) -> stack
`stack` consecutive frames (drop the remainder, as the "stack" subsampler) -> x @ P with P
[stack * n_mels, proj_dim] Xavier(Glorot)-normal -> l2-normalise -> argmax cosine similarity
against `codebook_size` random unit-norm codewords.

Frame counts: labels per clip = floor(mel_frames / stack) with mel_frames = floor((n - 400)
/ 160) + 1, i.e. exactly the frames of a log-mel encoder with logmel_subsample == stack and the
stack subsampler (label_rate 100 / stack Hz). For other encoders use align.align_targets.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from mlasr import features


@dataclasses.dataclass(frozen=True)
class BestRQConfig:
  stack: int = 4             # 10 ms frames per label: 4 -> 25 Hz
  n_mels: int = 80
  proj_dim: int = 16
  codebook_size: int = 8192
  seed: int = 0
  normalize: bool = True     # per-utterance mean/var of the log-mel bins (padding-aware)
  sample_rate: int = 16000
  n_fft: int = 400
  hop_length: int = 160

  @property
  def label_rate(self) -> float:
    return self.sample_rate / (self.hop_length * self.stack)

  @property
  def frame_spec(self) -> features.FrameSpec:
    return features.FrameSpec(((self.n_fft, self.hop_length),), self.stack)

  def num_labels(self, num_samples):
    return self.frame_spec.num_frames(num_samples)


@functools.partial(jax.jit, static_argnames="config")
def quantizer(config: BestRQConfig) -> tuple[jax.Array, jax.Array]:
  """(projection [stack * n_mels, proj_dim], unit-norm codebook [codebook_size, proj_dim])."""
  k_proj, k_code = jax.random.split(jax.random.key(config.seed))
  proj = jax.nn.initializers.glorot_normal()(k_proj, (config.stack * config.n_mels,
                                                      config.proj_dim), jnp.float32)
  code = jax.random.normal(k_code, (config.codebook_size, config.proj_dim), jnp.float32)
  return proj, code / jnp.linalg.norm(code, axis=-1, keepdims=True)


def bestrq_targets(audio: jax.Array, audio_mask: jax.Array | None = None,
                   config: BestRQConfig = BestRQConfig()) -> tuple[jax.Array, jax.Array]:
  """Codeword ids of a right-padded batch.

  Args:
    audio: [B, T] float waveform at 16 kHz.
    audio_mask: [B, T], 1 on real samples (None: all real).
    config: quantizer settings (hashable: pass it as a static/closure value under jit).

  Returns:
    (targets [B, F] int32 with -1 on padded frames, mask [B, F] bool) with
    F = floor(mel_frames(T) / stack).
  """
  audio = jnp.asarray(audio, jnp.float32)
  if audio_mask is None:
    audio_mask = jnp.ones(audio.shape, bool)
  audio_mask = jnp.asarray(audio_mask).astype(bool)
  audio = jnp.where(audio_mask, audio, 0.0)
  n = audio_mask.sum(-1).astype(jnp.int32)
  feats = features.log_mel(audio, sample_rate=config.sample_rate, n_fft=config.n_fft,
                           win_length=config.n_fft, hop_length=config.hop_length,
                           n_mels=config.n_mels)
  mel_len = features.FrameSpec(((config.n_fft, config.hop_length),), 1).num_frames(n)
  mel_mask = features.lengths_to_mask(mel_len, feats.shape[1])
  if config.normalize:
    feats = features.masked_time_norm(feats, mel_mask, 1e-5)
  feats = jnp.where(mel_mask[..., None], feats, 0.0)
  b, m, d = feats.shape
  f = m // config.stack
  x = feats[:, :f * config.stack].reshape(b, f, config.stack * d)
  proj, code = quantizer(config)
  z = jnp.dot(x, proj, precision=jax.lax.Precision.HIGHEST)
  z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
  ids = jnp.argmax(jnp.dot(z, code.T, precision=jax.lax.Precision.HIGHEST), -1)
  mask = features.lengths_to_mask(config.num_labels(n), f)
  return jnp.where(mask, ids, -1).astype(jnp.int32), mask
