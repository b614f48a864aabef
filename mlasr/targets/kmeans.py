"""k-means in JAX: k-means++ init, Lloyd (full batch) or Sculley mini-batch updates, streaming
over feature chunks that do not fit in memory, data-parallel over a device mesh.

    km = KMeans(KMeansConfig(num_clusters=100, mode="minibatch", seed=0))
    km.fit(features)                       # [N, D] array, or
    km.fit(lambda: iter_feature_chunks())  # a callable returning a fresh iterator per pass
    labels = km.predict(x)                 # jitted, in fixed-size batches
    km.save(out_dir); km = KMeans.load(out_dir)

Design notes.
- Every jitted step sees one fixed [batch_size, D] shape (the last batch of a pass is zero-padded
  with weight 0), so each function compiles once.
- Data parallel: batches are placed sharded over the mesh axis "data" (batch_size is rounded up
  to a multiple of the device count) and centroids replicated; the one-hot-matmul sums then
  reduce across devices inside the jitted function (XLA inserts the all-reduce). Results match a
  single device up to float summation order (assignments identical on non-degenerate data).
- Mini-batch mode follows sklearn's MiniBatchKMeans: per-centroid learning rate 1 / (weight
  seen so far), i.e. c_k <- (c_k * n_k + sum of batch points in k) / (n_k + batch count in k);
  centroids whose weight is below reassignment_ratio * max weight are re-seeded (every ~10 K
  samples) on batch points drawn ∝ squared distance (far points); early stop when the
  exponentially weighted batch inertia has not improved for `max_no_improvement` steps.
- Lloyd mode: one pass over the data per iteration; empty clusters move to the farthest points
  seen in that pass (as sklearn); stop when inertia improves by less than `tol` (relative).
- Streams: init reads the stream once (counting it and reservoir-sampling `init_size` rows for
  k-means++); mini-batches come from a shuffle buffer of `shuffle_buffer` rows.
- Sample: `sample_size` fits on an exact uniform sample of that many rows, drawn without
  replacement (`sample_rows`); a stream stays a stream (each pass keeps the sampled rows of each
  chunk, in order), so the sample need not fit in memory either. Inertia and predict still
  apply to any rows.
- Deterministic given `seed` (numpy Generator for sampling/shuffling, jax keys for the rest).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from typing import Callable, Iterable, Iterator, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

log = logging.getLogger(__name__)

Data = Union[np.ndarray, Callable[[], Iterable[np.ndarray]]]
_HI = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class KMeansConfig:
  num_clusters: int = 100
  mode: str = "minibatch"             # "minibatch" (Sculley) | "full" (Lloyd)
  batch_size: int = 10_000            # rows per jitted step (the mini-batch in minibatch mode)
  max_iter: int = 100                 # Lloyd iterations / mini-batch epochs over the data
  max_steps: int | None = None        # minibatch: cap on the number of steps
  tol: float = 1e-4                   # full: relative inertia improvement to keep iterating
  max_no_improvement: int | None = 10  # minibatch early stopping (None: off)
  init_size: int | None = None        # k-means++ sample (default 3 * batch_size, >= 3 K)
  n_local_trials: int | None = None   # greedy k-means++ candidates (default 2 + ln K)
  reassignment_ratio: float = 0.01
  shuffle_buffer: int = 200_000       # rows shuffled together when streaming (minibatch)
  seed: int = 0
  sample_size: int | None = None      # fit on this many rows drawn uniformly (None: all rows)

  def __post_init__(self):
    if self.mode not in ("minibatch", "full"):
      raise ValueError(f"KMeansConfig.mode must be 'minibatch' or 'full', got {self.mode!r}")
    if self.num_clusters < 1 or self.batch_size < 1:
      raise ValueError(f"num_clusters ({self.num_clusters}) and batch_size ({self.batch_size})"
                       " must be positive")
    if self.sample_size is not None and self.sample_size < self.num_clusters:
      raise ValueError(f"sample_size ({self.sample_size}) must be at least num_clusters "
                       f"({self.num_clusters})")


def _sqdist(x: jax.Array, c: jax.Array, c_sq: jax.Array) -> jax.Array:
  """[N, K] squared distances (clamped at 0)."""
  x_sq = jnp.sum(x * x, -1, keepdims=True)
  return jnp.maximum(x_sq - 2.0 * jnp.dot(x, c.T, precision=_HI) + c_sq[None, :], 0.0)


@jax.jit
def _assign(x: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
  d2 = _sqdist(x, c, jnp.sum(c * c, -1))
  labels = jnp.argmin(d2, -1).astype(jnp.int32)
  return labels, jnp.take_along_axis(d2, labels[:, None], 1)[:, 0]


def _batch_stats(x, w, c):
  labels, d2 = _assign(x, c)
  onehot = jax.nn.one_hot(labels, c.shape[0], dtype=x.dtype) * w[:, None]
  sums = jnp.dot(onehot.T, x, precision=_HI)
  return labels, d2, sums, onehot.sum(0)


@jax.jit
def _lloyd_stats(x, w, c):
  """Per-cluster sums/weights, weighted inertia and the batch's K farthest points."""
  _, d2, sums, counts = _batch_stats(x, w, c)
  far_d2, far_idx = jax.lax.top_k(jnp.where(w > 0, d2, -1.0), c.shape[0])
  return sums, counts, jnp.sum(w * d2), far_d2, x[far_idx]


