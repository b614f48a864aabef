"""Waveform augmentation on the host, applied to training batches by mlasr.data.pipeline.

What the speech toolkits' recipes use (Kaldi, ESPnet, NeMo, SpeechBrain, Lhotse), each off by
default and switched on in `config.data.augment`:

- speed perturbation (Ko et al. 2015): resample by a factor from (0.9, 1.0, 1.1), which changes
  tempo and pitch together, as Kaldi's `sox speed` does; or tempo only (phase vocoder);
- additive noise at a random SNR from a pool: any directory tree of noise recordings (the MUSAN
  layout `musan/noise/**/*.wav` works unchanged) plus noise generated here (white, pink, brown);
- babble: the sum of 3-7 other utterances of the same batch, at a random SNR;
- reverberation: convolution with a room impulse response, either simulated (pyroomacoustics'
  image-source method in random shoebox rooms, a pool computed once per seed and cached) or
  measured (any directory of RIR recordings);
- channel: band limiting (telephone-like band-pass), resampling through a lower rate, gain and
  clipping.

SpecAugment works on log-mel features and therefore runs on device, inside the model
(`mlasr/models/frontends.py`, `EncoderConfig.specaugment`).

Every draw comes from `np.random.default_rng([seed, step, shard, row, tag])`, so a batch is a
pure function of (seed, step, host) and resumed or multi-host runs see exactly the augmentation
an uninterrupted run would.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import pathlib
import threading
from collections.abc import Sequence

import numpy as np
import soxr

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
_EPS = 1e-10


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Probabilities are per utterance; ranges are (low, high) drawn uniformly."""
  speed_factors: tuple[float, ...] = ()     # e.g. (0.9, 1.0, 1.1); () = off
  speed_mode: str = "resample"              # "resample" (speed: tempo + pitch) | "tempo"
  noise_prob: float = 0.0
  noise_dirs: tuple[str, ...] = ()          # directories of noise files (MUSAN layout works)
  noise_kinds: tuple[str, ...] = ("white", "pink", "brown")  # generated noise, mixed with files
  noise_snr_db: tuple[float, float] = (0.0, 20.0)
  babble_prob: float = 0.0
  babble_talkers: tuple[int, int] = (3, 7)
  babble_snr_db: tuple[float, float] = (5.0, 20.0)
  reverb_prob: float = 0.0
  rir_dirs: tuple[str, ...] = ()            # measured RIRs; empty = simulated rooms only
  simulated_rirs: int = 200                 # size of the simulated RIR pool (0 = none)
  rt60: tuple[float, float] = (0.2, 0.9)    # seconds, simulated rooms
  channel_prob: float = 0.0
  band_hz: tuple[tuple[float, float], ...] = ((300.0, 3400.0), (100.0, 7000.0), (200.0, 5000.0))
  low_rates: tuple[int, ...] = (8000, 11025)  # resampled through one of these rates
  gain_db: tuple[float, float] = (-12.0, 6.0)
  clip_prob: float = 0.2                    # of channel-augmented utterances, hard clipping
  seed_tag: int = 0x5eed                    # keeps augmentation draws apart from sampling

  @classmethod
  def from_dict(cls, d) -> "AugmentConfig":
    d = dict(d or {})
    if unknown := set(d) - {f.name for f in dataclasses.fields(cls)}:
      raise ValueError(f"config.data.augment has unknown fields {sorted(unknown)}; known: "
                       f"{sorted(f.name for f in dataclasses.fields(cls))}")
    out = {}
    for f in dataclasses.fields(cls):
      if f.name not in d:
        continue
      v = d[f.name]
      if isinstance(v, list):
        v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
      out[f.name] = v
    cfg = cls(**out)
    cfg.validate()
    return cfg

  def validate(self) -> None:
    if self.speed_mode not in ("resample", "tempo"):
      raise ValueError(f"augment.speed_mode={self.speed_mode!r}; use 'resample' or 'tempo'")
    if any(f <= 0 for f in self.speed_factors):
      raise ValueError(f"augment.speed_factors must be positive, got {self.speed_factors}")
    for name in ("noise_prob", "babble_prob", "reverb_prob", "channel_prob", "clip_prob"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"augment.{name}={getattr(self, name)} is not a probability")
    for d in (*self.noise_dirs, *self.rir_dirs):
      if not os.path.isdir(os.path.expanduser(d)):
        raise ValueError(f"augment directory {d!r} does not exist")
    bad = set(self.noise_kinds) - set(_GENERATED)
    if bad:
      raise ValueError(f"augment.noise_kinds {sorted(bad)} unknown; use {sorted(_GENERATED)}")
    if self.noise_prob > 0 and not (self.noise_dirs or self.noise_kinds):
      raise ValueError("augment.noise_prob > 0 needs noise_dirs or noise_kinds")
    if self.reverb_prob > 0 and not (self.rir_dirs or self.simulated_rirs):
      raise ValueError("augment.reverb_prob > 0 needs rir_dirs or simulated_rirs > 0")

  @property
  def enabled(self) -> bool:
    return bool(self.speed_factors and set(self.speed_factors) != {1.0}) or any(
        p > 0 for p in (self.noise_prob, self.babble_prob, self.reverb_prob, self.channel_prob))


