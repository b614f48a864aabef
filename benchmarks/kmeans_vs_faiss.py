r"""JAX k-means (mlasr.targets.kmeans) vs faiss.Kmeans on the same features: inertia and speed.

  python -m benchmarks.kmeans_vs_faiss [--features DIR] [--ks 100,500] [--niter 20] \
      [--sample_size N] [--synthetic_rows 200000] [--out-dir DIR] [--smoke]

faiss (`pip install faiss-cpu`, the `benchmark` extra) is what mHuBERT-147 assigned its labels
with. Cases, one run:
  * speech: 39-d MFCC (mlasr.targets.mfcc) of real benchmark speech, the chunks written by
    data_prep/extract_features.py. `--features DIR` reads them; otherwise they are extracted
    here from `--data_dir` (default ~/mlasr_data/demo/tfds, the generated demo benchmark:
    every train split, `--fraction` of the utterances) into `<out-dir>/feats_mfcc`. Fallback
    when no benchmark is on disk: espeak-ng English speech synthesised as in
    kmeans_vs_sklearn.py (the JSON says which source was used).
  * gmm: a synthetic Gaussian mixture (`--synthetic_rows` x 32, 2 K components of unequal
    spread and weight), to separate the libraries from the data.
Both libraries fit the same float32 rows: all of them, or the sample `--sample_size` drawn by
`mlasr.targets.kmeans.sample_rows` (mlasr gets the full set and KMeansConfig.sample_size, and
draws the same rows itself; faiss gets those rows and max_points_per_centroid large enough that
it uses all of them). Per K:
  faiss, same init      faiss.Kmeans(niter) from K random rows of the fit set
  mlasr Lloyd, same init  KMeans(mode="full", max_iter=niter, no early stop) from those rows
  faiss, own init       faiss's default random init (same niter)
  mlasr Lloyd, k-means++  mlasr's default init (same niter)
  mlasr minibatch       data_prep/fit_kmeans.py's defaults (batch 10000, <= 100 epochs,
                        early stop after 10 steps without improvement)
  faiss, 256 pts/centroid  faiss's own default subsample (256 K rows) for its speed
faiss runs at 1 thread or at all of OpenMP's threads, whichever fits the same-init case faster
here (both times are in the JSON): on a loaded machine OpenMP's busy-waiting barriers can make
2 threads 100 times slower than 1, and faiss should be compared at its best.
Inertia: one numpy float64 function (`inertia_np`) on every row of the case for every model;
ratios are mlasr / faiss (same init against same init, mlasr defaults against faiss own init).
Time: fit only, wall clock, warm: every mlasr call is first run once with max_iter=1 /
max_steps=2 on the same data (compiles every shape; its time is reported as `warmup_s`).
The machine is shared: wall times are noisy, ratios within one run are what to read.

Results: benchmarks/results/<device>_<date>/kmeans_vs_faiss.{json,md} (or --out-dir); the
JSON is rewritten after every measurement so a run cut short keeps what it finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = "~/mlasr_data/demo/tfds"


def inertia_np(x: np.ndarray, centroids: np.ndarray, chunk: int = 16384
               ) -> tuple[float, np.ndarray]:
  """(sum of squared distances to the nearest centroid, labels); float64, independent of both
  libraries."""
  c = np.asarray(centroids, np.float64)
  c_sq = (c * c).sum(1)
  total, labels = 0.0, np.empty(len(x), np.int64)
  for s in range(0, len(x), chunk):
    xb = np.asarray(x[s:s + chunk], np.float64)
    d2 = (xb * xb).sum(1)[:, None] - 2.0 * xb @ c.T + c_sq[None, :]
    lab = d2.argmin(1)
    labels[s:s + chunk] = lab
    total += float(np.maximum(d2[np.arange(len(xb)), lab], 0.0).sum())
  return total, labels


def gmm(rows: int, dim: int, components: int, seed: int) -> np.ndarray:
  """Gaussian mixture: unequal weights (Dirichlet) and spreads (0.5..2), means in [-10, 10]."""
  rng = np.random.default_rng(seed)
  means = rng.uniform(-10, 10, (components, dim))
  spread = rng.uniform(0.5, 2.0, components)
  comp = rng.choice(components, rows, p=rng.dirichlet(np.full(components, 2.0)))
  return (means[comp] + rng.standard_normal((rows, dim)) * spread[comp, None]).astype(np.float32)


def speech_features(args) -> tuple[np.ndarray, dict]:
  from data_prep import extract_features  # pylint: disable=import-outside-toplevel
  feat_dir = args.features
  source = {}
  if not feat_dir:
    data_dir = os.path.expanduser(args.data_dir)
    feat_dir = os.path.join(args.out_dir, "feats_mfcc")
    if os.path.isfile(os.path.join(feat_dir, extract_features.FEATURES_JSON)):
      pass  # extracted by an earlier run
    elif os.path.isdir(data_dir):
      from mlasr.data import tfds_builder  # pylint: disable=import-outside-toplevel
      datasets = []
      for name in sorted(os.listdir(os.path.join(data_dir, tfds_builder.NAME))):
        corpus, _, lang = name.partition("_")
        if "train" in tfds_builder.load_index(data_dir, corpus, lang):
          datasets.append((corpus, lang, "train"))
      t = time.time()
      extract_features.extract(data_dir, datasets, extract_features.FeatureSpec("mfcc"),
                               feat_dir, fraction=args.fraction, seed=args.seed)
      source["extract_s"] = time.time() - t
    else:
      sys.path.insert(0, HERE)
      import kmeans_vs_sklearn  # pylint: disable=import-outside-toplevel
      x = kmeans_vs_sklearn.speech_mfcc(args.espeak_seconds)
      return np.ascontiguousarray(x, np.float32), dict(
          source="espeak-ng English speech (no benchmark at --data_dir)",
          seconds=args.espeak_seconds)
  with open(os.path.join(feat_dir, extract_features.FEATURES_JSON)) as f:
    meta = json.load(f)
  x = np.concatenate(list(extract_features.feature_chunks(feat_dir)()))
  source.update(source="extract_features MFCC", features=os.path.abspath(feat_dir),
                data_dir=meta["data_dir"], fraction=meta["fraction"],
                utterances=meta["utterances"], datasets=meta["datasets"])
  return np.ascontiguousarray(x, np.float32), source


def run_case(name: str, x: np.ndarray, source: dict, args, report: dict, save) -> None:
  import faiss  # pylint: disable=import-outside-toplevel
  from mlasr.targets import kmeans  # pylint: disable=import-outside-toplevel
  n, d = x.shape
  default_threads = faiss.omp_get_max_threads()
  sample = args.sample_size if args.sample_size and args.sample_size < n else None
  xs = np.ascontiguousarray(kmeans.sample_rows(x, sample, args.seed) if sample else x)
  case = dict(rows=n, dim=d, fit_rows=len(xs), **source, runs={})
  report["cases"][name] = case
  for k in args.ks:
    runs = case["runs"][str(k)] = {}
    init = xs[np.random.default_rng(args.seed + k).choice(len(xs), k, replace=False)].copy()

    def record(label, secs, centroids, extra=None):
      inertia, labels = inertia_np(x, centroids)
      runs[label] = dict(fit_s=secs, inertia=inertia, inertia_per_row=inertia / n,
                         **(extra or {}))
      print(f"  {name} K={k} {label}: {secs:.2f} s, inertia/row {inertia / n:.4f}", flush=True)
      save()
      return labels

    def faiss_fit(init_centroids=None, subsample=False, threads=1):
      faiss.omp_set_num_threads(threads)
      km = faiss.Kmeans(d, k, niter=args.niter, seed=args.seed, verbose=False,
                        max_points_per_centroid=256 if subsample else len(xs) // k + 1,
                        min_points_per_centroid=1)
      t = time.time()
      km.train(xs, init_centroids=init_centroids)
      secs = time.time() - t
      faiss.omp_set_num_threads(default_threads)
      return secs, np.asarray(km.centroids)

    def mlasr_fit(cfg, init_centroids=None):
      warm = dataclasses.replace(cfg, max_iter=1, max_steps=2)
      t = time.time()
      kmeans.KMeans(warm).fit(x, init=init_centroids)
      warm_s = time.time() - t
      t = time.time()
      model = kmeans.KMeans(cfg).fit(x, init=init_centroids)
      secs = time.time() - t
      assert model.num_fit_rows == len(xs)
      return secs, model, dict(warmup_s=warm_s, iters_or_steps=len(model.history))

    lloyd = kmeans.KMeansConfig(num_clusters=k, mode="full", max_iter=args.niter,
                                tol=-math.inf,  # never stop early: exactly niter iterations
                                batch_size=args.batch_size, seed=args.seed, sample_size=sample)
    # faiss at its best thread count here: OpenMP's busy-waiting barriers collapse when other
    # jobs load the machine (2 threads can be 100 x slower than 1), so both are timed.
    by_threads = {t: faiss_fit(init, threads=t) for t in sorted({1, default_threads})}
    threads = min(by_threads, key=lambda t: by_threads[t][0])
    secs, c = by_threads[threads]
    faiss_labels = record("faiss, same init", secs, c, dict(
        iters_or_steps=args.niter, threads=threads,
        fit_s_by_threads={str(t): v[0] for t, v in by_threads.items()}))
    secs, model, extra = mlasr_fit(lloyd, init)
    ours = record("mlasr Lloyd, same init", secs, model.centroids, extra)
    runs["mlasr Lloyd, same init"]["label_agreement_with_faiss"] = float(
        np.mean(ours == faiss_labels))
    secs, c = faiss_fit(threads=threads)
    record("faiss, own init", secs, c, dict(iters_or_steps=args.niter, threads=threads))
    secs, model, extra = mlasr_fit(lloyd)
    record("mlasr Lloyd, k-means++", secs, model.centroids, extra)
    minibatch = kmeans.KMeansConfig(num_clusters=k, mode="minibatch", batch_size=10_000,
                                    max_iter=100, seed=args.seed, sample_size=sample)
    secs, model, extra = mlasr_fit(minibatch)
    record("mlasr minibatch", secs, model.centroids, extra)
    secs, c = faiss_fit(subsample=True, threads=threads)
    record("faiss, 256 pts/centroid", secs, c, dict(iters_or_steps=args.niter, threads=threads,
                                                    fit_rows=min(len(xs), 256 * k)))
    for ours_label, ref_label in (("mlasr Lloyd, same init", "faiss, same init"),
                                  ("mlasr Lloyd, k-means++", "faiss, own init"),
                                  ("mlasr minibatch", "faiss, own init")):
      runs[ours_label]["inertia_ratio"] = runs[ours_label]["inertia"] / runs[ref_label]["inertia"]
      runs[ours_label]["time_ratio"] = runs[ours_label]["fit_s"] / runs[ref_label]["fit_s"]
      runs[ours_label]["against"] = ref_label
    save()


def markdown(report: dict) -> str:
  env = report["env"]
  lines = [f"# mlasr JAX k-means vs faiss ({report['date']})", "",
           f"{env['jax_devices']} x {env['jax_backend']} JAX device(s), faiss {env['faiss']} "
           f"at 1 or {env['faiss_threads']} OpenMP threads (the faster, per K: the `threads` "
           f"field of the JSON), {env['cpus']} CPUs (shared machine: "
           f"read ratios, not absolute seconds). {report['niter']} Lloyd iterations; fit time "
           "is warm (compilation excluded, reported as warm-up).", ""]
  for name, case in report["cases"].items():
    lines += [f"## {name}: {case['rows']} x {case['dim']} ({case['source']}), fit on "
              f"{case['fit_rows']} rows", "",
              "| K | method | fit s | iters/steps | inertia / row (all rows) | "
              "inertia ratio | time ratio | vs |", "|---:|---|---:|---:|---:|---:|---:|---|"]
    for k, runs in case["runs"].items():
      for label, r in runs.items():
        ratio = f"{r['inertia_ratio']:.4f}" if "inertia_ratio" in r else ""
        tratio = f"{r['time_ratio']:.2f}" if "time_ratio" in r else ""
        lines.append(f"| {k} | {label} | {r['fit_s']:.2f} | {r.get('iters_or_steps', '')} | "
                     f"{r['inertia_per_row']:.4f} | {ratio} | {tratio} | "
                     f"{r.get('against', '')} |")
    lines.append("")
  lines += ["Inertia ratio = mlasr / faiss inertia over every row of the case (one numpy "
            "float64 function); time ratio = mlasr / faiss fit seconds (> 1: mlasr slower).", ""]
  return "\n".join(lines)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--features", default="", help="extract_features output dir")
  p.add_argument("--data_dir", default=DEMO, help="benchmark TFDS dir to extract MFCC from")
  p.add_argument("--fraction", type=float, default=0.3, help="of the utterances, if extracting")
  p.add_argument("--espeak_seconds", type=float, default=600.0, help="fallback speech length")
  p.add_argument("--ks", default="100,500")
  p.add_argument("--niter", type=int, default=20)
  p.add_argument("--sample_size", type=int, default=0, help="fit rows (0: all rows)")
  p.add_argument("--batch_size", type=int, default=10_000, help="mlasr Lloyd rows per step")
  p.add_argument("--synthetic_rows", type=int, default=200_000, help="0: no gmm case")
  p.add_argument("--cases", default="speech,gmm")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out-dir", default="", help="default benchmarks/results/<device>_<date>")
  p.add_argument("--smoke", action="store_true", help="gmm only, 6000 rows, K=16, 5 iters")
  args = p.parse_args(argv)
  if args.smoke:
    args.cases, args.synthetic_rows, args.ks, args.niter = "gmm", 6000, "16", 5
    args.batch_size, args.sample_size = 1024, args.sample_size or 5000
  args.ks = [int(k) for k in args.ks.split(",")]

  import faiss  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  date = datetime.date.today().isoformat()
  if not args.out_dir:
    device = jax.default_backend() if jax.default_backend() == "cpu" else \
        jax.devices()[0].device_kind.replace(" ", "_").lower()
    args.out_dir = os.path.join(HERE, "results", f"{device}_{date}")
  os.makedirs(args.out_dir, exist_ok=True)
  report = dict(date=date, niter=args.niter, ks=args.ks, sample_size=args.sample_size,
                seed=args.seed, smoke=args.smoke,
                env=dict(jax=jax.__version__, jax_backend=jax.default_backend(),
                         jax_devices=jax.device_count(), faiss=faiss.__version__,
                         faiss_threads=faiss.omp_get_max_threads(), cpus=os.cpu_count(),
                         numpy=np.__version__, python=platform.python_version()),
                cases={})
  out_json = os.path.join(args.out_dir, "kmeans_vs_faiss.json")

  def save():
    with open(out_json + ".tmp", "w") as f:
      json.dump(report, f, indent=1)
    os.replace(out_json + ".tmp", out_json)

  for case in args.cases.split(","):
    if case == "speech":
      x, source = speech_features(args)
    elif case == "gmm":
      if not args.synthetic_rows:
        continue
      x = gmm(args.synthetic_rows, 32, 2 * max(args.ks), args.seed)
      source = dict(source=f"Gaussian mixture, {2 * max(args.ks)} components")
    else:
      raise ValueError(f"unknown case {case!r}")
    print(f"{case}: {x.shape[0]} x {x.shape[1]}", flush=True)
    run_case(case, x, source, args, report, save)
  with open(os.path.join(args.out_dir, "kmeans_vs_faiss.md"), "w", encoding="utf-8") as f:
    f.write(markdown(report))
  print(markdown(report))
  return report


if __name__ == "__main__":
  main()