@jax.jit
def _minibatch_step(c, counts, x, w, key, reassign, ratio):
  """One Sculley / sklearn MiniBatchKMeans update; returns (c, counts, batch inertia)."""
  k = c.shape[0]
  _, d2, sums, bcounts = _batch_stats(x, w, c)
  new_counts = counts + bcounts
  upd = (c * counts[:, None] + sums) / jnp.maximum(new_counts, 1e-12)[:, None]
  c = jnp.where((bcounts > 0)[:, None], upd, c)
  inertia = jnp.sum(w * d2)

  # Re-seed starved centroids on far batch points (drawn ∝ d2 without replacement: Gumbel top-k).
  low = (new_counts < ratio * jnp.max(new_counts)) & reassign
  limit = jnp.maximum(1, (0.5 * jnp.sum(w > 0)).astype(jnp.int32))
  rank = jnp.cumsum(low) - 1  # reassigned centroid j takes the rank-th sampled point
  low = low & (rank < limit)
  logits = jnp.where((w > 0) & (d2 > 0), jnp.log(jnp.maximum(d2 * w, 1e-30)), -jnp.inf)
  gumbel = jax.random.gumbel(key, logits.shape)
  _, picks = jax.lax.top_k(logits + gumbel, k)
  cand = x[picks[jnp.clip(rank, 0, k - 1)]]
  c = jnp.where(low[:, None], cand, c)
  keep_min = jnp.min(jnp.where(low, jnp.inf, new_counts))
  new_counts = jnp.where(low, keep_min, new_counts)
  return c, new_counts, inertia, jnp.sum(low)


@functools.partial(jax.jit, static_argnames=("k", "n_trials"))
def _kmeans_pp(key, x, k: int, n_trials: int):
  """Greedy k-means++ (as sklearn): each new center is the best of n_trials D²-samples."""
  n = x.shape[0]
  x_sq = jnp.sum(x * x, -1)

  def d2_to(rows):  # [T, D] -> [T, N]
    return jnp.maximum(jnp.sum(rows * rows, -1)[:, None] - 2 * jnp.dot(rows, x.T, precision=_HI)
                       + x_sq[None, :], 0.0)

  key, sub = jax.random.split(key)
  first = jax.random.randint(sub, (), 0, n)
  centers = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(x[first])
  closest = d2_to(x[first][None])[0]

  def body(i, carry):
    centers, closest, key = carry
    key, sub = jax.random.split(key)
    logits = jnp.where(closest > 0, jnp.log(jnp.maximum(closest, 1e-30)), -jnp.inf)
    # All-zero distances (fewer distinct points than K): fall back to uniform candidates.
    logits = jnp.where(jnp.any(closest > 0), logits, 0.0)
    cand = jax.random.categorical(sub, logits, shape=(n_trials,))
    cand_d2 = jnp.minimum(closest[None, :], d2_to(x[cand]))
    best = jnp.argmin(cand_d2.sum(-1))
    return centers.at[i].set(x[cand[best]]), cand_d2[best], key

  centers, _, _ = jax.lax.fori_loop(1, k, body, (centers, closest, key))
  return centers


