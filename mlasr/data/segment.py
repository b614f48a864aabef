"""Cutting unlabeled recordings into pretraining segments (tfds_builder, unlabeled sources).

A recording (any length, any format mlasr.data.audio streams) becomes segments of at most
`window_seconds`, deterministically:
  - "fixed" (the default): consecutive windows from the start; the remainder after the last
    full window is a segment of its own when it is at least `min_seconds` long, else it is
    left out (`short_remainder`); a recording shorter than `min_seconds` is one piece left out
    (`too_short`). As fairseq's wav2vec 2.0 / HuBERT pretraining, which drops clips under
    min_sample_size (32,000 samples, 2 s) and crops the rest to max_sample_size (~15.6 s).
  - "vad_energy" / "vad_silero": the speech regions of mlasr.vad (the detectors and region
    logic mlasr.transcribe uses), split at their quietest frame to fit the window and merged
    across short pauses (vad.fit_segments); pieces under min_seconds are left out
    (`vad_too_short`), non-speech is left out as seconds (`non_speech`), and a recording
    without speech is one piece left out (`no_speech`).
Kept segments that are digital silence are left out (`audio_silent`). Every left-out piece is
counted in the data report by reason, and its seconds too, so that kept + left out seconds =
decoded seconds per source (DataReport.segmentation).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import numpy as np

from mlasr.data import audio as audio_lib

SAMPLE_RATE = audio_lib.SAMPLE_RATE
SEGMENTERS = ("fixed", "vad_energy", "vad_silero")
# Peak at or below this (int16 units) is digital silence (tfds_builder.SILENCE_PEAK).
SILENCE_PEAK = 3


@dataclasses.dataclass(frozen=True)
class SegmentConfig:
  """How unlabeled recordings are cut (config.data.unlabeled)."""
  segment: str = "fixed"           # "fixed" | "vad_energy" | "vad_silero"
  window_seconds: float = 15.0     # longest segment (fairseq max_sample_size: 250k samples)
  min_seconds: float = 2.0         # shorter pieces are left out (fairseq min_sample_size)
  # Longer recordings are refused before decoding (`audio_too_long`): one recording is held
  # whole as int16 while it is cut (4 h: 460 MB).
  max_recording_seconds: float = 4 * 3600.0

  def __post_init__(self):
    if self.segment not in SEGMENTERS:
      raise ValueError(f"config.data.unlabeled.segment={self.segment!r}; use one of "
                       f"{SEGMENTERS}")
    # At least 0.1 s (tfds_builder.MIN_SECONDS): segment ids carry the start to 10 ms.
    if not 0.1 <= self.min_seconds <= self.window_seconds:
      raise ValueError(f"config.data.unlabeled: need 0.1 <= min_seconds ({self.min_seconds}) "
                       f"<= window_seconds ({self.window_seconds})")

  @classmethod
  def from_dict(cls, d: dict[str, Any] | None) -> "SegmentConfig":
    return cls(**dict(d or {}))

  def options(self) -> dict[str, Any]:
    """What changes the segments, written to prepare_options.json (a mismatch is refused)."""
    return {"segment": self.segment, "window_seconds": float(self.window_seconds),
            "min_seconds": float(self.min_seconds),
            "max_recording_seconds": float(self.max_recording_seconds)}


@dataclasses.dataclass
class Piece:
  """One piece of a recording: kept (reason None) or left out by `reason`."""
  start: int  # samples at 16 kHz
  end: int
  reason: str | None = None

  @property
  def seconds(self) -> float:
    return (self.end - self.start) / SAMPLE_RATE


def fixed_windows(num_samples: int, window: int, min_len: int) -> list[Piece]:
  """Consecutive windows of `window` samples; the remainder kept when >= min_len (see the
  module doc). Pieces tile [0, num_samples) exactly."""
  if num_samples <= 0:
    return []
  if num_samples < min_len:
    return [Piece(0, num_samples, "too_short")]
  out = [Piece(s, s + window) for s in range(0, num_samples - window + 1, window)]
  start = len(out) * window
  if start < num_samples:
    out.append(Piece(start, num_samples, None if num_samples - start >= min_len
                     else "short_remainder"))
  return out


def vad_pieces(pcm: np.ndarray, cfg: SegmentConfig, detector=None) -> list[Piece]:
  """Speech segments of `pcm` (int16, 16 kHz) by mlasr.vad; pieces under min_seconds are
  left out (vad_too_short), a recording without speech is one no_speech piece."""
  from mlasr import vad as vad_lib  # pylint: disable=import-outside-toplevel
  detector = detector or vad_lib.make_detector(cfg.segment.split("_", 1)[1])
  n = len(pcm)
  scores = detector.scores(_float_blocks(pcm))
  frame_seconds = detector.frame_samples / SAMPLE_RATE
  on, off = detector.thresholds(scores)
  regions = vad_lib.speech_regions(scores, frame_seconds, on, off, n / SAMPLE_RATE)
  segments = vad_lib.fit_segments(regions, scores, frame_seconds, cfg.window_seconds)
  out = []
  for a, b in segments:
    start = max(0, int(round(a * SAMPLE_RATE)))
    end = min(n, int(round(b * SAMPLE_RATE)), start + int(round(cfg.window_seconds *
                                                                SAMPLE_RATE)))
    if out and start < out[-1].end:
      start = out[-1].end
    if end <= start:
      continue
    out.append(Piece(start, end, None if end - start >= cfg.min_seconds * SAMPLE_RATE
                     else "vad_too_short"))
  return out or ([Piece(0, n, "no_speech")] if n else [])


def _float_blocks(pcm: np.ndarray, block: int = 30 * SAMPLE_RATE) -> Iterator[np.ndarray]:
  for s in range(0, len(pcm), block):
    yield pcm[s:s + block].astype(np.float32) / 32767.0


def cut(pcm: np.ndarray, cfg: SegmentConfig, detector=None) -> list[Piece]:
  """The pieces of a decoded recording (int16), digital-silence segments left out."""
  if cfg.segment == "fixed":
    pieces = fixed_windows(len(pcm), int(round(cfg.window_seconds * SAMPLE_RATE)),
                           int(round(cfg.min_seconds * SAMPLE_RATE)))
  else:
    pieces = vad_pieces(pcm, cfg, detector)
  for p in pieces:
    if p.reason is None and int(np.abs(pcm[p.start:p.end].astype(np.int32)).max()) <= SILENCE_PEAK:
      p.reason = "audio_silent"
  return pieces


def left_out_seconds(pieces: list[Piece], num_samples: int) -> dict[str, float]:
  """Seconds left out by reason; what no piece covers (VAD non-speech) is `non_speech`."""
  out: dict[str, float] = {}
  for p in pieces:
    if p.reason is not None:
      out[p.reason] = out.get(p.reason, 0.0) + p.seconds
  gap = num_samples - sum(p.end - p.start for p in pieces)
  if gap > 0:
    out["non_speech"] = out.get("non_speech", 0.0) + gap / SAMPLE_RATE
  return out


def decode_recording(path: str, cfg: SegmentConfig) -> np.ndarray:
  """A whole recording as int16 PCM at 16 kHz, streamed in blocks (a 48 kHz stereo hour is
  never held as float). Raises audio_lib.AudioError with the reason: an implausible header
  (rate, channels), longer than cfg.max_recording_seconds (`too_long`), a decode that stops
  short of the length the header states (`truncated`), or the reader's own errors."""
  if problem := audio_lib._wav_header_problem(path):  # pylint: disable=protected-access
    raise audio_lib.AudioError(path, problem)
  info = audio_lib.probe_audio(path)
  if not audio_lib.MIN_SAMPLE_RATE <= info.sample_rate <= audio_lib.MAX_SAMPLE_RATE:
    raise audio_lib.AudioError(path, f"bad_sample_rate ({info.sample_rate} Hz)")
  if not 1 <= info.channels <= audio_lib.MAX_CHANNELS:
    raise audio_lib.AudioError(path, f"bad_channels ({info.channels})")
  if info.seconds is not None and info.seconds > cfg.max_recording_seconds:
    raise audio_lib.AudioError(path, f"too_long ({info.seconds:.0f} s; at most "
                               f"{cfg.max_recording_seconds:.0f} s, "
                               "config.data.unlabeled.max_recording_seconds)")
  blocks = [(b * 32767.0).round().astype(np.int16)
            for b in audio_lib.stream_audio(path, SAMPLE_RATE, info=info)]
  pcm = np.concatenate(blocks) if blocks else np.zeros(0, np.int16)
  if not len(pcm):
    raise audio_lib.AudioError(path, "no_samples")
  if info.seconds is not None:
    decoded = len(pcm) / SAMPLE_RATE
    if decoded < info.seconds - max(0.02 * info.seconds, 0.05):
      raise audio_lib.AudioError(path, f"truncated (decoded {decoded:.2f} of the "
                                 f"{info.seconds:.2f} s the header states)")
  return pcm
