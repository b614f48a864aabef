"""Waveform side of the synthetic benchmark: speech engines, noise, resampling and encoding.

Everything here is a pure function of its arguments (seeds included) so that a clip comes out
byte-identical whichever worker makes it and whether or not the build was resumed.
"""

from __future__ import annotations

import functools
import io
import os
import pathlib
import subprocess
import tempfile

import numpy as np
import soundfile as sf
import soxr

from data_prep import espeak_lib
from data_prep import transliterate
from mlasr.data import languages

# Festival voices read 8-bit text in the encoding of their lexicon (measured, see ENVIRONMENT.md).
FESTIVAL_ENCODING = {"cs": "iso-8859-2", "fi": "latin-1", "it": "latin-1", "ca": "latin-1"}
# The Debian packages behind each festival voice the presets use (the Makefile installs them).
# The Indic NSK voices also need their language package, which is only a Recommends.
FESTIVAL_PACKAGES = {
    "kal_diphone": "festvox-kallpc16k", "ked_diphone": "festvox-kdlpc16k",
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts", "lp_diphone": "festvox-italp16k",
    "pc_diphone": "festvox-itapc16k", "upc_ca_ona_hts": "festvox-ca-ona-hts",
    "hy_fi_mv_diphone": "festvox-suopuhe-mv", "suo_fi_lj_diphone": "festvox-suopuhe-lj",
    "czech_dita": "festvox-czech-dita", "czech_ph": "festvox-czech-ph",
    "czech_krb": "festvox-czech-krb", "czech_machac": "festvox-czech-machac",
    "msu_ru_nsh_clunits": "festvox-ru",
    "hindi_NSK_diphone": "festvox-hi-nsk festival-hi",
    "marathi_NSK_diphone": "festvox-mr-nsk festival-mr",
    "telugu_NSK_diphone": "festvox-te-nsk festival-te",
}
_ASCII_PUNCT = str.maketrans({"“": "'", "”": "'", "„": "'", "«": "'", "»": "'", "‘": "'",
                              "’": "'", "—": ",", "–": ",", '"': "'", "\\": " "})


_VOICE_LANGUAGE = {v: l.code for l in languages.LANGUAGES.values() for v in l.festival_voices}


def festival_text(text: str, lang: str, voice: str) -> bytes | None:
  """`text` in language `lang` as bytes festival `voice` can read, or None if it cannot.

  A voice of another language reads a Czech-spelling transliteration (data_prep.transliterate;
  only the Czech voices do this); None when a letter has no encoding for the voice.
  """
  voice_lang = _VOICE_LANGUAGE[voice]
  if voice_lang != lang:
    if voice_lang != "cs":
      raise ValueError(f"festival voice {voice} ({voice_lang}) cannot read {lang} text: only "
                       "Czech voices read other languages, from a Czech-spelling transliteration")
    text = transliterate.czech_spelling(text, lang)
  try:
    return text.translate(_ASCII_PUNCT).encode(FESTIVAL_ENCODING.get(voice_lang, "utf-8"))
  except UnicodeEncodeError:
    return None


def espeak(text: str, voice: str, speed: int, pitch: int, amplitude: int,
           seed: int) -> tuple[np.ndarray, int]:
  return espeak_lib.synthesize_isolated(text, voice, speed=speed, pitch=pitch,
                                        amplitude=amplitude, seed=seed)


def festival_batch(items: list[tuple[bytes, str, float]]) -> list[tuple[np.ndarray, int] | None]:
  """Synthesises (text bytes, voice, duration stretch) items in one festival process.

  Starting festival costs about a second, so a batch shares one process; when the batch script
  fails (festival stops at the first error) the items are retried one by one, and an item that
  still fails comes back as None.
  """
  with tempfile.TemporaryDirectory(prefix="mlasr-fest-") as tmp:
    script = bytearray()
    outs = []
    current = None
    for i, (text, voice, stretch) in enumerate(items):
      out = os.path.join(tmp, f"{i}.wav")
      outs.append(out)
      if (voice, stretch) != current:  # loading a voice takes a while: only when it changes
        script += (f"(voice_{voice})\n(Parameter.set 'Duration_Stretch {stretch:.3f})\n").encode()
        current = (voice, stretch)
      script += b"(utt.save.wave (SynthText \""
      script += text + f"\") \"{out}\" 'riff)\n".encode()
    path = os.path.join(tmp, "batch.scm")
    pathlib.Path(path).write_bytes(bytes(script))
    subprocess.run(["festival", "-b", path], capture_output=True, timeout=600, check=False)
    results: list[tuple[np.ndarray, int] | None] = []
    for out in outs:
      if os.path.exists(out) and os.path.getsize(out) > 44:
        wave, rate = sf.read(out, dtype="float32")
        results.append((wave if wave.ndim == 1 else wave.mean(axis=1), rate))
      else:
        results.append(None)
  if len(items) > 1 and any(r is None for r in results):
    return [r if r is not None else festival_batch([it])[0] for r, it in zip(results, items)]
  return results


