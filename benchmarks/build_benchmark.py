"""Times a build of the synthetic benchmark and reports audio hours per wall-clock hour.

    python benchmarks/build_benchmark.py [--preset demo] [--out DIR] [--workers 2]

Text fetching is timed separately (it is cached after the first run). Without --out the build
goes to a fresh temporary directory, so every clip is synthesised.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from data_prep import synth_benchmark  # noqa: E402
from data_prep import text_sources  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--preset", default="demo", choices=sorted(synth_benchmark.PRESETS))
  parser.add_argument("--out", default=None)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  t0 = time.time()
  for lang in synth_benchmark.PRESETS[args.preset].langs:
    text_sources.load_sentences(lang)
  text_s = time.time() - t0
  out = pathlib.Path(args.out or tempfile.mkdtemp(prefix=f"mlasr-{args.preset}-"))
  if any(out.glob("*")):
    raise SystemExit(f"{out} is not empty: a timing needs a fresh directory")
  t0 = time.time()
  info = synth_benchmark.build(args.preset, out, args.seed, args.workers)
  wall = time.time() - t0
  hours = sum(sum(d["hours"].values()) for d in info["languages"].values())
  print(synth_benchmark.summary_table(info))
  print(f"text (cached or fetched): {text_s:.1f} s")
  print(f"build {args.preset}: {wall:.1f} s wall, {hours:.2f} h of audio, "
        f"{hours / (wall / 3600):.0f} audio-hours per wall-hour ({args.workers} workers)")
  if args.out is None:
    shutil.rmtree(out)


if __name__ == "__main__":
  main()
