"""Audio decoding for the corpus loaders: any soundfile format to mono float32 at 16 kHz.

A corpus clip is checked from its header before any sample is decoded: a corrupt header can
claim a 1 Hz sample rate (a second of audio would "resample" to 16,000 s, gigabytes) or
hundreds of channels, and libsndfile believes it. Implausible values, a WAV whose redundant
header fields disagree (libsndfile reads only the rate and bit-depth fields, so a patched one
shows only as a disagreement with the byte rate and block size), and a read that stops short
of the frame count the header states (a truncated MP3 with a Xing/Info frame count, or a WAV
whose data chunk is cut) are refused as AudioError.
"""

from __future__ import annotations

import math
import os
import struct

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
# What a speech clip's header may plausibly claim (telephone speech to studio masters).
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
MAX_CHANNELS = 8
# load_audio's default length limit: no single transcribed utterance is longer, and it bounds
# the memory one decode can take (600 s x 192 kHz x 8 channels of float32 is 3.7 GB).
MAX_SECONDS = 600.0
# A decode this much shorter than the header's frame count is a truncated file. Complete
# files read exactly the stated count (libsndfile's MP3, Vorbis, FLAC and WAV readers).
_SHORT_READ_FRACTION = 0.02
_SHORT_READ_SECONDS = 0.01
# WAVE format tags whose block align is channels x ceil(bits / 8): PCM, IEEE float, A-law,
# mu-law, extensible. Compressed tags (ADPCM, GSM) use other layouts and are not checked.
_WAV_LINEAR_TAGS = (0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE)
_WAV_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # data size of a streamed WAV (written to a pipe)


