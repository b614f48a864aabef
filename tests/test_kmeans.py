"""JAX k-means vs scikit-learn (and faiss when installed), streaming/array equivalence, fitting
on a sample, empty clusters, persistence and data-parallel (8 fake CPU devices) vs
single-device results."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans, MiniBatchKMeans as SkMiniBatch
from sklearn.datasets import make_blobs

from mlasr.targets import kmeans as km

K = 25


@pytest.fixture(scope="module")
def blobs():
  x, _ = make_blobs(n_samples=8000, centers=K, n_features=12, center_box=(-20, 20),
                    cluster_std=[1.0 + 0.1 * (i % 5) for i in range(K)], random_state=0)
  return x.astype(np.float32)


@pytest.mark.parametrize("mode", ["full", "minibatch"])
def test_inertia_within_1_percent_of_sklearn(blobs, mode):
  for seed in (0,):
    ours = km.KMeans(km.KMeansConfig(num_clusters=K, mode=mode, batch_size=1024, seed=seed))
    ours.fit(blobs)
    if mode == "full":
      ref = SkKMeans(K, n_init=1, random_state=seed).fit(blobs)
    else:
      ref = SkMiniBatch(K, n_init=1, batch_size=1024, random_state=seed).fit(blobs)
    ratio = ours.inertia(blobs) / -ref.score(blobs)
    assert abs(ratio - 1) <= 0.01, (mode, seed, ratio)


def test_predict_is_nearest_centroid(blobs):
  model = km.KMeans(km.KMeansConfig(num_clusters=K, mode="full", batch_size=1000, max_iter=3))
  model.fit(blobs)
  x = blobs[:2345]  # not a multiple of the batch size
  d2 = ((x[:, None, :].astype(np.float64) - model.centroids[None].astype(np.float64)) ** 2).sum(-1)
  np.testing.assert_array_equal(model.predict(x), d2.argmin(1))
  assert model.inertia(x) == pytest.approx(d2.min(1).sum(), rel=1e-4)


def test_stream_equals_array_and_is_deterministic(blobs):
  cfg = km.KMeansConfig(num_clusters=K, mode="full", batch_size=700, init_size=3000, seed=3)
  a = km.KMeans(cfg).fit(blobs)
  chunks = lambda: (blobs[i:i + 333] for i in range(0, len(blobs), 333))  # noqa: E731
  b = km.KMeans(cfg).fit(chunks)
  np.testing.assert_array_equal(a.centroids, b.centroids)
  mb = km.KMeansConfig(num_clusters=K, batch_size=512, seed=3, shuffle_buffer=2000,
                       max_steps=40)
  c1, c2 = km.KMeans(mb).fit(chunks), km.KMeans(mb).fit(chunks)
  np.testing.assert_array_equal(c1.centroids, c2.centroids)
  other = km.KMeans(dataclasses.replace(mb, seed=4)).fit(chunks)
  assert not np.array_equal(c1.centroids, other.centroids)
  # A stream is not held in memory: the mini-batch fit still reaches a good solution.
  ref = SkKMeans(K, n_init=1, random_state=0).fit(blobs)
  assert c1.inertia(chunks) / -ref.score(blobs) < 1.05


@pytest.mark.parametrize("mode", ["full", "minibatch"])
def test_empty_cluster_moves_to_the_data(blobs, mode):
  init = blobs[np.random.default_rng(0).choice(len(blobs), K, replace=False)].copy()
  init[0] = 1e4  # never the nearest centroid of any point: an empty cluster
  model = km.KMeans(km.KMeansConfig(num_clusters=K, mode=mode, batch_size=1024, max_iter=20))
  model.fit(blobs, init=init)
  assert np.abs(model.centroids[0]).max() < 100
  assert len(np.unique(model.predict(blobs))) == K


def test_save_load_round_trip(blobs, tmp_path):
  model = km.KMeans(km.KMeansConfig(num_clusters=10, batch_size=1000, seed=7)).fit(blobs)
  model.save(str(tmp_path))
  again = km.KMeans.load(str(tmp_path))
  assert again.config == model.config
  np.testing.assert_array_equal(again.centroids, model.centroids)
  np.testing.assert_array_equal(again.predict(blobs), model.predict(blobs))
  assert json.load(open(tmp_path / "kmeans.json"))["num_clusters"] == 10


_SHARDED = textwrap.dedent("""
    import sys, numpy as np, jax
    from sklearn.datasets import make_blobs
    from mlasr.targets import kmeans as km
    assert jax.device_count() == int(sys.argv[2]), jax.devices()
    x, _ = make_blobs(n_samples=3000, centers=12, n_features=6, center_box=(-15, 15),
                      random_state=1)
    x = x.astype(np.float32)
    out = {}
    for mode in ("full", "minibatch"):
      m = km.KMeans(km.KMeansConfig(num_clusters=12, mode=mode, batch_size=512, seed=0)).fit(x)
      out[mode] = m.centroids
      out[mode + "_labels"] = m.predict(x)
      out[mode + "_steps"] = np.array(len(m.history))
      if jax.device_count() > 1:  # the batches really were split over the devices
        b = m._put_batch(x[:512], np.ones(512, np.float32))[0]
        assert len(b.sharding.device_set) == jax.device_count()
    np.savez(sys.argv[1], **out)
