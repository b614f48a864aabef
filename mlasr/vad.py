"""Voice-activity detection for long recordings: where the speech is, in segments a CTC model
can decode.

Two detectors score fixed frames of 16 kHz audio, streaming (the caller feeds blocks, so an
hour-long file is never held whole; only one score per frame is kept: 31 or 100 floats a
second):
  - "silero": the Silero VAD ONNX model shipped inside the `silero-vad` pip package, run with
    onnxruntime (the package's own Python code imports torch; only its .onnx file is used).
    Its "sequence" export takes a block of 32 ms frames per call and carries the LSTM state
    between calls, giving per-frame speech probabilities equal to the streaming model's.
  - "energy": 10 ms frame energies in dB, thresholded relative to the file's own noise floor
    and speech level; no dependencies, the fallback when onnxruntime or the package is absent.

Both end in the same state machine (`speech_regions`: hysteresis thresholds, minimum speech
and silence, padding); `fit_segments` then merges neighbouring regions and splits long ones at
their quietest frame so that no segment exceeds the length the model was trained on.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Iterable, Sequence

import numpy as np

SAMPLE_RATE = 16000


@dataclasses.dataclass(frozen=True)
class RegionConfig:
  """speech_regions parameters (seconds), the same for both detectors."""
  min_speech: float = 0.25   # shorter speech runs are dropped (clicks, breaths)
  min_silence: float = 0.5   # shorter pauses (between words) do not split a region
  pad: float = 0.1           # context kept each side (CTC needs a little lead-in)


class EnergyVAD:
  """Frame-energy detector: 10 ms frames, thresholds from the file's level statistics.

  A frame is speech when its (50 ms smoothed) level is `rel` of the way from the noise floor
  (10th percentile of frame levels) to the speech level (95th percentile), and at least
  `abs_floor` dBFS; speech ends below that threshold minus `hysteresis` dB. With no contrast
  between floor and speech level (all speech, or stationary noise) frames above `abs_floor`
  count as speech.
  """
  name = "energy"
  frame_samples = 160  # 10 ms

  def __init__(self, rel: float = 0.5, abs_floor: float = -55.0, hysteresis: float = 6.0,
               min_contrast: float = 10.0):
    self.rel, self.abs_floor = rel, abs_floor
    self.hysteresis, self.min_contrast = hysteresis, min_contrast

  def scores(self, blocks: Iterable[np.ndarray]) -> np.ndarray:
    """Frame levels in dBFS (float32, one per 10 ms; the last partial frame included)."""
    powers, carry = [], np.zeros(0, np.float32)
    for block in blocks:
      x = np.concatenate([carry, block]) if len(carry) else block
      n = len(x) // self.frame_samples * self.frame_samples
      if n:
        frames = x[:n].reshape(-1, self.frame_samples).astype(np.float64)
        powers.append(np.mean(frames * frames, axis=1).astype(np.float32))
      carry = x[n:].copy()
    if len(carry):
      powers.append(np.array([np.mean(carry.astype(np.float64) ** 2)], np.float32))
    power = np.concatenate(powers) if powers else np.zeros(0, np.float32)
    if len(power) >= 5:  # 50 ms smoothing: one quiet frame inside a vowel is no pause
      power = np.convolve(power, np.ones(5, np.float32) / 5, mode="same")
    return (10 * np.log10(power + 1e-10)).astype(np.float32)

  def thresholds(self, levels: np.ndarray) -> tuple[float, float]:
    """(on, off) thresholds in dB for this file's levels."""
    if len(levels) == 0:
      return self.abs_floor, self.abs_floor - self.hysteresis
    floor, speech = np.percentile(levels, [10, 95])
    if speech - floor < self.min_contrast:
      on = self.abs_floor
    else:
      on = max(self.abs_floor, floor + self.rel * (speech - floor))
    return float(on), float(on - self.hysteresis)


class SileroVAD:
  """Silero VAD (the ONNX model of the `silero-vad` package) on 32 ms frames at 16 kHz."""
  name = "silero"
  frame_samples = 512
  context_samples = 64  # each frame is scored with the previous frame's last 64 samples
  block_frames = 512    # frames per onnxruntime call (16 s)

  def __init__(self, on: float = 0.5, off: float = 0.35, threads: int = 1):
    import onnxruntime as ort  # pylint: disable=import-outside-toplevel
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    options.log_severity_level = 3  # no onnxruntime warnings in the user's terminal
    self.session = ort.InferenceSession(silero_model_path(), sess_options=options,
                                        providers=["CPUExecutionProvider"])
    self.on, self.off = on, off

  def _run(self, frames: np.ndarray, context: np.ndarray, state):
    contexts = np.concatenate([context[None], frames[:-1, -self.context_samples:]])
    probs, h, c = self.session.run(
        ["speech_probs", "hn", "cn"],
        {"input": np.concatenate([contexts, frames], axis=1), "h": state[0], "c": state[1]})
    return probs.reshape(-1), frames[-1, -self.context_samples:].copy(), (h, c)

  def scores(self, blocks: Iterable[np.ndarray]) -> np.ndarray:
    """Speech probability per 32 ms frame (the last partial frame zero padded)."""
    state = (np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32))
    context = np.zeros(self.context_samples, np.float32)
    out, pending = [], np.zeros(0, np.float32)
    chunk = self.frame_samples * self.block_frames
    for block in blocks:
      pending = np.concatenate([pending, block]) if len(pending) else block
      while len(pending) >= chunk:
        frames = pending[:chunk].reshape(self.block_frames, self.frame_samples)
        probs, context, state = self._run(frames.astype(np.float32), context, state)
        out.append(probs)
        pending = pending[chunk:]
    if len(pending):
      n = -(-len(pending) // self.frame_samples)
      frames = np.zeros((n, self.frame_samples), np.float32)
      frames.reshape(-1)[:len(pending)] = pending
      out.append(self._run(frames, context, state)[0])
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)

  def thresholds(self, probs: np.ndarray) -> tuple[float, float]:
    del probs
    return self.on, self.off