class AudioError(Exception):
  """A clip that cannot be used; the message names the file and the reason."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = path
    self.reason = reason


def _wav_header_problem(path: str) -> str | None:
  """What is inconsistent in a RIFF/RIFX WAVE header, or None (also for other formats)."""
  with open(path, "rb") as f:
    head = f.read(1 << 16)  # fmt and data chunk headers sit well inside this
  if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
    return None
  endian = "<" if head[:4] == b"RIFF" else ">"
  size = os.path.getsize(path)
  pos, fmt = 12, None
  while pos + 8 <= len(head):
    chunk_id = head[pos:pos + 4]
    (chunk_size,) = struct.unpack_from(endian + "I", head, pos + 4)
    body = pos + 8
    if chunk_id == b"fmt ":
      if chunk_size < 16 or body + 16 > len(head):
        return f"bad_header (WAV fmt chunk of {chunk_size} bytes, at least 16 expected)"
      fmt = struct.unpack_from(endian + "HHIIHH", head, body)
    elif chunk_id == b"data":
      if fmt is None:
        return "bad_header (WAV data chunk before its fmt chunk)"
      if chunk_size not in _WAV_UNKNOWN_SIZES and body + chunk_size > size:
        return (f"truncated (the WAV data chunk declares {chunk_size} bytes, the file holds "
                f"{size - body})")
      break
    pos = body + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes
  if fmt is None:
    return None  # fmt beyond the first 64 KiB (huge LIST chunk): left to libsndfile
  tag, channels, rate, byte_rate, block_align, bits = fmt
  if tag not in _WAV_LINEAR_TAGS:
    return None
  if block_align != channels * math.ceil(bits / 8) or bits == 0:
    return (f"bad_header (WAV block align {block_align} bytes does not fit {channels} "
            f"channel(s) of {bits} bits)")
  if byte_rate != rate * block_align:
    return (f"bad_header (WAV byte rate {byte_rate}/s does not fit {rate} Hz x "
            f"{block_align}-byte frames)")
  return None


def _check_header(f: sf.SoundFile, path: str, max_seconds: float | None) -> None:
  """Refuses implausible header values before anything is decoded."""
  if not MIN_SAMPLE_RATE <= f.samplerate <= MAX_SAMPLE_RATE:
    raise AudioError(path, f"bad_sample_rate ({f.samplerate} Hz in the header; "
                     f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz expected)")
  if not 1 <= f.channels <= MAX_CHANNELS:
    raise AudioError(path, f"bad_channels ({f.channels} in the header; 1-{MAX_CHANNELS} "
                     "expected)")
  if f.frames <= 0:
    raise AudioError(path, "no_samples")
  if max_seconds is not None and f.frames / f.samplerate > max_seconds:
    raise AudioError(path, f"too_long ({f.frames / f.samplerate:.0f} s in the header; at most "
                     f"{max_seconds:.0f} s)")


def _check_file(path: str) -> None:
  """AudioError for a path that is not a non-empty file ("missing", "undecodable", "empty")."""
  if not os.path.exists(path):
    raise AudioError(path, "missing")
  if os.path.isdir(path):
    raise AudioError(path, "undecodable (a directory)")
  if os.path.getsize(path) == 0:
    raise AudioError(path, "empty")


def load_audio(path: str, sr: int = SAMPLE_RATE,
               max_seconds: float | None = MAX_SECONDS) -> np.ndarray:
  """Decodes `path` (wav/flac/ogg/mp3) to mono float32 in [-1, 1] at `sr` Hz.

  Args:
    path: the clip.
    sr: output sample rate.
    max_seconds: longer clips (by their header) are refused before decoding; None: no limit.

  Raises:
    AudioError: the file is missing, empty (zero bytes or zero samples), undecodable, has an
      implausible or inconsistent header, is truncated, is too long, or holds non-finite
      samples. `reason` starts with a short machine-readable tag ("missing", "empty",
      "undecodable", "no_samples", "bad_sample_rate", "bad_channels", "bad_header",
      "too_long", "truncated", "non_finite") followed by details.
  """
  _check_file(path)
  if problem := _wav_header_problem(path):
    raise AudioError(path, problem)
  try:
    with sf.SoundFile(path) as f:
      _check_header(f, path, max_seconds)
      file_sr, frames = f.samplerate, f.frames
      data = f.read(dtype="float32", always_2d=True)
  except (AudioError, MemoryError):
    raise
  except Exception as e:  # libsndfile raises several types (LibsndfileError, RuntimeError).
    raise AudioError(path, f"undecodable ({type(e).__name__}: {e})") from e
  if data.shape[0] == 0:
    raise AudioError(path, "no_samples")
  if frames - data.shape[0] > max(_SHORT_READ_FRACTION * frames, _SHORT_READ_SECONDS * file_sr):
    raise AudioError(path, f"truncated (decoded {data.shape[0]} of the {frames} frames the "
                     "header states)")
  wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
  if not np.all(np.isfinite(wav)):
    raise AudioError(path, "non_finite")
  if file_sr != sr:
    import soxr  # pylint: disable=g-import-not-at-top  (same resampler librosa uses, no numba)
    wav = soxr.resample(wav, file_sr, sr, quality="HQ")
  return np.clip(wav, -1.0, 1.0).astype(np.float32, copy=False)


# -------------------------------------------------------------------------------------------
# Streaming reader for arbitrary user files (mlasr.transcribe): any container and codec, any
# rate and channel count, in bounded memory. load_audio above decodes a corpus clip whole;
# an hour-long recording must not be: at 48 kHz stereo it is 1.4 GB of float32 before any
# conversion. Files are read in blocks (soundfile's frame reads, or an ffmpeg pipe) and each
# block is reduced to one channel and resampled by a streaming soxr resampler, so only a
# block's worth of audio is ever held.
# -------------------------------------------------------------------------------------------
import dataclasses  # pylint: disable=g-import-not-at-top,wrong-import-position
from collections.abc import Iterator  # pylint: disable=g-import-not-at-top,wrong-import-position

BACKENDS = ("auto", "soundfile", "ffmpeg")


@dataclasses.dataclass(frozen=True)
class AudioInfo:
  """What a file holds, before decoding it."""
  path: str
  sample_rate: int
  channels: int
  seconds: float | None  # None when the container does not say (some streams, raw ADTS)
  backend: str           # the reader that will decode it: "soundfile" or "ffmpeg"


def _ffprobe(path: str, before: str = "") -> AudioInfo:
  import json  # pylint: disable=import-outside-toplevel
  import shutil  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  if shutil.which("ffprobe") is None:
    raise AudioError(path, "undecodable (soundfile cannot read it and ffprobe is not "
                     "installed: apt-get install ffmpeg)")
  cmd = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
         "stream=sample_rate,channels,duration:format=duration", "-of", "json", path]
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
  except subprocess.TimeoutExpired as e:
    raise AudioError(path, "undecodable (ffprobe timed out)") from e
  try:
    meta = json.loads(proc.stdout or "{}")
  except json.JSONDecodeError:
    meta = {}
  streams = meta.get("streams") or []
  if proc.returncode != 0 or not streams:
    why = (proc.stderr.strip().splitlines() or ["no audio stream"])[-1]
    raise AudioError(path, f"undecodable ({before}; ffprobe: {why})" if before
                     else f"undecodable (ffprobe: {why})")
  stream = streams[0]
  # Stream duration first; some containers (webm, raw AAC) give only the format's.
  duration = stream.get("duration") or (meta.get("format") or {}).get("duration")
  try:
    seconds = float(duration) if duration not in (None, "N/A") else None
    sample_rate, channels = int(stream["sample_rate"]), int(stream["channels"])
  except (KeyError, TypeError, ValueError) as e:
    raise AudioError(path, f"undecodable (ffprobe gave no rate/channels: {stream})") from e
  if sample_rate <= 0 or channels <= 0:
    raise AudioError(path, f"undecodable (ffprobe: {sample_rate} Hz, {channels} channels)")
  return AudioInfo(path, sample_rate, channels, seconds, "ffmpeg")


def probe_audio(path: str, backend: str = "auto") -> AudioInfo:
  """Sample rate, channels and duration of `path`, and which reader decodes it.

  backend "auto" tries soundfile (libsndfile: wav, flac, ogg/vorbis/opus, mp3, ...) and falls
  back to ffmpeg (m4a/aac, webm, video containers, wma, ...); "soundfile" / "ffmpeg" force one.
  Raises AudioError: "missing", "empty" (zero bytes) or "undecodable (...)".
  """
  if backend not in BACKENDS:
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
  _check_file(path)
  if backend in ("auto", "soundfile"):
    try:
      info = sf.info(path)
      if info.samplerate > 0 and info.channels > 0:
        return AudioInfo(path, int(info.samplerate), int(info.channels),
                         info.frames / info.samplerate if info.frames > 0 else None,
                         "soundfile")
      error = f"soundfile: {info.samplerate} Hz, {info.channels} channels"
    except Exception as e:  # pylint: disable=broad-except  (libsndfile raises several types)
      error = f"soundfile: {e}"
    if backend == "soundfile":
      raise AudioError(path, f"undecodable ({error})")
    return _ffprobe(path, error)
  return _ffprobe(path)


def _soundfile_blocks(path: str, block_frames: int) -> Iterator[np.ndarray]:
  with sf.SoundFile(path) as f:
    while True:
      block = f.read(block_frames, dtype="float32", always_2d=True)
      if block.shape[0] == 0:
        return
      yield block


def _ffmpeg_blocks(info: AudioInfo, block_frames: int) -> Iterator[np.ndarray]:
  """float32 [frames, channels] blocks from an `ffmpeg` pipe, at the file's own rate and
  channel count (so downmixing and resampling are the same code as for soundfile)."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import tempfile  # pylint: disable=import-outside-toplevel
  cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", info.path,
         "-map", "0:a:0", "-vn", "-f", "f32le", "-acodec", "pcm_f32le",
         "-ac", str(info.channels), "-ar", str(info.sample_rate), "pipe:1"]
  # stderr goes to a file, not a pipe: a pipe nobody reads fills up and blocks ffmpeg.
  with tempfile.TemporaryFile() as err:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
    frame_bytes = 4 * info.channels
    try:
      tail = b""
      while True:
        chunk = proc.stdout.read(block_frames * frame_bytes)
        if not chunk:
          break
        chunk = tail + chunk
        usable = len(chunk) // frame_bytes * frame_bytes
        tail = chunk[usable:]
        if usable:
          yield np.frombuffer(chunk[:usable], np.float32).reshape(-1, info.channels)
      code = proc.wait()
      if code != 0:
        err.seek(0)
        lines = err.read().decode("utf-8", "replace").strip().splitlines()
        raise AudioError(info.path, f"undecodable (ffmpeg exit {code}: "
                         f"{lines[-1] if lines else 'no message'})")
    finally:  # also when the consumer stops early: no orphaned ffmpeg
      if proc.poll() is None:
        proc.kill()
        proc.wait()
      proc.stdout.close()


