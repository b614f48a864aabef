"""39-d MFCC features (13 cepstra + Δ + ΔΔ) at 100 Hz, in JAX: HuBERT iteration-1 features.

Framing: 25 ms window (400 samples), 10 ms hop (160), no centering/padding, i.e. frames lie
fully inside the signal: `num_frames(n) = floor((n - 400) / 160) + 1` (Kaldi `snip_edges`, as
fairseq's torchaudio-Kaldi MFCC; 0 for n < 400). Spectrum: periodic Hann window, |rfft|^2,
librosa's Slaney mel filterbank (`n_mels` bins, 0..8 kHz), 10 * log10(max(mel, 1e-10)) and an
orthonormal DCT-II, keeping `n_mfcc` coefficients (c0 included). This equals
`librosa.feature.mfcc(S=librosa.power_to_db(melspec, top_db=None), n_mfcc=13, dct_type=2,
norm="ortho")` on `librosa.feature.melspectrogram(n_fft=400, hop_length=160, center=False)`.

Deltas: the regression formula of torchaudio `compute_deltas` / HTK with `delta_width` = 5
(N = 2) and edge replication, which is `librosa.feature.delta(width=5, mode="nearest")`;
ΔΔ is the delta of Δ. In a padded batch, edges replicate the last *real* frame of each row and
padded frames are zero, so a row's features do not depend on how much padding it got.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mlasr import features

SAMPLE_RATE = features.SAMPLE_RATE
_DB = 10.0 / np.log(10.0)


@dataclasses.dataclass(frozen=True)
class MfccConfig:
  sample_rate: int = SAMPLE_RATE
  n_fft: int = 400       # = window length (25 ms)
  hop_length: int = 160  # 10 ms -> 100 Hz
  n_mels: int = 40
  n_mfcc: int = 13
  delta_width: int = 5   # odd; 5 = torchaudio compute_deltas default
  deltas: bool = True    # False: 13-d static cepstra only

  @property
  def dim(self) -> int:
    return self.n_mfcc * (3 if self.deltas else 1)

  @property
  def frame_rate(self) -> float:
    return self.sample_rate / self.hop_length

  @property
  def frame_spec(self) -> features.FrameSpec:
    return features.FrameSpec(((self.n_fft, self.hop_length),), 1)


def num_frames(num_samples, config: MfccConfig = MfccConfig()):
  """floor((n - n_fft) / hop) + 1, clamped at 0 (python int, numpy or jax arrays)."""
  return config.frame_spec.num_frames(num_samples)


@functools.lru_cache(maxsize=4)
def _dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
  """Orthonormal DCT-II as a [n_mels, n_mfcc] matrix (scipy.fft.dct(type=2, norm='ortho'))."""
  n = np.arange(n_mels)
  k = np.arange(n_mfcc)
  m = np.cos(np.pi / n_mels * (n[:, None] + 0.5) * k[None, :]) * np.sqrt(2.0 / n_mels)
  m[:, 0] /= np.sqrt(2.0)
  return m.astype(np.float32)


def deltas(x: jax.Array, lengths: jax.Array, width: int = 5) -> jax.Array:
  """Regression deltas over time of x [B, F, D], replicating each row's last real frame."""
  n = width // 2
  f = x.shape[1]
  t = jnp.arange(f)
  last = jnp.maximum(lengths - 1, 0)[:, None]  # [B, 1]
  out = jnp.zeros_like(x)
  for k in range(1, n + 1):
    ahead = jnp.clip(t[None, :] + k, 0, last)
    behind = jnp.clip(t[None, :] - k, 0, last)
    out = out + k * (jnp.take_along_axis(x, ahead[..., None], axis=1)
                     - jnp.take_along_axis(x, behind[..., None], axis=1))
  return out / (2.0 * sum(k * k for k in range(1, n + 1)))


def mfcc(audio: jax.Array, audio_mask: jax.Array | None = None,
         config: MfccConfig = MfccConfig()) -> tuple[jax.Array, jax.Array]:
  """MFCC(+Δ+ΔΔ) of a right-padded batch.

  Args:
    audio: [B, T] float waveform in [-1, 1] at config.sample_rate.
    audio_mask: [B, T], 1 on real samples (None: all real).
    config: feature settings.

  Returns:
    (features [B, num_frames(T), config.dim] float32 (zero on padded frames),
     frame_mask [B, num_frames(T)] bool).
  """
  audio = jnp.asarray(audio, jnp.float32)
  if audio_mask is None:
    audio_mask = jnp.ones(audio.shape, bool)
  audio_mask = jnp.asarray(audio_mask).astype(bool)
  audio = jnp.where(audio_mask, audio, 0.0)
  lengths = num_frames(audio_mask.sum(-1).astype(jnp.int32), config)
  log_mel = features.log_mel(audio, sample_rate=config.sample_rate, n_fft=config.n_fft,
                             win_length=config.n_fft, hop_length=config.hop_length,
                             n_mels=config.n_mels, log_offset=0.0)
  db = jnp.maximum(log_mel, np.log(1e-10)) * _DB  # = 10 log10(max(mel, 1e-10))
  c = jnp.dot(db, _dct_matrix(config.n_mels, config.n_mfcc),
              precision=jax.lax.Precision.HIGHEST)
  f = c.shape[1]
  mask = features.lengths_to_mask(lengths, f)
  if config.deltas:
    d1 = deltas(c, lengths, config.delta_width)
    d2 = deltas(d1, lengths, config.delta_width)
    c = jnp.concatenate([c, d1, d2], axis=-1)
  return jnp.where(mask[..., None], c, 0.0), mask


mfcc_jit = jax.jit(mfcc, static_argnames="config")


def mfcc_np(wave: np.ndarray, config: MfccConfig = MfccConfig()) -> np.ndarray:
  """MFCCs of one unpadded float waveform -> [num_frames(n), dim] numpy (jit per length)."""
  feats, _ = mfcc_jit(np.asarray(wave, np.float32)[None], None, config)
  return np.asarray(feats[0])