def silero_model_path() -> str:
  """The ONNX file inside the installed `silero-vad` package, found without importing it
  (its __init__ imports torch). Raises ImportError when the package is not installed."""
  spec = importlib.util.find_spec("silero_vad")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("the silero-vad package is not installed (pip install silero-vad "
                      "onnxruntime); use --vad energy")
  path = os.path.join(list(spec.submodule_search_locations)[0], "data",
                      "silero_vad_16k_sequence.onnx")
  if not os.path.exists(path):
    raise ImportError(f"{path} is missing: this silero-vad release has no sequence ONNX "
                      "model (silero-vad >= 6.2 ships it); use --vad energy")
  return path


def make_detector(name: str):
  """"silero", "energy", or "auto" (Silero when onnxruntime and silero-vad are installed)."""
  if name == "auto":
    try:
      return SileroVAD()
    except ImportError:  # no onnxruntime or no silero-vad package: the dependency-free one
      return EnergyVAD()
  if name == "silero":
    return SileroVAD()
  if name == "energy":
    return EnergyVAD()
  raise ValueError(f"unknown VAD {name!r}; use auto, silero or energy")


def speech_regions(scores: np.ndarray, frame_seconds: float, on: float, off: float,
                   total_seconds: float, cfg: RegionConfig = RegionConfig()
                   ) -> list[tuple[float, float]]:
  """Speech (start, end) seconds from per-frame scores.

  A region opens at a frame scoring >= on and closes at the first frame below off
  (hysteresis: a word's quieter tail stays in). Pauses shorter than min_silence are bridged,
  regions shorter than min_speech dropped, and each side padded by pad (at most half the
  silence to the neighbour, so regions never overlap), clipped to [0, total_seconds].
  """
  runs, start = [], None
  for i, s in enumerate(scores):
    if start is None and s >= on:
      start = i
    elif start is not None and s < off:
      runs.append([start, i])
      start = None
  if start is not None:
    runs.append([start, len(scores)])
  min_sil = cfg.min_silence / frame_seconds
  merged = []
  for run in runs:
    if merged and run[0] - merged[-1][1] < min_sil:
      merged[-1][1] = run[1]
    else:
      merged.append(run)
  kept = [(a * frame_seconds, min(b * frame_seconds, total_seconds)) for a, b in merged
          if (b - a) * frame_seconds >= cfg.min_speech]
  out = []
  for k, (a, b) in enumerate(kept):
    left = a - (kept[k - 1][1] if k else 0.0)
    right = (kept[k + 1][0] if k + 1 < len(kept) else total_seconds) - b
    out.append((max(0.0, a - min(cfg.pad, left / 2 if k else left)),
                min(total_seconds, b + min(cfg.pad, right / 2 if k + 1 < len(kept) else right))))
  return out


def fit_segments(regions: Sequence[tuple[float, float]], scores: np.ndarray,
                 frame_seconds: float, max_seconds: float, merge_gap: float = 1.0
                 ) -> list[tuple[float, float]]:
  """Decoding segments of at most max_seconds from speech regions.

  Regions longer than max_seconds are cut at their lowest-scoring frame in the second half of
  the allowed span (the likeliest pause; a hard cut only where the speech never dips).
  Neighbours closer than merge_gap are then joined while the result fits: fewer, longer
  segments give the model more context and waste less padding per batch.
  """
  if max_seconds <= 0:
    raise ValueError(f"max_seconds must be positive, got {max_seconds}")
  pieces = []
  for a, b in regions:
    while b - a > max_seconds:
      lo = int(np.ceil((a + max_seconds / 2) / frame_seconds))
      hi = int((a + max_seconds) / frame_seconds)  # a cut at frame hi ends within the limit
      window = scores[lo:hi]
      cut = (lo + int(np.argmin(window))) * frame_seconds if len(window) else a + max_seconds
      cut = min(max(cut, a + frame_seconds), a + max_seconds)
      pieces.append((a, cut))
      a = cut
    pieces.append((a, b))
  out = []
  for a, b in pieces:
    if out and a - out[-1][1] <= merge_gap and b - out[-1][0] <= max_seconds:
      out[-1] = (out[-1][0], b)
    else:
      out.append((a, b))
  return out