def _chunks(data: Data) -> Iterator[np.ndarray]:
  if isinstance(data, np.ndarray) or hasattr(data, "__array__"):
    yield np.asarray(data, np.float32)
    return
  if not callable(data):
    raise TypeError("k-means data must be an [N, D] array or a callable returning a fresh "
                    f"iterator of [n, D] chunks per pass, got {type(data).__name__}")
  for chunk in data():
    chunk = np.asarray(chunk, np.float32)
    if chunk.ndim != 2:
      raise ValueError(f"feature chunks must be [n, D], got shape {chunk.shape}")
    if len(chunk):
      yield chunk


def num_rows(data: Data) -> int:
  """Rows of an array or of one pass over a stream (memory-mapped chunks: headers only)."""
  return sum(len(c) for c in _chunks(data))


def sample_rows(data: Data, size: int, seed: int = 0) -> Data:
  """An exact uniform sample of `size` rows of data, without replacement, in data order.

  The row ids come from numpy's Generator(seed).choice (O(size) memory). An array gives an
  array; a stream gives a stream (a callable: each pass yields the sampled rows of each chunk,
  so no more than a chunk is held). size >= the number of rows returns data itself.
  """
  n = num_rows(data)
  if size >= n:
    return data
  ids = np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
  if not callable(data):
    return np.asarray(data, np.float32)[ids]

  def chunks():
    start = 0
    for chunk in _chunks(data):
      lo, hi = np.searchsorted(ids, [start, start + len(chunk)])
      if hi > lo:
        yield np.asarray(chunk[ids[lo:hi] - start], np.float32)
      start += len(chunk)
    if start != n:
      raise ValueError(f"k-means stream changed between passes: {start} rows, then {n}")

  return chunks


