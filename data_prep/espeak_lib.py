"""In-process espeak-ng synthesis through libespeak-ng (ctypes).

Calling the library avoids one process start per sentence, which dominates the cost of the
command-line tool for short sentences. The library is process-global state, so this module keeps
one initialised instance per process; multiprocessing workers each get their own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH = 1, 2, 3
_ESPEAK_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_SYNTH_CB = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()
_state: dict = {}


def _lib() -> tuple[ctypes.CDLL, int]:
  if "lib" not in _state:
    name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    try:
      lib = ctypes.CDLL(name)
    except OSError as e:
      raise RuntimeError(
          f"cannot load {name}: install the Debian package espeak-ng (libespeak-ng1)") from e
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, 0)
    if rate <= 0:
      raise RuntimeError(f"espeak_Initialize failed ({rate}); is espeak-ng-data installed?")
    chunks: list[np.ndarray] = []

    def callback(wav, num_samples, events):  # noqa: ARG001 (ctypes signature)
      if wav and num_samples > 0:
        chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
      return 0

    cb = _SYNTH_CB(callback)
    lib.espeak_SetSynthCallback(cb)
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    _state.update(lib=lib, rate=rate, cb=cb, chunks=chunks, libc=libc)
  return _state["lib"], _state["rate"]


def synthesize(text: str, voice: str, *, speed: int, pitch: int, amplitude: int,
               seed: int) -> tuple[np.ndarray, int]:
  """Speaks `text` with espeak-ng voice `voice` (e.g. "hi+f3"); returns (float32 wave, rate).

  `seed` seeds libc's rand(), which espeak-ng uses for breath noise in some voice variants: without
  it a clip would depend on what the process synthesised before, and a resumed build would differ.
  """
  with _lock:
    lib, rate = _lib()
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
      raise ValueError(f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices`)")
    lib.espeak_SetParameter(_ESPEAK_RATE, int(speed), 0)
    lib.espeak_SetParameter(_ESPEAK_PITCH, int(pitch), 0)
    lib.espeak_SetParameter(_ESPEAK_VOLUME, int(amplitude), 0)
    _state["libc"].srand(ctypes.c_uint(seed & 0xFFFFFFFF))
    chunks = _state["chunks"]
    chunks.clear()
    data = text.encode("utf-8") + b"\0"
    err = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
    if err != 0:
      raise RuntimeError(f"espeak_Synth failed with code {err} for voice {voice!r}: {text[:60]!r}")
    wave = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    chunks.clear()
  return wave.astype(np.float32) / 32768.0, rate


def synthesize_isolated(text: str, voice: str, *, speed: int, pitch: int, amplitude: int,
                        seed: int) -> tuple[np.ndarray, int]:
  """Like `synthesize`, but in a forked child of a process whose espeak-ng never spoke.

  espeak-ng keeps wave-generator state between utterances, so the same call gives different
  samples depending on what came before. Forking from a pristine initialised library costs about
  a millisecond and makes every clip independent of order, worker and resume point.
  """
  with _lock:
    _lib()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: speak once, send the samples, exit without cleanup
      code = 0
      try:
        os.close(read_fd)
        _lock.release()
        wave, rate = synthesize(text, voice, speed=speed, pitch=pitch, amplitude=amplitude,
                                seed=seed)
        payload = np.int32(rate).tobytes() + (wave * 32768.0).astype(np.int16).tobytes()
        with os.fdopen(write_fd, "wb") as f:
          f.write(payload)
      except BaseException:  # noqa: BLE001 (report through the exit status)
        code = 1
      os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
      payload = f.read()
    _, status = os.waitpid(pid, 0)
  if status != 0 or len(payload) < 4:
    raise RuntimeError(f"espeak-ng child failed (status {status}) for voice {voice!r}: "
                       f"{text[:60]!r}")
  rate = int(np.frombuffer(payload[:4], np.int32)[0])
  return np.frombuffer(payload[4:], np.int16).astype(np.float32) / 32768.0, rate
