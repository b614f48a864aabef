"""Span masking of wav2vec 2.0 / HuBERT (fairseq `compute_mask_indices`, static selection).

- `compute_mask_indices`: NumPy reference with fairseq's semantics, for tests and data work.
- `jax_mask_indices`: the same distribution with fixed shapes, used inside jit.
- `jax_channel_mask`: channel (feature-dim) spans for fine-tuning, zeroed on every frame.

Follows fairseq's current `compute_mask_indices` (the default `num_mask_ver=2` of its
December 2022 rewrite): every row draws its own number of spans, with or without a padding
mask, channel masks included (before that change, rows without a padding mask shared one
draw per batch, which with `require_same_masks` masks more: channel p=0.1, L=64 over 768
channels, 8 rows, masks 8.3 % with a draw per row against 9.2 % with one per batch).

Per row with T real frames: num_spans = max(min_masks, int(mask_prob * T / mask_length + u)),
u ~ U[0, 1); span starts drawn without replacement from the first T - mask_length positions,
so the last frame is never masked; when num_spans >= T - mask_length the starts come from
the first num_spans + 1 positions instead (fairseq's short-row case), spans may then cover the
whole row, and fairseq (and the NumPy reference here) raise "the entire sequence is masked".
Spans may overlap and are clipped to T. With `require_same_masks` every row keeps a random
subset of its masked frames of the batch-minimum size, so all rows have the same number of
masked frames.

Deliberate deviations from fairseq:
- rows with no real frames (padding rows of an eval batch) get no mask and do not take part
  in the batch minimum (fairseq raises on them, and counting them would unmask the batch);
- a row that draws no span gets no mask (fairseq raises "this should never happen");
- `jax_mask_indices` runs inside jit and cannot raise on data: a short row whose spans cover
  all its frames comes out fully masked there. `jax_channel_mask`, whose size is static,
  raises at trace time when that can happen.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
  """Time and channel masking (channel masking off by default).

  HuBERT's pretraining recipe: 0.8/10/2; its fine-tuning recipe: time 0.75/10, channel 0.5/64.
  """
  mask_prob: float = 0.8
  mask_length: int = 10
  min_masks: int = 2
  require_same_masks: bool = True
  mask_dropout: float = 0.0
  mask_channel_prob: float = 0.0
  mask_channel_length: int = 64

  @classmethod
  def from_dict(cls, fields) -> MaskingConfig:
    """From a ConfigDict/dict; unknown keys are an error naming the known ones."""
    fields = dict(fields or {})
    known = {f.name for f in dataclasses.fields(cls)}
    if unknown := set(fields) - known:
      raise ValueError(f"unknown masking config fields {sorted(unknown)}; known: {sorted(known)}")
    return cls(**fields)


def compute_mask_indices(shape: tuple[int, int], padding_mask: np.ndarray | None,
                         mask_prob: float, mask_length: int, min_masks: int = 0,
                         rng: np.random.Generator | None = None, require_same_masks: bool = True,
                         mask_dropout: float = 0.0, no_overlap: bool = False,
                         allow_full_mask: bool = False) -> np.ndarray:
  """fairseq's compute_mask_indices (mask_type "static", min_space 0). Returns bool [B, T].

  Args:
    shape: (batch, frames).
    padding_mask: [B, T] bool, True on PADDING (fairseq's convention), or None: every row is
      T long. Either way each row draws its own number of spans (current fairseq).
    mask_prob: number of spans per row ≈ mask_prob * T / mask_length (see module doc).
    mask_length: span length.
    min_masks: minimum number of spans per row.
    rng: numpy Generator (default: a fresh unseeded one).
    require_same_masks: trim every row to the batch-minimum number of masked frames.
    mask_dropout: then unmask this fraction (rounded) of each row's masked frames.
    no_overlap: place spans in disjoint free segments instead (fairseq's `arrange`).
    allow_full_mask: keep a row whose spans cover all its frames fully masked, as
      `jax_mask_indices` does, instead of raising ValueError as fairseq does.
  """
  rng = rng if rng is not None else np.random.default_rng()
  bsz, all_sz = shape
  mask = np.zeros((bsz, all_sz), bool)
  mask_idcs = []
  for i in range(bsz):
    sz = all_sz - (int(np.sum(padding_mask[i])) if padding_mask is not None else 0)
    num_mask = max(min_masks, int(mask_prob * sz / float(mask_length) + rng.random()))
    if sz <= 0 or num_mask <= 0:
      mask_idcs.append(None if sz <= 0 else np.zeros(0, np.int64))
      continue
    if no_overlap:
      mask_idc = _arrange_no_overlap(sz, num_mask, mask_length, rng)
    else:
      min_len = mask_length
      if sz - min_len <= num_mask:
        min_len = sz - num_mask - 1
      starts = rng.choice(sz - min_len, num_mask, replace=False)
      mask_idc = (starts[:, None] + np.arange(mask_length)[None, :]).reshape(-1)
    mask_idc = np.unique(mask_idc[mask_idc < sz])
    if len(mask_idc) >= sz and not allow_full_mask:
      raise ValueError(f"row {i}: its {num_mask} spans of {mask_length} mask the entire "
                       f"sequence of {sz} frames (fairseq raises here too); drop utterances "
                       "this short or lower mask_prob / mask_length / min_masks.")
    mask_idcs.append(mask_idc)

  real = [m for m in mask_idcs if m is not None]
  target_len = min(len(m) for m in real) if require_same_masks and real else None
  for i, mask_idc in enumerate(mask_idcs):
    if mask_idc is None:
      continue
    if target_len is not None and len(mask_idc) > target_len:
      mask_idc = rng.choice(mask_idc, target_len, replace=False)
    mask[i, mask_idc] = True
    if mask_dropout > 0:
      masked = np.flatnonzero(mask[i])
      num_holes = int(np.rint(len(masked) * mask_dropout))
      mask[i, rng.choice(masked, num_holes, replace=False)] = False
  return mask


def _arrange_no_overlap(sz: int, num_mask: int, length: int, rng: np.random.Generator):
  """fairseq's no_overlap placement (min_space 0): each span goes into a free segment."""
  mask_idc, parts = [], [(0, sz)]
  for _ in range(num_mask):
    lens = np.array([e - s if e - s >= length else 0 for s, e in parts], float)
    if lens.sum() == 0:
      break
    s, e = parts.pop(rng.choice(len(parts), p=lens / lens.sum()))
    start = rng.integers(s, e - length) if e - length > s else s
    mask_idc.extend(range(start, start + length))
    if start - s >= length:
      parts.append((s, start + 1))
    if e - start - length > length:
      parts.append((start + length, e))
  return np.asarray(mask_idc, np.int64)


def _ranks(scores: jax.Array) -> jax.Array:
  """Rank of every entry along the last axis (0 = smallest)."""
  return jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)


def _keep_random_subset(key: jax.Array, selected: jax.Array, count: jax.Array) -> jax.Array:
  """A uniformly random subset of size min(count, |selected|) of each row's True entries."""
  scores = jnp.where(selected, jax.random.uniform(key, selected.shape), 2.0)
  return selected & (_ranks(scores) < count[:, None])


def jax_mask_indices(key: jax.Array, frame_mask: jax.Array, mask_prob: float, mask_length: int,
                     min_masks: int = 0, require_same_masks: bool = True,
                     mask_dropout: float = 0.0) -> jax.Array:
  """`compute_mask_indices` in JAX (same distribution, static shapes). Returns bool [B, F].

  Args:
    key: PRNG key.
    frame_mask: [B, F], True on real frames; each row's real frames must be a prefix. Each
      row draws its own number of spans from its own length (current fairseq).

  Unlike the NumPy reference it cannot raise inside jit: a short row whose spans cover all
  its frames stays fully masked (see the module doc).
  """
  frame_mask = frame_mask.astype(bool)
  b, f = frame_mask.shape
  k_num, k_start, k_trim, k_drop = jax.random.split(key, 4)
  sz = frame_mask.sum(-1).astype(jnp.int32)  # [B]
  u = jax.random.uniform(k_num, (b,))
  num = jnp.floor(mask_prob * sz.astype(jnp.float32) / mask_length + u)
  num = jnp.maximum(min_masks, num.astype(jnp.int32))
  # Starts come from [0, n) with n = sz - mask_length, or num + 1 when that is too few;
  # n <= max(min_masks, sz) + 1, so F + min_masks + 2 candidates always suffice.
  n = jnp.where(sz - mask_length <= num, num + 1, sz - mask_length)
  num_candidates = f + min_masks + 2
  cand = jnp.arange(num_candidates)[None, :]
  scores = jnp.where(cand < n[:, None], jax.random.uniform(k_start, (b, num_candidates)), 2.0)
  starts = (_ranks(scores) < num[:, None])[:, :f]  # only starts < F can cover a frame < F
  # Frame t is covered when a start lies in (t - mask_length, t].
  csum = jnp.cumsum(starts.astype(jnp.int32), axis=-1)
  shifted = jnp.pad(csum, ((0, 0), (mask_length, 0)))[:, :f]
  mask = ((csum - shifted) > 0) & frame_mask & (sz > 0)[:, None]
  if require_same_masks:
    counts = mask.sum(-1)
    target = jnp.min(jnp.where(sz > 0, counts, f + 1))
    mask = _keep_random_subset(k_trim, mask, jnp.full((b,), target))
  if mask_dropout > 0:
    counts = mask.sum(-1)
    holes = jnp.round(counts * mask_dropout).astype(jnp.int32)
    mask = _keep_random_subset(k_drop, mask, counts - holes)
  return mask


def jax_channel_mask(key: jax.Array, batch: int, channels: int, mask_prob: float,
                     mask_length: int, require_same_masks: bool = True) -> jax.Array:
  """[B, C] bool channel spans (fairseq's mask_channel_*: no padding, min_masks 0).

  Raises ValueError when a row could draw enough spans to mask every channel (fairseq's
  error, known here before any draw since `channels` is static).
  """
  most_spans = math.ceil(mask_prob * channels / mask_length)  # int(x + u) <= ceil(x)
  if channels - mask_length <= most_spans:
    raise ValueError(f"channel masking with mask_channel_prob={mask_prob}, "
                     f"mask_channel_length={mask_length} can mask all {channels} channels; "
                     "lower them.")
  return jax_mask_indices(key, jnp.ones((batch, channels), bool), mask_prob, mask_length,
                          min_masks=0, require_same_masks=require_same_masks)


def apply_channel_mask(x: jax.Array, channel_mask: jax.Array) -> jax.Array:
  """Zeroes the masked channels of [B, F, C] features on every frame."""
  return jnp.where(channel_mask[:, None, :], jnp.zeros((), x.dtype), x)
