r"""Test audio through channels, codecs, rooms and noise the model never trained on.

  python -m mlasr.evaluators.robustness --workdir RUN [--split test] [--max_per_lang 40]

Every condition is applied with SoX (a different tool and different algorithms from the
training augmenters in mlasr/data/augment.py, so a model trained with those is not scored on
its own transforms):

  gsm_phone    300-3400 Hz telephone band, 8 kHz, GSM 06.10 full-rate codec, back to 16 kHz
  amr_nb       AMR narrow-band at 4.75 kbit/s (the lowest mode of the mobile codec)
  vorbis_low   Ogg Vorbis at its lowest quality setting
  room_sox     SoX's Freeverb reverberation (reverberance 70 %, room scale 100 %)
  cafe_10db    SoX pink noise, amplitude-modulated (a crowd's rise and fall), at 10 dB SNR

Each clip keeps its original length (codec padding trimmed, reverberation tails cut), so the
batches keep their shapes. Writes `<RUN>/robustness_<split>/results.json` and `results.md`:
per-language greedy CER for clean and each condition, the macro average and its change
against clean.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from typing import Callable, Iterator

import numpy as np
import soundfile as sf

from mlasr import fileio
from mlasr.data import augment, inputs
from mlasr.evaluators import asr, report

SAMPLE_RATE = inputs.SAMPLE_RATE


def _sox(x: np.ndarray, out_ext: str, out_args: list[str], effects: list[str]) -> np.ndarray:
  """x -> sox (encode to `out_ext` with `out_args`, `effects`) -> decode to 16 kHz float."""
  with tempfile.TemporaryDirectory() as tmp:
    src, mid, dst = (os.path.join(tmp, n) for n in ("in.wav", f"mid.{out_ext}", "out.wav"))
    sf.write(src, x, SAMPLE_RATE, subtype="FLOAT")
    subprocess.run(["sox", "-q", "-D", src, *out_args, mid, *effects], check=True,
                   capture_output=True)
    subprocess.run(["sox", "-q", "-D", mid, "-r", str(SAMPLE_RATE), "-e", "floating-point", dst],
                   check=True, capture_output=True)
    y, _ = sf.read(dst, dtype="float32")
  return _fit(y.reshape(len(y), -1).mean(axis=1), len(x))


def _fit(y: np.ndarray, n: int) -> np.ndarray:
  return np.pad(y, (0, max(0, n - len(y))))[:n].astype(np.float32)


def gsm_phone(x, rng):
  del rng
  return _sox(x, "gsm", ["-r", "8000", "-c", "1"], ["sinc", "300-3400"])


def amr_nb(x, rng):
  del rng
  return _sox(x, "amr-nb", ["-r", "8000", "-c", "1", "-C", "0"], [])


def vorbis_low(x, rng):
  del rng
  return _sox(x, "ogg", ["-C", "-1"], [])


def room_sox(x, rng):
  del rng
  return _sox(x, "wav", [], ["reverb", "70", "50", "100"])


def cafe_10db(x, rng, snr_db: float = 10.0):
  # SoX has no seed option: -R makes its noise repeatable, and `rng` picks the crowd's
  # rhythm (tremolo speed and depth) and where in a longer noise the clip starts.
  speed, depth = float(rng.uniform(0.3, 1.2)), float(rng.uniform(40, 80))
  start = int(rng.integers(SAMPLE_RATE))
  seconds = f"{(len(x) + start) / SAMPLE_RATE + 0.1:.3f}"
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "noise.wav")
    subprocess.run(["sox", "-q", "-R", "-D", "-n", "-r", str(SAMPLE_RATE), "-c", "1",
                    "-e", "floating-point", path, "synth", seconds, "pinknoise",
                    "tremolo", f"{speed:.3f}", f"{depth:.1f}"], check=True, capture_output=True)
    noise, _ = sf.read(path, dtype="float32")
  noise = noise.reshape(len(noise), -1).mean(axis=1)[start:]
  # The noise is SoX's; only the SNR arithmetic is shared with the training augmenter.
  return np.clip(augment.mix_at_snr(x, noise, snr_db), -1.0, 1.0)


CONDITIONS: dict[str, Callable | None] = {
    "clean": None, "gsm_phone": gsm_phone, "amr_nb": amr_nb, "vorbis_low": vorbis_low,
    "room_sox": room_sox, "cafe_10db": cafe_10db}


class _Transformed:
  """Eval batches with each real row's audio passed through `fn`; at most `max_per_lang`
  utterances per language (the rest masked out, batches left empty are skipped)."""

  def __init__(self, eval_data, fn, max_per_lang: int, seed: int = 0):
    self.eval_data, self.fn, self.max_per_lang, self.seed = eval_data, fn, max_per_lang, seed

  def batches(self) -> Iterator[dict]:
    taken: dict[str, int] = {}
    for b, batch in enumerate(self.eval_data.batches()):
      batch = dict(batch, example_mask=batch["example_mask"].copy())
      if self.fn is not None:
        batch["audio"] = batch["audio"].copy()
      for i in np.flatnonzero(batch["example_mask"]):
        lang = str(batch["lang"][i])
        if self.max_per_lang and taken.get(lang, 0) >= self.max_per_lang:
          batch["example_mask"][i] = 0
          continue
        taken[lang] = taken.get(lang, 0) + 1
        if self.fn is not None:
          n = int(batch["audio_mask"][i].sum())
          rng = np.random.default_rng([self.seed, b, i])
          batch["audio"][i, :n] = self.fn(batch["audio"][i, :n], rng)
      if batch["example_mask"].any():
        yield batch


def run(workdir: str, split: str = "test", max_per_lang: int = 0, n_boot: int = 200,
        conditions: tuple[str, ...] = tuple(CONDITIONS)) -> dict:
  from mlasr import evaluate  # pylint: disable=import-outside-toplevel
  if shutil.which("sox") is None:
    raise FileNotFoundError("sox is not installed (Debian package `sox`; `make install`)")
  unknown = set(conditions) - set(CONDITIONS)
  if unknown:
    raise ValueError(f"unknown conditions {sorted(unknown)}; known: {sorted(CONDITIONS)}")
  config, tokenizer, model, step = evaluate.restore_model(workdir)
  log_probs_fn = evaluate.jitted_log_probs(config, model)
  eval_data = inputs.eval_data(config, split)
  groups = evaluate.speaker_groups(config.data.root)
  results = {}
  for name in conditions:
    utts = asr.greedy_transcribe(
        log_probs_fn, _Transformed(eval_data, CONDITIONS[name], max_per_lang), tokenizer)
    evaluate.tag_speaker_groups(utts, groups)
    results[name] = report.build_results(utts, n_boot=n_boot, seed=0,
                                         meta=dict(condition=name, split=split, step=step))
    print(f"{name}: macro CER {100 * results[name]['macro']['cer']['rate']:.1f} %")
  out_dir = fileio.join(workdir, f"robustness_{split}")
  fileio.makedirs(out_dir)
  summary = dict(split=split, step=step, max_per_lang=max_per_lang,
                 conditions={k: dict(macro=v["macro"]["cer"],
                                     cer={l: r["cer"]["rate"] for l, r in v["languages"].items()},
                                     utts=v["all"]["utts"]) for k, v in results.items()})
  with fileio.open(fileio.join(out_dir, "results.json"), "w", encoding="utf-8") as fh:
    json.dump(summary, fh, indent=1)
  with fileio.open(fileio.join(out_dir, "results.md"), "w", encoding="utf-8") as fh:
    fh.write(to_markdown(summary))
  print(to_markdown(summary), end="")
  return summary


def to_markdown(summary: dict) -> str:
  conds = summary["conditions"]
  langs = sorted({l for c in conds.values() for l in c["cer"]})
  clean = conds.get("clean", {}).get("macro", {}).get("rate")
  lines = ["| condition | " + " | ".join(langs) + " | **macro** | vs clean |",
           "|---|" + "---:|" * len(langs) + "---|---:|"]
  shifts = []
  for name, c in conds.items():
    rate = c["macro"]["rate"]
    delta = "" if clean is None or name == "clean" else f"{100 * (rate - clean):+.1f}"
    if delta:
      shifts.append(rate - clean)
    lines.append(f"| {name} | " + " | ".join(report._pct(c["cer"].get(l)) for l in langs)  # pylint: disable=protected-access
                 + f" | **{report._pct(rate)}** {report._ci(c['macro']['ci'])} | {delta} |")  # pylint: disable=protected-access
  if shifts:
    lines += ["", f"Mean change over the {len(shifts)} conditions: "
              f"{100 * float(np.mean(shifts)):+.1f} CER points (greedy decoding, "
              f"{summary['split']} split"
              + (f", first {summary['max_per_lang']} utterances per language" if
                 summary["max_per_lang"] else "") + ")."]
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  run(f.workdir, f.split, f.max_per_lang, conditions=tuple(f.conditions))


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "Trained CTC run.")
  flags.DEFINE_string("split", "test", "Split whose audio is degraded.")
  flags.DEFINE_integer("max_per_lang", 0, "Utterances per language (0: all).")
  flags.DEFINE_list("conditions", list(CONDITIONS), "Conditions to score.")
  flags.mark_flag_as_required("workdir")
  app.run(main)
