"""Input pipeline throughput from array_record, in audio-seconds per wall-second (×realtime),
with 0 and 2 grain workers, without and with waveform augmentation, in the same run.

The augmented variant switches every host augmenter on (speed perturbation 0.9/1.0/1.1 and
noise, babble, reverberation, channel each on half of the utterances): a worst case next to
a recipe's usual choice of a few of them.

  python -m benchmarks.pipeline_throughput [--data_dir D --datasets commonvoice:hi,...]
      [--batches 60] [--out results.json]

Without --data_dir it writes a synthetic VoxPopuli-format corpus (2 languages, 1-15 s clips)
into a temporary directory and prepares it first (not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import soundfile as sf

from mlasr.data import augment
from mlasr.data import pipeline
from mlasr.data import tfds_builder

VP = ("id raw_text normalized_text speaker_id split gender is_gold_transcript "
      "accent").split()


def make_corpus(root: str, langs=("it", "fi"), clips: int = 120, seed: int = 0) -> None:
  rng = np.random.default_rng(seed)
  for lang in langs:
    d = os.path.join(root, "voxpopuli", "transcribed_data", lang)
    for split, n in (("train", clips), ("dev", 1), ("test", 1)):
      rows = ["\t".join(VP)]
      for i in range(n):
        utt = f"2020{i:04d}-{split}_{lang}_{i}"
        os.makedirs(os.path.join(d, utt[:4]), exist_ok=True)
        wav = 0.1 * rng.standard_normal(int(rng.uniform(1, 15) * 16000)).astype(np.float32)
        sf.write(os.path.join(d, utt[:4], utt + ".ogg"), wav, 16000)
        rows.append("\t".join([utt, f"frase {i}", f"frase {i}", "s", split, "f", "True", "-"]))
      with open(os.path.join(d, f"asr_{split}.tsv"), "w", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")


AUGMENT_ALL = augment.AugmentConfig(speed_factors=(0.9, 1.0, 1.1), noise_prob=0.5,
                                    babble_prob=0.5, reverb_prob=0.5, channel_prob=0.5)


def measure(data_dir: str, datasets, workers: int, batches: int, warmup: int = 5,
            augmented: bool = False) -> dict:
  td = pipeline.train_data(data_dir, datasets, worker_count=workers, seed=0,
                           augment=AUGMENT_ALL if augmented else None)
  it = td.iterator()
  for _ in range(warmup):  # Worker start-up and first reads are not throughput.
    next(it)
  seconds, t0 = 0.0, time.perf_counter()
  for _ in range(batches):
    seconds += next(it)["audio_mask"].sum() / pipeline.SAMPLE_RATE
  wall = time.perf_counter() - t0
  return {"workers": workers, "augmented": augmented, "batches": batches, "audio_s": round(seconds, 1),
          "wall_s": round(wall, 3), "x_realtime": round(seconds / wall, 1),
          "batches_per_s": round(batches / wall, 2)}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--data_dir")
  p.add_argument("--datasets", default="voxpopuli:it,voxpopuli:fi")
  p.add_argument("--batches", type=int, default=60)
  p.add_argument("--out", help="also write the numbers as JSON here")
  args = p.parse_args()
  datasets = [tuple(s.split(":")) for s in args.datasets.split(",")]
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = args.data_dir
    if data_dir is None:
      root, data_dir = os.path.join(tmp, "corpus"), os.path.join(tmp, "tfds")
      make_corpus(root, langs=[l for _, l in datasets])
      for corpus, lang in datasets:
        tfds_builder.prepare(root, data_dir, corpus, lang, normalize=lambda t, l: t.lower())
    results = [measure(data_dir, datasets, w, args.batches, augmented=a)
               for a in (False, True) for w in (0, 2)]
  ratio = results[1]["x_realtime"] / results[0]["x_realtime"]
  aug_ratio = results[3]["x_realtime"] / results[1]["x_realtime"]
  print(f"{'workers':>8} {'augment':>8} {'audio s':>9} {'wall s':>8} {'x realtime':>11} "
        f"{'batches/s':>10}")
  for r in results:
    print(f"{r['workers']:>8} {str(r['augmented']):>8} {r['audio_s']:>9} {r['wall_s']:>8} "
          f"{r['x_realtime']:>11} {r['batches_per_s']:>10}")
  print(f"2 workers / 0 workers: {ratio:.2f}x  (cpu count {os.cpu_count()})")
  print(f"augmented / plain, 2 workers: {aug_ratio:.2f}x")
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump({"results": results, "ratio_2_over_0": round(ratio, 3),
                 "ratio_augmented_over_plain": round(aug_ratio, 3),
                 "cpu_count": os.cpu_count()}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