# ---------------------------------------------------------------------------------------------
# The transforms, each a pure function of its inputs and an rng.
# ---------------------------------------------------------------------------------------------
def speed_perturb(x: np.ndarray, factor: float) -> np.ndarray:
  """Plays `x` `factor` times faster (Kaldi/ESPnet speed perturbation): n -> round(n / factor).

  Resampling from 16 kHz * factor to 16 kHz changes tempo and pitch together, as `sox speed`.
  """
  if factor == 1.0:
    return x
  return soxr.resample(x.astype(np.float32), SAMPLE_RATE * factor, SAMPLE_RATE, quality="HQ")


def tempo_perturb(x: np.ndarray, factor: float) -> np.ndarray:
  """Tempo only (pitch kept), by librosa's phase vocoder: n -> about n / factor."""
  if factor == 1.0:
    return x
  import librosa  # pylint: disable=import-outside-toplevel  (slow first import)
  return librosa.effects.time_stretch(x.astype(np.float32), rate=factor)


def power(x: np.ndarray) -> float:
  return float(np.mean(np.square(x, dtype=np.float64)))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
  """speech + g * noise with 10 log10(P(speech) / P(g * noise)) == snr_db exactly.

  Powers are means over the whole utterance (silence included), the convention of Kaldi's
  and Lhotse's noise mixing. `noise` is tiled or cut to the speech length.
  """
  noise = fit_length(noise, len(speech))
  p_s, p_n = power(speech), power(noise)
  if p_s < _EPS or p_n < _EPS:
    return speech
  gain = np.sqrt(p_s / (p_n * 10.0 ** (snr_db / 10.0)))
  return (speech + gain * noise).astype(np.float32)


