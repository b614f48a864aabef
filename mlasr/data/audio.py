"""Audio decoding for the corpus loaders: any soundfile format to mono float32 at 16 kHz."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000


class AudioError(Exception):
  """A clip that cannot be used; the message names the file and the reason."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = path
    self.reason = reason


def load_audio(path: str, sr: int = SAMPLE_RATE) -> np.ndarray:
  """Decodes `path` (wav/flac/ogg/mp3) to mono float32 in [-1, 1] at `sr` Hz.

  Raises:
    AudioError: the file is missing, empty (zero bytes or zero samples), undecodable, or
      holds non-finite samples. `reason` is a short machine-readable tag
      ("missing", "empty", "undecodable", "no_samples", "non_finite").
  """
  if not os.path.exists(path):
    raise AudioError(path, "missing")
  if os.path.getsize(path) == 0:
    raise AudioError(path, "empty")
  try:
    data, file_sr = sf.read(path, dtype="float32", always_2d=True)
  except Exception as e:  # libsndfile raises several types (LibsndfileError, RuntimeError).
    raise AudioError(path, f"undecodable ({type(e).__name__}: {e})") from e
  if data.shape[0] == 0:
    raise AudioError(path, "no_samples")
  wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
  if not np.all(np.isfinite(wav)):
    raise AudioError(path, "non_finite")
  if file_sr != sr:
    import soxr  # pylint: disable=g-import-not-at-top  (same resampler librosa uses, no numba)
    wav = soxr.resample(wav, file_sr, sr, quality="HQ")
  return np.clip(wav, -1.0, 1.0).astype(np.float32, copy=False)
