r"""Real-time factor and peak memory of mlasr.transcribe on a synthetic one-hour recording,
greedy and with the LM, against the evaluation path on the same audio.

  python benchmarks/transcribe_speed.py --workdir RUN [--hours 1] [--lm_minutes 10] \
      [--lm_weight 0.5 --word_bonus 1.0] [--vad energy]

The recording is the alsa-utils voices (or any folder of clips, --clips) placed one after
another with 1-3 s of silence, written as 48 kHz stereo FLAC (so the reader downmixes and
resamples, as it would for a user's file). Each mode runs in its own child process, which
reports its own peak resident memory (getrusage ru_maxrss: model, JAX and all); tracemalloc gives the peak of
Python-allocated memory (numpy buffers included) inside the run:
  - greedy:   Transcriber.run on the file (VAD, cut, batched greedy, alignment, outputs)
  - beam_lm:  the same with prefix beam search and the run's char LM, on the first
              --lm_minutes of the file (host-side beam search is the slow part)
  - eval:     the evaluation path: the clips at their known positions, cut from the file
              decoded whole (load_audio, as the corpus loaders read a clip), padded into the
              run's bucket shapes and decoded with the jitted greedy predict of mlasr.evaluate
Model loading is outside the timings; the first batch of each shape compiles inside them.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np

SR = 16000


def make_recording(path: str, hours: float, clips: list[str], seed: int = 0) -> list:
  """Writes the recording block by block; returns [(start, end)] seconds of every clip."""
  import soundfile as sf  # pylint: disable=import-outside-toplevel
  from mlasr.data import audio  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  voices = [audio.load_audio(c, sr=48000) for c in clips]
  placed, t = [], 0.0
  with sf.SoundFile(path, "w", 48000, 2, format="FLAC") as f:
    while t < hours * 3600:
      gap = np.zeros(int(rng.uniform(1.0, 3.0) * 48000), np.float32)
      v = voices[int(rng.integers(len(voices)))]
      block = np.concatenate([gap, v])
      f.write(np.stack([block, block], 1))
      t += len(gap) / 48000
      placed.append((t, t + len(v) / 48000))
      t += len(v) / 48000
  return placed


def child(args) -> dict:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  from mlasr import transcribe  # pylint: disable=import-outside-toplevel
  transcribe.quiet_libraries()
  with open(args.plan, encoding="utf-8") as f:
    plan = json.load(f)
  if args.mode == "eval":
    return eval_path(args, plan)
  seconds = plan["seconds"] if args.mode == "greedy" else args.lm_minutes * 60
  path = plan["path"] if args.mode == "greedy" else plan["lm_path"]
  options = transcribe.Options(
      decoder="greedy" if args.mode == "greedy" else "beam_lm", beam=args.beam,
      lm_weight=args.lm_weight, word_bonus=args.word_bonus, vad=args.vad)
  transcriber = transcribe.Transcriber(args.workdir, lang=args.lang, options=options)
  tracemalloc.start()
  start = time.perf_counter()
  summary = transcriber.run([transcribe.Item(path, name="hour")], args.out, ("json",),
                            progress=False, echo=lambda r: None)
  wall = time.perf_counter() - start
  _, peak = tracemalloc.get_traced_memory()
  if summary["failed"]:
    raise RuntimeError(summary["failed"])
  return dict(mode=args.mode, audio_s=seconds, wall_s=wall, rtf=wall / seconds,
              segments=summary["segments"], tracemalloc_peak_mb=peak / 2 ** 20,
              peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def eval_path(args, plan) -> dict:
  """The clips at their known places, decoded as mlasr.evaluate decodes a test split."""
  import jax  # pylint: disable=import-outside-toplevel
  from mlasr import evaluate  # pylint: disable=import-outside-toplevel
  from mlasr.data import audio, inputs  # pylint: disable=import-outside-toplevel
  config, _, model, _ = evaluate.restore_model(args.workdir)
  predict = evaluate.jitted_predict(config, model)
  buckets = sorted(inputs.buckets(config.data), key=lambda b: b[1])
  lang_id = list(model.langs).index(args.lang) if args.lang else 0
  tracemalloc.start()
  start = time.perf_counter()
  wav = np.concatenate(list(audio.stream_audio(plan["path"])))  # whole, like load_audio
  pending = [[] for _ in buckets]

  def flush(b):
    size, n = buckets[b]
    batch = dict(audio=np.zeros((size, n), np.float32), audio_mask=np.zeros((size, n), np.int32),
                 lang_id=np.full(size, lang_id, np.int32), example_mask=np.zeros(size, np.int32))
    for r, clip in enumerate(pending[b]):
      batch["audio"][r, :len(clip)] = clip
      batch["audio_mask"][r, :len(clip)] = 1
      batch["example_mask"][r] = 1
    jax.device_get(predict(batch))
    pending[b] = []

  for a, e in plan["placed"]:
    clip = wav[int(a * SR):int(e * SR)]
    b = next(i for i, (_, n) in enumerate(buckets) if n >= len(clip))
    pending[b].append(clip)
    if len(pending[b]) == buckets[b][0]:
      flush(b)
  for b in range(len(buckets)):
    if pending[b]:
      flush(b)
  wall = time.perf_counter() - start
  _, peak = tracemalloc.get_traced_memory()
  return dict(mode="eval", audio_s=plan["seconds"], wall_s=wall, rtf=wall / plan["seconds"],
              segments=len(plan["placed"]), tracemalloc_peak_mb=peak / 2 ** 20,
              peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--lang", default="")
  parser.add_argument("--hours", type=float, default=1.0)
  parser.add_argument("--lm_minutes", type=float, default=10.0)
  parser.add_argument("--lm_weight", type=float, default=None)
  parser.add_argument("--word_bonus", type=float, default=None)
  parser.add_argument("--beam", type=int, default=8)
  parser.add_argument("--vad", default="auto")
  parser.add_argument("--clips", default="/usr/share/sounds/alsa")
  parser.add_argument("--modes", default="eval,greedy,beam_lm")
  parser.add_argument("--tmp", default="/tmp/mlasr_transcribe_bench")
  parser.add_argument("--mode", help=argparse.SUPPRESS)
  parser.add_argument("--plan", help=argparse.SUPPRESS)
  parser.add_argument("--out", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.mode:
    print("RESULT " + json.dumps(child(args)))
    return
  os.makedirs(args.tmp, exist_ok=True)
  clips = sorted(p for p in glob.glob(os.path.join(args.clips, "*.wav"))
                 if not p.endswith("Noise.wav"))
  plan = dict(path=os.path.join(args.tmp, "hour.flac"), lm_path=os.path.join(args.tmp, "lm.flac"))
  t = time.perf_counter()
  plan["placed"] = make_recording(plan["path"], args.hours, clips)
  make_recording(plan["lm_path"], args.lm_minutes / 60, clips)
  plan["seconds"] = plan["placed"][-1][1]
  print(f"wrote {plan['seconds'] / 3600:.2f} h ({os.path.getsize(plan['path']) / 2 ** 20:.0f} MB "
        f"FLAC, 48 kHz stereo, {len(plan['placed'])} clips) in {time.perf_counter() - t:.0f} s")
  with open(os.path.join(args.tmp, "plan.json"), "w", encoding="utf-8") as f:
    json.dump(plan, f)
  rows = []
  for mode in args.modes.split(","):
    cmd = [sys.executable, __file__, "--mode", mode, "--plan", os.path.join(args.tmp, "plan.json"),
           "--out", os.path.join(args.tmp, mode), "--workdir", args.workdir, "--lang", args.lang,
           "--lm_minutes", str(args.lm_minutes), "--beam", str(args.beam), "--vad", args.vad]
    for name in ("lm_weight", "word_bonus"):
      if getattr(args, name) is not None:
        cmd += [f"--{name}", str(getattr(args, name))]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
      print(f"{mode} failed:\n{proc.stderr[-3000:]}")
      continue
    rows.append(json.loads(proc.stdout.split("RESULT ", 1)[1]))
  print("| mode | audio | wall | RTF | segments | peak RSS | tracemalloc peak |")
  print("|---|---:|---:|---:|---:|---:|---:|")
  for r in rows:
    print(f"| {r['mode']} | {r['audio_s'] / 60:.1f} min | {r['wall_s']:.1f} s | {r['rtf']:.4f} | "
          f"{r['segments']} | {r['peak_rss_mb']:.0f} MB | {r['tracemalloc_peak_mb']:.0f} MB |")


if __name__ == "__main__":
  main()