# ----------------------------------------------------------------------------------------------
# Noise
# ----------------------------------------------------------------------------------------------
def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
  spec = np.fft.rfft(rng.standard_normal(n))
  f = np.arange(len(spec), dtype=np.float64)
  f[0] = 1.0
  return np.fft.irfft(spec / np.sqrt(f), n)


def babble_noise(n: int, talkers: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
  """Sum of the talker streams, each tiled to `n` samples from a random offset."""
  out = np.zeros(n)
  for stream in talkers:
    reps = -(-(n + len(stream)) // len(stream))
    tiled = np.tile(stream, reps)
    start = int(rng.integers(0, len(stream)))
    out += tiled[start:start + n]
  return out


def add_noise(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
  """Scales `noise` so that speech power / noise power == snr_db (power of the voiced part)."""
  voiced = speech[np.abs(speech) > 1e-4]
  p_speech = float(np.mean(voiced ** 2)) if voiced.size else 0.0
  p_noise = float(np.mean(noise ** 2)) or 1.0
  scale = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
  return speech + scale * noise


# ----------------------------------------------------------------------------------------------
# Encoding
# ----------------------------------------------------------------------------------------------
def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
  return wave if rate == target else soxr.resample(wave, rate, target, quality="HQ")


@functools.lru_cache(maxsize=1)
def _crc_table() -> list[int]:
  table = []
  for i in range(256):
    r = i << 24
    for _ in range(8):
      r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
    table.append(r & 0xFFFFFFFF)
  return table


def _ogg_crc(data: bytes) -> int:
  table, crc = _crc_table(), 0
  for b in data:
    crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ b]
  return crc


def set_ogg_serial(data: bytes, serial: int) -> bytes:
  """Rewrites the stream serial number of every Ogg page (and its CRC).

  libsndfile draws the serial number at random, which would make every build differ bytewise;
  the serial has no meaning for a single-stream file, so a value from the plan is substituted.
  """
  out = bytearray(data)
  pos = 0
  while pos < len(out):
    if out[pos:pos + 4] != b"OggS":
      raise ValueError(f"not an Ogg page at byte {pos}")
    nseg = out[pos + 26]
    size = 27 + nseg + sum(out[pos + 27:pos + 27 + nseg])
    out[pos + 14:pos + 18] = serial.to_bytes(4, "little")
    out[pos + 22:pos + 26] = b"\0\0\0\0"
    out[pos + 22:pos + 26] = _ogg_crc(bytes(out[pos:pos + size])).to_bytes(4, "little")
    pos += size
  return bytes(out)


def encode(wave: np.ndarray, rate: int, fmt: str, serial: int = 0) -> bytes:
  """MP3 (Common Voice) or OGG/Vorbis (VoxPopuli) bytes of a mono float waveform."""
  buf = io.BytesIO()
  if fmt == "mp3":
    sf.write(buf, wave.astype(np.float32), rate, format="MP3", subtype="MPEG_LAYER_III")
    return buf.getvalue()
  sf.write(buf, wave.astype(np.float32), rate, format="OGG", subtype="VORBIS")
  return set_ogg_serial(buf.getvalue(), serial)


def write_atomic(path: pathlib.Path, data: bytes) -> None:
  """Writes via a temporary file and rename, so an interrupted build never leaves half a clip."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  tmp.write_bytes(data)
  os.replace(tmp, path)