def _batches(data: Data, batch_size: int, rng: np.random.Generator | None,
             buffer_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Fixed-size (x, weight) batches over one pass; shuffled through a buffer if rng is given.

  The last batch is zero-padded with weight 0.
  """
  buf, size = [], 0

  def drain(final: bool):
    nonlocal buf, size
    x = np.concatenate(buf) if len(buf) > 1 else buf[0]
    if rng is not None:
      x = x[rng.permutation(len(x))]
    full = len(x) // batch_size * batch_size
    for s in range(0, full, batch_size):
      yield x[s:s + batch_size], np.ones(batch_size, np.float32)
    rest = x[full:]
    buf, size = ([rest], len(rest)) if len(rest) else ([], 0)
    if final and len(rest):
      pad = np.zeros((batch_size - len(rest), x.shape[1]), np.float32)
      w = np.concatenate([np.ones(len(rest), np.float32), np.zeros(len(pad), np.float32)])
      buf, size = [], 0
      yield np.concatenate([rest, pad]), w

  for chunk in _chunks(data):
    buf.append(chunk)
    size += len(chunk)
    if size >= max(buffer_rows if rng is not None else 0, batch_size):
      yield from drain(False)
  if size:
    yield from drain(True)


class KMeans:
  """k-means model; see the module docstring. Attributes after fit: centroids [K, D] float32,
  counts [K] (weight assigned per cluster at the end of training), history (per step/iter)."""

  def __init__(self, config: KMeansConfig = KMeansConfig(), mesh: jax.sharding.Mesh | None = None):
    self.config = config
    if mesh is None:
      mesh = jax.make_mesh((jax.device_count(),), ("data",),
                           axis_types=(jax.sharding.AxisType.Auto,))
    self.mesh = mesh
    n_dev = mesh.devices.size
    self.batch_size = int(math.ceil(config.batch_size / n_dev) * n_dev)
    self.centroids: np.ndarray | None = None
    self.counts: np.ndarray | None = None
    self.history: list[dict] = []
    self.num_samples_seen = 0
    self.num_fit_rows = 0  # rows the last fit() used (after sample_size)

  # ---- placement
  def _put_batch(self, x, w):
    return (jax.device_put(x, NamedSharding(self.mesh, P("data", None))),
            jax.device_put(w, NamedSharding(self.mesh, P("data"))))

  def _put_rep(self, a):
    return jax.device_put(a, NamedSharding(self.mesh, P()))

  # ---- fitting
  def _init(self, data: Data, rng: np.random.Generator, run_pp: bool = True) -> int:
    """k-means++ on a reservoir sample of init_size rows; returns the number of rows.

    run_pp=False (an explicit init) still reads the stream (count, same rng draws) but skips
    k-means++."""
    cfg = self.config
    k = cfg.num_clusters
    init_size = cfg.init_size or max(3 * cfg.batch_size, 3 * k)
    if cfg.mode == "full" and cfg.init_size is None:
      init_size = max(init_size, 100_000)
    reservoir, seen = None, 0
    for chunk in _chunks(data):
      if reservoir is None:
        reservoir = np.zeros((init_size, chunk.shape[1]), np.float32)
      take = min(len(chunk), max(init_size - seen, 0))
      reservoir[seen:seen + take] = chunk[:take]
      rest = chunk[take:]
      if len(rest):  # Algorithm R, vectorised: row t replaces slot j ~ U[0, t] if j < size.
        t = seen + take + np.arange(len(rest))
        j = (rng.random(len(rest)) * (t + 1)).astype(np.int64)
        hit = j < init_size
        reservoir[j[hit]] = rest[hit]
      seen += len(chunk)
    if reservoir is None:
      raise ValueError("k-means got no data (empty array or stream)")
    sample = reservoir[:min(seen, init_size)]
    if len(sample) < k:
      raise ValueError(f"k-means: {len(sample)} points for {k} clusters; need at least K points")
    self.counts = np.zeros(k, np.float32)
    self._dim = sample.shape[1]
    if not run_pp:
      return seen
    trials = cfg.n_local_trials or 2 + int(math.log(k))
    key = jax.random.key(cfg.seed)
    self.centroids = np.asarray(_kmeans_pp(key, jnp.asarray(sample), k, trials))
    return seen

  def fit(self, data: Data, init: np.ndarray | None = None) -> "KMeans":
    """Fits on an [N, D] array or a callable returning a fresh iterator of [n, D] chunks.

    `init` ([K, D]) replaces k-means++ (the data is still read once to count it). With
    config.sample_size, only that many rows (sample_rows, seeded by config.seed) are used.
    """
    cfg = self.config
    if cfg.sample_size is not None:
      data = sample_rows(data, cfg.sample_size, seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    n = self._init(data, rng, run_pp=init is None)
    self.num_fit_rows = n
    if init is not None:
      init = np.asarray(init, np.float32)
      if init.shape != (cfg.num_clusters, self._dim):
        raise ValueError(f"init has shape {init.shape}, expected {(cfg.num_clusters, self._dim)}")
      self.centroids = init
    if cfg.mode == "full":
      self._fit_lloyd(data)
    else:
      self._fit_minibatch(data, n, rng)
    return self

  def _fit_lloyd(self, data: Data) -> None:
    cfg = self.config
    c = self._put_rep(self.centroids)
    prev = None
    for it in range(cfg.max_iter):
      sums = counts = inertia = far_d2 = far_x = None
      for x, w in _batches(data, self.batch_size, None, 0):
        s, cn, i, fd, fx = _lloyd_stats(*self._put_batch(x, w), c)
        if sums is None:
          sums, counts, inertia, far_d2, far_x = s, cn, i, fd, fx
        else:
          sums, counts, inertia = sums + s, counts + cn, inertia + i
          far_d2, top = jax.lax.top_k(jnp.concatenate([far_d2, fd]), cfg.num_clusters)
          far_x = jnp.concatenate([far_x, fx])[top]
      counts_np = np.asarray(counts)
      new = np.asarray(sums) / np.maximum(counts_np, 1e-12)[:, None]
      empty = np.flatnonzero(counts_np == 0)
      if len(empty):  # farthest points of this pass, as sklearn's _relocate_empty_clusters
        new[empty] = np.asarray(far_x)[:len(empty)]
      old = self.centroids
      self.centroids = new.astype(np.float32)
      self.counts = counts_np
      inertia = float(inertia)
      self.history.append(dict(iter=it, inertia=inertia, empty=int(len(empty)),
                               shift=float(np.sum((self.centroids - old) ** 2))))
      log.info("k-means Lloyd iter %d: inertia %.6g, %d empty clusters", it, inertia, len(empty))
      c = self._put_rep(self.centroids)
      if prev is not None and not len(empty) and (prev - inertia) <= cfg.tol * abs(prev):
        break
      prev = inertia

  def _fit_minibatch(self, data: Data, n: int, rng: np.random.Generator) -> None:
    cfg = self.config
    k = cfg.num_clusters
    c, counts = self._put_rep(self.centroids), self._put_rep(self.counts)
    key = jax.random.fold_in(jax.random.key(cfg.seed), 1)
    max_steps = cfg.max_steps or cfg.max_iter * max(1, math.ceil(n / self.batch_size))
    alpha = min(1.0, 2.0 * self.batch_size / (n + 1))
    ewa, best, no_improve, since_reassign, step = None, np.inf, 0, 0, 0
    done = False
    for epoch in range(cfg.max_iter):
      for x, w in _batches(data, self.batch_size, rng, cfg.shuffle_buffer):
        since_reassign += int(w.sum())
        reassign = since_reassign >= 10 * k or bool(jnp.any(counts == 0))
        if reassign:
          since_reassign = 0
        c, counts, inertia, n_re = _minibatch_step(
            c, counts, *self._put_batch(x, w), jax.random.fold_in(key, step),
            jnp.asarray(reassign and cfg.reassignment_ratio > 0),
            jnp.float32(cfg.reassignment_ratio))
        step += 1
        batch_inertia = float(inertia) / max(float(w.sum()), 1.0)
        ewa = batch_inertia if ewa is None else ewa * (1 - alpha) + batch_inertia * alpha
        self.history.append(dict(step=step, epoch=epoch, batch_inertia=batch_inertia, ewa=ewa,
                                 reassigned=int(n_re)))
        if cfg.max_no_improvement is not None:
          if ewa < best:
            best, no_improve = ewa, 0
          else:
            no_improve += 1
          if no_improve >= cfg.max_no_improvement:
            log.info("k-means mini-batch: converged (no improvement) at step %d", step)
            done = True
        if step >= max_steps:
          done = True
        if done:
          break
      if done:
        break
    self.num_samples_seen = step * self.batch_size
    self.centroids = np.asarray(c)
    self.counts = np.asarray(counts)

  # ---- inference
  def predict(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """Nearest centroid of each row of x [N, D] -> int32 [N] (jitted, fixed-size batches)."""
    labels, _ = self._predict(x, batch_size)
    return labels

  def _predict(self, x, batch_size):
    if self.centroids is None:
      raise ValueError("KMeans: fit() or load() first")
    x = np.asarray(x, np.float32)
    bs = batch_size or self.batch_size
    n_dev = self.mesh.devices.size
    bs = int(math.ceil(min(bs, max(len(x), 1)) / n_dev) * n_dev)
    c = self._put_rep(self.centroids)
    labels, d2 = [], []
    for s in range(0, len(x), bs):
      part = x[s:s + bs]
      pad = bs - len(part)
      if pad:
        part = np.concatenate([part, np.zeros((pad, x.shape[1]), np.float32)])
      lab, dist = _assign(self._put_batch(part, np.ones(bs, np.float32))[0], c)
      labels.append(np.asarray(lab)[:bs - pad])
      d2.append(np.asarray(dist)[:bs - pad])
    if not labels:
      return np.zeros([0], np.int32), np.zeros([0], np.float32)
    return np.concatenate(labels), np.concatenate(d2)

  def inertia(self, data: Data) -> float:
    """Sum of squared distances of every row to its nearest centroid (float64 total)."""
    total = 0.0
    for chunk in _chunks(data):
      total += float(np.sum(self._predict(chunk, None)[1], dtype=np.float64))
    return total

  # ---- persistence
  def save(self, directory: str) -> None:
    """Writes kmeans.npz (centroids, counts) and kmeans.json (config, history) atomically."""
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, "kmeans.tmp.npz")
    np.savez(tmp, centroids=self.centroids, counts=self.counts)
    os.replace(tmp, os.path.join(directory, "kmeans.npz"))
    meta = dict(config=dataclasses.asdict(self.config), num_clusters=int(len(self.centroids)),
                dim=int(self.centroids.shape[1]), fit_rows=int(self.num_fit_rows),
                history=self.history[-1000:])
    with open(os.path.join(directory, "kmeans.json.tmp"), "w") as f:
      json.dump(meta, f, indent=1)
    os.replace(os.path.join(directory, "kmeans.json.tmp"), os.path.join(directory, "kmeans.json"))

  @classmethod
  def load(cls, directory: str, mesh: jax.sharding.Mesh | None = None) -> "KMeans":
    path = os.path.join(directory, "kmeans.npz")
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{path}: no k-means model; run data_prep/fit_kmeans.py first")
    with open(os.path.join(directory, "kmeans.json")) as f:
      meta = json.load(f)
    model = cls(KMeansConfig(**meta["config"]), mesh)
    with np.load(path) as z:
      model.centroids = z["centroids"].astype(np.float32)
      model.counts = z["counts"]
    model.history = meta.get("history", [])
    return model