""")


def test_eight_devices_match_one(tmp_path, monkeypatch):
  import jax  # pylint: disable=import-outside-toplevel
  if jax.device_count() != 1:
    pytest.skip("the in-process reference needs exactly one device")
  results = {}
  monkeypatch.setattr(sys, "argv", ["-", str(tmp_path / "dev1.npz"), "1"])
  exec(_SHARDED, {"__name__": "sharded_reference"})  # pylint: disable=exec-used
  results[1] = np.load(tmp_path / "dev1.npz")
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
      os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip())
  subprocess.run([sys.executable, "-c", _SHARDED, str(tmp_path / "dev8.npz"), "8"], env=env,
                 check=True, timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)))
  results[8] = np.load(tmp_path / "dev8.npz")
  for mode in ("full", "minibatch"):
    np.testing.assert_array_equal(results[1][mode + "_labels"], results[8][mode + "_labels"])
    assert results[1][mode + "_steps"] == results[8][mode + "_steps"]
    # Same math, different float summation order across devices.
    np.testing.assert_allclose(results[1][mode], results[8][mode], rtol=1e-5, atol=1e-4)


def _inertia_np(x, c):
  """Brute-force float64 inertia, independent of both k-means implementations."""
  d2 = ((x[:, None, :].astype(np.float64) - c[None].astype(np.float64)) ** 2).sum(-1)
  return d2.min(1).sum()


def test_sample_rows_is_an_exact_uniform_sample_streamed_or_not(blobs):
  chunks = lambda: (blobs[i:i + 333] for i in range(0, len(blobs), 333))  # noqa: E731
  assert km.num_rows(chunks) == km.num_rows(blobs) == len(blobs)
  arr = km.sample_rows(blobs, 1000, seed=5)
  stream = km.sample_rows(chunks, 1000, seed=5)
  assert callable(stream) and max(len(c) for c in stream()) <= 333  # still chunk by chunk
  np.testing.assert_array_equal(np.concatenate(list(stream())), arr)
  np.testing.assert_array_equal(np.concatenate(list(stream())), arr)  # every pass the same
  # Exactly 1000 distinct rows of the data, in data order (blobs has no duplicate rows).
  pos = {row.tobytes(): i for i, row in enumerate(blobs)}
  ids = [pos[row.tobytes()] for row in arr]
  assert len(set(ids)) == 1000 and ids == sorted(ids)
  assert not np.array_equal(km.sample_rows(blobs, 1000, seed=6), arr)
  assert km.sample_rows(blobs, len(blobs), seed=5) is blobs
  # Uniform: across seeds every row is drawn about 1000/8000 of the time.
  hits = np.zeros(len(blobs))
  for seed in range(40):
    hits[[pos[r.tobytes()] for r in km.sample_rows(blobs, 1000, seed=seed)]] += 1
  assert abs(hits.mean() - 5.0) < 1e-9 and hits.std() < 3.0


def test_fit_on_a_sample_equals_fit_on_the_sampled_rows(blobs):
  chunks = lambda: (blobs[i:i + 500] for i in range(0, len(blobs), 500))  # noqa: E731
  for mode in ("full", "minibatch"):
    cfg = km.KMeansConfig(num_clusters=K, mode=mode, batch_size=512, seed=2, sample_size=3000)
    sampled = km.KMeans(cfg).fit(chunks)
    assert sampled.num_fit_rows == 3000
    ref = km.KMeans(dataclasses.replace(cfg, sample_size=None)).fit(
        km.sample_rows(blobs, 3000, seed=2))
    np.testing.assert_allclose(sampled.centroids, ref.centroids, rtol=1e-6, atol=1e-5)
    # A 3000-row sample of 25 blobs is still a good fit of all 8000 rows.
    full = SkKMeans(K, n_init=1, random_state=0).fit(blobs)
    assert sampled.inertia(blobs) / -full.score(blobs) < 1.02
  with pytest.raises(ValueError, match="sample_size"):
    km.KMeansConfig(num_clusters=10, sample_size=5)


def test_explicit_init_skips_kmeans_pp(blobs, monkeypatch):
  init = blobs[:K].copy()
  monkeypatch.setattr(km, "_kmeans_pp", lambda *a, **k: pytest.fail("k-means++ ran"))
  model = km.KMeans(km.KMeansConfig(num_clusters=K, mode="full", max_iter=0)).fit(blobs, init)
  np.testing.assert_array_equal(model.centroids, init)
  with pytest.raises(ValueError, match="init has shape"):
    km.KMeans(km.KMeansConfig(num_clusters=K, mode="full")).fit(blobs, init[:, :3])


def test_inertia_within_a_small_factor_of_faiss(blobs):
  faiss = pytest.importorskip("faiss")
  import math  # pylint: disable=import-outside-toplevel
  x = blobs[:4000]
  init = x[np.random.default_rng(0).choice(len(x), K, replace=False)].copy()
  ref = faiss.Kmeans(x.shape[1], K, niter=25, seed=0, max_points_per_centroid=len(x),
                     min_points_per_centroid=1)
  ref.train(x, init_centroids=init.copy())
  ours = km.KMeans(km.KMeansConfig(num_clusters=K, mode="full", max_iter=25, tol=-math.inf,
                                   batch_size=1024)).fit(x, init=init)
  # Same init, same number of Lloyd iterations: the same local optimum unless a cluster
  # empties (faiss splits the largest one, mlasr moves it to the farthest point).
  same = _inertia_np(x, ours.centroids) / _inertia_np(x, ref.centroids)
  assert abs(same - 1) < 0.01, same
  # Each with its own init (mlasr k-means++, faiss random rows): mlasr within 5 % or better.
  own = faiss.Kmeans(x.shape[1], K, niter=25, seed=0, max_points_per_centroid=len(x))
  own.train(x)
  ours = km.KMeans(km.KMeansConfig(num_clusters=K, mode="full", max_iter=25,
                                   batch_size=1024)).fit(x)
  assert _inertia_np(x, ours.centroids) / _inertia_np(x, own.centroids) < 1.05


def test_faiss_benchmark_smoke(tmp_path):
  pytest.importorskip("faiss")
  from benchmarks import kmeans_vs_faiss as bench  # pylint: disable=import-outside-toplevel
  x = np.random.default_rng(0).standard_normal((300, 5)).astype(np.float32)
  c = x[:7]
  total, labels = bench.inertia_np(x, c, chunk=64)
  assert total == pytest.approx(_inertia_np(x, c), rel=1e-9)
  np.testing.assert_array_equal(labels, ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1))
  report = bench.main(["--smoke", "--out-dir", str(tmp_path)])
  runs = report["cases"]["gmm"]["runs"]["16"]
  assert json.load(open(tmp_path / "kmeans_vs_faiss.json")) == json.loads(json.dumps(report))
  assert (tmp_path / "kmeans_vs_faiss.md").read_text().count("| 16 |") == len(runs) == 6
  assert report["cases"]["gmm"]["fit_rows"] == 5000
  same = runs["mlasr Lloyd, same init"]
  assert same["against"] == "faiss, same init" and 0.9 < same["inertia_ratio"] < 1.1
  assert same["inertia"] / same["inertia_ratio"] == pytest.approx(
      runs["faiss, same init"]["inertia"])