def stream_audio(path: str, sr: int = SAMPLE_RATE, channel: int | None = None,
                 block_seconds: float = 30.0, info: AudioInfo | None = None,
                 backend: str = "auto") -> Iterator[np.ndarray]:
  """Yields mono float32 blocks in [-1, 1] at `sr` Hz, about `block_seconds` each.

  channel: None averages all channels (the same downmix as load_audio), N keeps channel N.
  info: a probe_audio result, to skip probing again.
  Raises AudioError (while iterating too: a file that breaks mid-way) with the reason.
  """
  info = info or probe_audio(path, backend)
  if channel is not None and not 0 <= channel < info.channels:
    raise AudioError(path, f"no channel {channel} (the file has {info.channels})")
  block_frames = max(1, int(block_seconds * info.sample_rate))
  blocks = (_soundfile_blocks(path, block_frames) if info.backend == "soundfile"
            else _ffmpeg_blocks(info, block_frames))
  resampler = None
  if info.sample_rate != sr:
    import soxr  # pylint: disable=import-outside-toplevel
    # The streaming form of the resampler load_audio uses; same quality.
    resampler = soxr.ResampleStream(info.sample_rate, sr, 1, dtype="float32", quality="HQ")
  done = 0
  try:
    for block in blocks:
      wav = block[:, channel] if channel is not None else (
          block.mean(axis=1) if block.shape[1] > 1 else block[:, 0])
      if not np.all(np.isfinite(wav)):
        raise AudioError(path, f"non_finite (at {done / info.sample_rate:.1f} s)")
      done += len(wav)
      if resampler is not None:
        wav = resampler.resample_chunk(np.ascontiguousarray(wav, np.float32))
      if len(wav):
        yield np.clip(wav, -1.0, 1.0).astype(np.float32, copy=False)
    if resampler is not None:
      rest = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
      if len(rest):
        yield np.clip(rest, -1.0, 1.0).astype(np.float32, copy=False)
  except AudioError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (libsndfile errors mid-file)
    raise AudioError(path, f"undecodable at {done / info.sample_rate:.1f} s "
                     f"({type(e).__name__}: {e})") from e
  finally:
    blocks.close()
