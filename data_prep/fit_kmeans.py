r"""Fits k-means on features written by extract_features.py (streamed chunk by chunk).

  python -m data_prep.fit_kmeans --features ~/mlasr_runs/hubert_it1/features \
      --out ~/mlasr_runs/hubert_it1/kmeans [--k 100] [--mode minibatch|full] \
      [--sample_size 1000000 | --sample_fraction 0.25]

K defaults to 100 for MFCC features and 500 for layer features (HuBERT). The fit reads every
feature row unless --sample_size (rows) or --sample_fraction asks for an exact uniform sample of
them (KMeansConfig.sample_size; still streamed chunk by chunk); the reported inertia is over
all rows either way. Writes
`<out>/kmeans.{npz,json}` (mlasr.targets.kmeans.KMeans.save), a copy of the features'
`features.json` (feature spec, label rate, frame spec: dump_labels recomputes features from it)
and `fit.json` (fit time, final inertia and inertia per frame over all feature rows).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import time
from typing import Sequence

from data_prep import extract_features
from mlasr.targets import kmeans as kmeans_lib


def fit(feat_dir: str, out_dir: str, *, k: int | None = None, mode: str = "minibatch",
        batch_size: int = 10_000, max_iter: int = 100, seed: int = 0,
        sample_size: int | None = None, sample_fraction: float | None = None
        ) -> kmeans_lib.KMeans:
  with open(os.path.join(feat_dir, extract_features.FEATURES_JSON)) as f:
    feat_meta = json.load(f)
  if k is None:
    k = 100 if feat_meta["spec"]["kind"] == "mfcc" else 500
  if sample_fraction is not None:
    if sample_size is not None or not 0 < sample_fraction <= 1:
      raise ValueError("give one of sample_size / sample_fraction, the fraction in (0, 1]")
    sample_size = max(k, round(sample_fraction * feat_meta["rows"]))
  if sample_size is not None and sample_size >= feat_meta["rows"]:
    sample_size = None  # all rows
  cfg = kmeans_lib.KMeansConfig(num_clusters=k, mode=mode, batch_size=batch_size,
                                max_iter=max_iter, seed=seed, sample_size=sample_size)
  chunks = extract_features.feature_chunks(feat_dir)
  start = time.time()
  model = kmeans_lib.KMeans(cfg).fit(chunks)
  seconds = time.time() - start
  model.save(out_dir)
  inertia = model.inertia(chunks)
  shutil.copy(os.path.join(feat_dir, extract_features.FEATURES_JSON),
              os.path.join(out_dir, extract_features.FEATURES_JSON))
  with open(os.path.join(out_dir, "fit.json"), "w") as f:
    json.dump(dict(config=dataclasses.asdict(cfg), fit_seconds=seconds, inertia=inertia,
                   inertia_per_frame=inertia / max(feat_meta["rows"], 1),
                   rows=feat_meta["rows"], fit_rows=model.num_fit_rows), f, indent=1)
  logging.info("k-means K=%d fit on %d of %d rows: inertia/frame %.4g over all (%.1f s)", k,
               model.num_fit_rows, feat_meta["rows"], inertia / max(feat_meta["rows"], 1),
               seconds)
  return model


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--features", required=True, help="dir written by extract_features")
  p.add_argument("--out", required=True)
  p.add_argument("--k", type=int, default=None, help="default 100 (mfcc) / 500 (layer)")
  p.add_argument("--mode", default="minibatch", choices=("minibatch", "full"))
  p.add_argument("--batch_size", type=int, default=10_000)
  p.add_argument("--max_iter", type=int, default=100)
  p.add_argument("--seed", type=int, default=0)
  g = p.add_mutually_exclusive_group()
  g.add_argument("--sample_size", type=int, default=None,
                 help="fit on this many feature rows drawn uniformly (default: all)")
  g.add_argument("--sample_fraction", type=float, default=None,
                 help="fit on this fraction of the feature rows (default: all)")
  args = p.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  fit(os.path.expanduser(args.features), os.path.expanduser(args.out), k=args.k,
      mode=args.mode, batch_size=args.batch_size, max_iter=args.max_iter, seed=args.seed,
      sample_size=args.sample_size, sample_fraction=args.sample_fraction)
  print(f"k-means saved to {args.out}")


if __name__ == "__main__":
  main()
