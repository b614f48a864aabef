"""Feature arithmetic shared by the front ends (mlasr.models) and the targets (mlasr.targets).

A neutral module: it imports neither, so models and targets both build on it.

- `conv_out_length` / `FrameSpec`: how many frames a stack of VALID windows (kernel, stride)
  followed by frame stacking gives for n samples. `FrameSpec.num_frames` is the one function
  that counts frames: the encoder front ends (`Encoder.frame_spec`), MFCC, BEST-RQ, label
  stores and feature dumps all ask it.
- `mel_filterbank`, `log_mel`: librosa-equal log-mel spectrogram in JAX (center=False).
- `masked_time_norm`, `lengths_to_mask`: per-utterance normalisation over real frames and the
  [B, T] masks of right-padded batches.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

SAMPLE_RATE = 16000


def conv_out_length(n, kernel: int, stride: int):
  """floor((n - kernel) / stride) + 1, clamped at 0 (numpy, jax or python ints)."""
  out = (n - kernel) // stride + 1
  return jnp.maximum(out, 0) if isinstance(out, jax.Array) else np.maximum(out, 0)


@dataclasses.dataclass(frozen=True)
class FrameSpec:
  """Output length of a feature extractor: `conv` (kernel, stride) layers, then `stack`ing."""
  conv: tuple[tuple[int, int], ...] = ((400, 160),)
  stack: int = 1

  @property
  def hop(self) -> int:
    """Samples between consecutive frames (= 16000 / rate)."""
    return int(np.prod([s for _, s in self.conv])) * self.stack

  @property
  def rate(self) -> float:
    return SAMPLE_RATE / self.hop

  def num_frames(self, num_samples):
    """Frames of a clip of `num_samples` samples: a python int for an int, else an array
    (numpy for numpy, jax for jax, so it works inside jit)."""
    n = num_samples if isinstance(num_samples, jax.Array) else np.asarray(num_samples)
    for k, s in self.conv:
      n = conv_out_length(n, k, s)
    n = n // self.stack
    return int(n) if isinstance(n, np.ndarray | np.generic) and np.ndim(n) == 0 else n

  def to_json(self) -> dict:
    return {"conv": [list(c) for c in self.conv], "stack": self.stack}

  @classmethod
  def from_json(cls, d: dict) -> "FrameSpec":
    return cls(conv=tuple(tuple(int(v) for v in c) for c in d["conv"]), stack=int(d["stack"]))


def lengths_to_mask(lengths: jax.Array, max_len: int) -> jax.Array:
  """[B] int lengths -> [B, max_len] bool, True on the first `length` positions."""
  return jnp.arange(max_len)[None, :] < lengths[:, None]


def masked_time_norm(x: jax.Array, mask: jax.Array, eps: float) -> jax.Array:
  """Normalises [B, T, C] per (utterance, channel) over the valid time steps only.

  Rows without any valid step are returned as zeros instead of NaN.
  """
  # Sums are taken of values shifted by the first step: the reduction order changes with the
  # padded length, and summing large raw values made the result depend on it (~1e-5).
  x32 = x.astype(jnp.float32) - x[:, :1].astype(jnp.float32)
  m = mask[..., None].astype(jnp.float32)
  count = jnp.maximum(m.sum(1, keepdims=True), 1.0)
  mean = (x32 * m).sum(1, keepdims=True) / count
  var = (jnp.square(x32 - mean) * m).sum(1, keepdims=True) / count
  return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
  """librosa's (Slaney) mel filterbank [n_fft // 2 + 1, n_mels], computed once."""
  import librosa  # slow first import (numba); only needed when a log-mel model is built

  return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).T.astype(np.float32)


def log_mel(audio: jax.Array, *, sample_rate: int = 16000, n_fft: int = 400,
            win_length: int = 400, hop_length: int = 160, n_mels: int = 80,
            log_offset: float = 1e-6) -> jax.Array:
  """log(mel power spectrogram + offset), frames fully inside the signal (center=False).

  audio [B, T] -> [B, floor((T - win_length) / hop_length) + 1, n_mels]. Equals
  librosa.feature.melspectrogram(n_fft, hop_length, win_length, center=False, power=2).
  """
  if win_length != n_fft:
    raise ValueError(f"win_length ({win_length}) must equal n_fft ({n_fft})")
  b, t = audio.shape
  if t < win_length:
    audio = jnp.pad(audio, ((0, 0), (0, win_length - t)))
    t = win_length
  n_frames = int(conv_out_length(t, win_length, hop_length))
  # Frames as shifted slices of a chunked signal (chunk = gcd(hop, window)): no gather.
  c = int(np.gcd(hop_length, win_length))
  per_hop, per_win = hop_length // c, win_length // c
  n_chunks = (n_frames - 1) * per_hop + per_win
  chunks = audio[:, :n_chunks * c].reshape(b, n_chunks, c)
  frames = jnp.concatenate(
      [chunks[:, j:j + (n_frames - 1) * per_hop + 1:per_hop] for j in range(per_win)], -1)
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)  # periodic hann
  spec = jnp.fft.rfft(frames.astype(jnp.float32) * window.astype(np.float32), n=n_fft)
  power = jnp.square(spec.real) + jnp.square(spec.imag)
  mel = jnp.dot(power, mel_filterbank(sample_rate, n_fft, n_mels),
                precision=jax.lax.Precision.HIGHEST)
  return jnp.log(mel + log_offset)
