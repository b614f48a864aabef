r"""JAX k-means (mlasr.targets.kmeans) vs scikit-learn MiniBatchKMeans on MFCCs of speech.

  python -m benchmarks.kmeans_vs_sklearn [--k 100] [--seconds 600] [--features DIR]

Features: 39-d MFCC (mlasr.targets.mfcc) of espeak-ng speech synthesised here (English
sentences, several speeds/voices), or the chunks written by data_prep/extract_features.py
(`--features`). Both libraries get the same float32 matrix, K, batch size, init (k-means++),
max_iter and early stopping (max_no_improvement=10); inertia is measured on all frames by the
same code. Prints one table: wall time (fit only; the JAX row includes compilation, and a
second fit shows it without) and inertia relative to sklearn.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import time

import numpy as np

SENTENCES = [
    "the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore",
    "a stitch in time saves nine", "how much wood would a woodchuck chuck if it could",
    "every good boy deserves fudge", "pack my box with five dozen liquor jugs",
    "we have to go to the station before the train leaves", "numbers like seventeen and ninety",
    "the weather today is cold and rainy in the north", "please call stella and ask her to bring",
    "six spoons of fresh snow peas and five thick slabs of blue cheese",
    "a large fawn jumped quickly over white zinc boxes"]
VOICES = ["en", "en+f3", "en+m3", "en-us", "en+f2", "en+m7"]


def speech_mfcc(seconds: float) -> np.ndarray:
  import soundfile as sf  # pylint: disable=import-outside-toplevel
  from scipy import signal  # pylint: disable=import-outside-toplevel
  from data_prep import extract_features  # pylint: disable=import-outside-toplevel
  waves, total, i = [], 0.0, 0
  while total < seconds:
    text = SENTENCES[i % len(SENTENCES)]
    voice = VOICES[(i // len(SENTENCES)) % len(VOICES)]
    speed = 130 + 10 * (i % 7)
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                         capture_output=True, check=True).stdout
    x, sr = sf.read(io.BytesIO(wav), dtype="float32")
    x = signal.resample_poly(x, 320, sr // 50).astype(np.float32)
    waves.append(x)
    total += len(x) / 16000
    i += 1
  # Bucketed, batched, padding-aware MFCC (a handful of compiled shapes).
  featurizer = extract_features.make_featurizer(extract_features.FeatureSpec("mfcc"))
  return np.concatenate(featurizer(waves))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--k", type=int, default=100)
  p.add_argument("--seconds", type=float, default=600.0, help="speech to synthesise")
  p.add_argument("--features", default="", help="extract_features output dir instead")
  p.add_argument("--batch_size", type=int, default=10_000)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args()

  t = time.time()
  if args.features:
    from data_prep import extract_features  # pylint: disable=import-outside-toplevel
    x = np.concatenate(list(extract_features.feature_chunks(args.features)()))
  else:
    x = speech_mfcc(args.seconds)
  x = np.ascontiguousarray(x, np.float32)
  print(f"features: {x.shape[0]} frames x {x.shape[1]} ({x.shape[0] / 100 / 60:.1f} min at "
        f"100 Hz), prepared in {time.time() - t:.1f} s")

  from sklearn.cluster import MiniBatchKMeans  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  from mlasr.targets import kmeans  # pylint: disable=import-outside-toplevel

  rows = []
  t = time.time()
  sk = MiniBatchKMeans(args.k, batch_size=args.batch_size, n_init=1, max_iter=100,
                       max_no_improvement=10, random_state=args.seed).fit(x)
  sk_time = time.time() - t
  cfg = kmeans.KMeansConfig(num_clusters=args.k, mode="minibatch", batch_size=args.batch_size,
                            max_iter=100, max_no_improvement=10, seed=args.seed)
  # Same inertia code for both: sklearn's centroids go through our predict.
  ref = kmeans.KMeans(cfg)
  ref.centroids = sk.cluster_centers_.astype(np.float32)
  sk_inertia = ref.inertia(x)
  rows.append(("sklearn MiniBatchKMeans", sk_time, sk_inertia, sk.n_steps_))
  for name in ("mlasr JAX minibatch (incl. compile)", "mlasr JAX minibatch (warm)"):
    t = time.time()
    model = kmeans.KMeans(cfg).fit(x)
    rows.append((name, time.time() - t, model.inertia(x), len(model.history)))
  t = time.time()
  full = kmeans.KMeans(kmeans.KMeansConfig(num_clusters=args.k, mode="full", max_iter=30,
                                           batch_size=args.batch_size, seed=args.seed)).fit(x)
  rows.append(("mlasr JAX Lloyd (full batch, <=30 iters)", time.time() - t, full.inertia(x),
               len(full.history)))

  print(f"\nK={args.k}, batch {args.batch_size}, {jax.device_count()} {jax.default_backend()} "
        f"device(s); inertia per frame of sklearn: {sk_inertia / len(x):.2f}")
  print("| method | fit s | steps/iters | inertia / sklearn | speed-up vs sklearn |")
  print("|---|---:|---:|---:|---:|")
  for name, secs, inertia, steps in rows:
    print(f"| {name} | {secs:.2f} | {steps} | {inertia / sk_inertia:.4f} | "
          f"{sk_time / secs:.2f}x |")


if __name__ == "__main__":
  main()