def fit_length(x: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
  """x tiled (if shorter) and cut to n samples starting at `offset`."""
  if len(x) == 0:
    return np.zeros(n, np.float32)
  reps = -(-(offset + n) // len(x))
  return np.tile(x, reps)[offset:offset + n] if reps > 1 else x[offset:offset + n]


def generated_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
  """White, pink (1/f) or brown (1/f^2) Gaussian noise of n samples."""
  return _GENERATED[kind](n, rng)


def _colored(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
  spec = np.fft.rfft(rng.standard_normal(max(n, 2)))
  f = np.arange(len(spec), dtype=np.float64)
  f[0] = 1.0
  return np.fft.irfft(spec / f ** (exponent / 2), max(n, 2))[:n].astype(np.float32)


_GENERATED = {"white": lambda n, rng: rng.standard_normal(n).astype(np.float32),
              "pink": lambda n, rng: _colored(n, rng, 1.0),
              "brown": lambda n, rng: _colored(n, rng, 2.0)}


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
  """x convolved with `rir` (normalised to unit energy), aligned on its direct path, cut to len(x).

  With a unit-energy RIR the output of a white input keeps its power; the direct-path
  alignment keeps the transcript's timing (the CTC labels do not move).
  """
  from scipy import signal  # pylint: disable=import-outside-toplevel
  rir = np.asarray(rir, np.float64)
  rir = rir / (np.sqrt(np.sum(rir ** 2)) + _EPS)
  delay = int(np.argmax(np.abs(rir)))
  y = signal.fftconvolve(x.astype(np.float64), rir)[delay:delay + len(x)]
  return y.astype(np.float32)


def exponential_rir(rt60: float, rng: np.random.Generator, rate: int = SAMPLE_RATE) -> np.ndarray:
  """Diffuse-tail RIR model (Polack): a direct path then Gaussian noise decaying 60 dB in rt60."""
  n = max(int(rt60 * rate), 16)
  t = np.arange(n) / rate
  tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
  pre = int(rng.integers(int(0.002 * rate), int(0.01 * rate)))  # direct-to-reverb gap
  tail[:pre] = 0.0
  tail[0] = 1.0 / (0.3 + rt60)  # longer rooms: weaker direct path relative to the tail
  return tail


def simulate_rirs(count: int, rt60_range: tuple[float, float], seed: int) -> list[np.ndarray]:
  """`count` RIRs of random shoebox rooms, one source and one microphone at random positions.

  Hybrid model: early reflections from pyroomacoustics' image-source method (orders up to 12,
  walls absorbing per Sabine's inversion of the target RT60), a Polack diffuse tail decaying
  60 dB in RT60 after a 50 ms mixing time, its level matched to the early part there (a full
  image-source RIR of RT60 0.9 s needs orders of ~40, far too slow to draw on the fly).
  Polack's model alone where the package is missing or Sabine's inversion fails.
  """
  rng = np.random.default_rng([seed, 0x0717])
  try:
    import pyroomacoustics as pra  # pylint: disable=import-outside-toplevel
  except ImportError:
    pra = None
    log.warning("pyroomacoustics is not installed: simulated RIRs use the exponential model")
  out = []
  for _ in range(count):
    rt60 = float(rng.uniform(*rt60_range))
    dims = rng.uniform([3.0, 3.0, 2.4], [10.0, 8.0, 4.0])
    rir = None
    if pra is not None:
      try:
        absorption, max_order = pra.inverse_sabine(rt60, dims)
        room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(absorption),
                           max_order=min(max_order, 12))
        room.add_source(rng.uniform(0.5, dims - 0.5))
        room.add_microphone(rng.uniform(0.5, dims - 0.5))
        room.compute_rir()
        rir = _with_diffuse_tail(np.asarray(room.rir[0][0], np.float64), rt60, rng)
      except ValueError:  # inverse_sabine: the room is too small/large for that RT60
        rir = None
    out.append(rir if rir is not None and len(rir) > 1 else exponential_rir(rt60, rng))
  return out


def _with_diffuse_tail(early: np.ndarray, rt60: float, rng: np.random.Generator,
                       mixing_s: float = 0.05) -> np.ndarray:
  direct = int(np.argmax(np.abs(early)))
  mix = direct + int(mixing_s * SAMPLE_RATE)
  n = direct + int(1.2 * rt60 * SAMPLE_RATE)
  if n <= mix + 16:
    return early
  t = (np.arange(n) - direct) / SAMPLE_RATE
  tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
  out = np.zeros(max(n, len(early)))
  out[:len(early)] = early
  win = slice(mix - int(0.01 * SAMPLE_RATE), mix)
  early_energy = float(np.sum(out[win] ** 2))
  tail_energy = float(np.sum(tail[win] ** 2)) + _EPS
  out[mix:n] = out[mix:n] * 0.5 + tail[mix:] * np.sqrt(early_energy / tail_energy)
  return out


def band_limit(x: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
  """4th-order Butterworth band-pass (zero phase), as a telephone or cheap microphone."""
  from scipy import signal  # pylint: disable=import-outside-toplevel
  nyq = SAMPLE_RATE / 2
  sos = signal.butter(4, [max(low_hz, 1.0) / nyq, min(high_hz, nyq - 1.0) / nyq], "bandpass",
                      output="sos")
  return signal.sosfiltfilt(sos, x.astype(np.float64)).astype(np.float32)


def through_rate(x: np.ndarray, rate: int) -> np.ndarray:
  """Down to `rate` and back to 16 kHz: the band above rate / 2 is lost, the length kept."""
  y = soxr.resample(soxr.resample(x.astype(np.float32), SAMPLE_RATE, rate), rate, SAMPLE_RATE)
  return fit_length(y, len(x)) if len(y) < len(x) else y[:len(x)]


# ---------------------------------------------------------------------------------------------
# Pools read from disk (noise files, measured RIRs), loaded once per process.
# ---------------------------------------------------------------------------------------------
def list_audio(dirs: Sequence[str]) -> list[str]:
  """Audio files under `dirs`, recursively, in a stable order (MUSAN: musan/noise/*/*.wav)."""
  out = []
  for d in dirs:
    root = pathlib.Path(os.path.expanduser(d))
    out += sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
  return out


@functools.lru_cache(maxsize=512)
def load_mono(path: str) -> np.ndarray:
  """A file as float32 mono at 16 kHz (soundfile; downmixed, resampled with soxr)."""
  import soundfile as sf  # pylint: disable=import-outside-toplevel
  x, rate = sf.read(path, dtype="float32", always_2d=True)
  x = x.mean(axis=1)
  return soxr.resample(x, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else x


class Augmenter:
  """Applies an AugmentConfig to the rows of a batch; picklable for grain workers."""

  def __init__(self, cfg: AugmentConfig, seed: int):
    cfg.validate()
    self.cfg, self.seed = cfg, seed
    self.noise_files = list_audio(cfg.noise_dirs)
    self.rir_files = list_audio(cfg.rir_dirs)
    if cfg.noise_dirs and not self.noise_files:
      raise ValueError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {cfg.noise_dirs}")
    if cfg.rir_dirs and not self.rir_files:
      raise ValueError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {cfg.rir_dirs}")
    self._simulated = None

  def __getstate__(self):
    return dict(self.__dict__, _simulated=None)  # workers rebuild the pool from the cache

  def simulated(self) -> list[np.ndarray]:
    if self._simulated is None:
      cfg = self.cfg
      self._simulated = _cached_rirs(cfg.simulated_rirs, tuple(cfg.rt60), self.seed)
    return self._simulated

  def rng(self, step: int, shard: int, row: int) -> np.random.Generator:
    return np.random.default_rng([self.seed, self.cfg.seed_tag, step, shard, row])

  def speed_factor(self, rng: np.random.Generator) -> float:
    f = self.cfg.speed_factors
    return float(f[rng.integers(len(f))]) if f else 1.0

  def perturb_speed(self, x: np.ndarray, factor: float) -> np.ndarray:
    fn = speed_perturb if self.cfg.speed_mode == "resample" else tempo_perturb
    return fn(x, factor)

  def __call__(self, x: np.ndarray, rng: np.random.Generator,
               others: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, dict]:
    """Augments one (already speed-perturbed) utterance; returns (audio, what was applied).

    `others`: other utterances of the batch, the babble sources. Order: reverberation, then
    noise and babble (the noise is not reverberated), then the channel.
    """
    cfg, applied = self.cfg, {}
    if len(x) == 0:
      return x, applied
    # Every probability is drawn for every utterance, so one knob does not shift the others.
    u = rng.random(4)
    if u[0] < cfg.reverb_prob:
      k = int(rng.integers(len(self.rir_files) + cfg.simulated_rirs))
      rir = (load_mono(self.rir_files[k]) if k < len(self.rir_files)
             else self.simulated()[k - len(self.rir_files)])
      x = reverberate(x, rir)
      applied["reverb"] = k
    if u[1] < cfg.noise_prob:
      snr = float(rng.uniform(*cfg.noise_snr_db))
      k = int(rng.integers(len(self.noise_files) + len(cfg.noise_kinds)))
      if k < len(self.noise_files):
        noise = load_mono(self.noise_files[k])
        noise = fit_length(noise, len(x), int(rng.integers(max(len(noise), 1))))
        kind = os.path.basename(self.noise_files[k])
      else:
        kind = cfg.noise_kinds[k - len(self.noise_files)]
        noise = generated_noise(kind, len(x), rng)
      x = mix_at_snr(x, noise, snr)
      applied["noise"] = (kind, snr)
    if u[2] < cfg.babble_prob and len(others):
      n_talk = int(rng.integers(cfg.babble_talkers[0], cfg.babble_talkers[1] + 1))
      picks = rng.choice(len(others), size=min(n_talk, len(others)), replace=False)
      babble = np.zeros(len(x), np.float32)
      for i in picks:
        o = others[int(i)]
        if len(o):
          babble += fit_length(o, len(x), int(rng.integers(len(o))))
      snr = float(rng.uniform(*cfg.babble_snr_db))
      x = mix_at_snr(x, babble, snr)
      applied["babble"] = (len(picks), snr)
    if u[3] < cfg.channel_prob:
      choice = int(rng.integers(2))
      if choice == 0:
        lo, hi = cfg.band_hz[int(rng.integers(len(cfg.band_hz)))]
        x = band_limit(x, lo, hi)
        applied["band"] = (lo, hi)
      else:
        rate = int(cfg.low_rates[int(rng.integers(len(cfg.low_rates)))])
        x = through_rate(x, rate)
        applied["rate"] = rate
      gain = 10.0 ** (float(rng.uniform(*cfg.gain_db)) / 20.0)
      x = x * gain
      if rng.random() < cfg.clip_prob:
        level = float(np.quantile(np.abs(x), 0.98)) if len(x) else 1.0
        x = np.clip(x, -level, level)
        applied["clip"] = level
      applied["gain"] = gain
    return np.clip(x, -1.0, 1.0).astype(np.float32), applied


_RIR_POOL_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _cached_rirs(count: int, rt60: tuple[float, float], seed: int) -> list[np.ndarray]:
  """The simulated RIR pool, kept in $MLASR_CACHE/rirs so that workers and reruns reuse it."""
  if count <= 0:
    return []
  with _RIR_POOL_LOCK:  # grain's reader threads: one simulates, the others wait and load it
    return _load_or_simulate_rirs(count, rt60, seed)


def _load_or_simulate_rirs(count: int, rt60: tuple[float, float], seed: int) -> list[np.ndarray]:
  key = hashlib.sha256(repr((count, rt60, seed, "v1")).encode()).hexdigest()[:16]
  cache = pathlib.Path(os.environ.get("MLASR_CACHE", "~/.cache/mlasr")).expanduser() / "rirs"
  path = cache / f"{key}.npz"
  if path.exists():
    with np.load(path) as z:
      return [z[f"r{i}"] for i in range(count)]
  rirs = simulate_rirs(count, rt60, seed)
  cache.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
  np.savez(tmp, **{f"r{i}": r for i, r in enumerate(rirs)})
  os.replace(tmp, path)
  return rirs
