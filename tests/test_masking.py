"""Span masking: the NumPy reference against an exact expectation, JAX against the reference."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlasr import masking


def expected_fraction(t: int, length: int, prob: float, min_masks: int) -> float:
  """Exact E[masked fraction] of one row without trimming (spans overlap, starts w/o repl.).

  num = max(min_masks, floor(prob * t / length + u)); starts are a uniform num-subset of
  [0, n); frame j stays unmasked iff none of the w_j starts that cover it is drawn.
  """
  x = prob * t / length
  total = 0.0
  for num, p_num in ((math.floor(x), 1 - (x - math.floor(x))), (math.floor(x) + 1, x % 1)):
    if p_num == 0:
      continue
    num = max(min_masks, num)
    n = t - length if t - length > num else num + 1
    frac = 0.0
    for j in range(t):
      w = sum(1 for s in range(max(0, j - length + 1), j + 1) if s < n)
      frac += 1 - math.comb(n - w, num) / math.comb(n, num)
    total += p_num * frac / t
  return total


def numpy_masks(num_batches, lengths, frames, seed=0, **kw):
  rng = np.random.default_rng(seed)
  padding = np.arange(frames)[None, :] >= np.asarray(lengths)[:, None]
  return np.stack([masking.compute_mask_indices((len(lengths), frames), padding, rng=rng, **kw)
                   for _ in range(num_batches)])


@functools.partial(jax.jit, static_argnums=(0, 1), static_argnames=(
    "mask_prob", "mask_length", "min_masks", "require_same_masks", "mask_dropout"))
def jax_masks(num_batches, frames, lengths, seed=0, **kw):
  frame_mask = jnp.arange(frames)[None, :] < lengths[:, None]
  keys = jax.random.split(jax.random.key(seed), num_batches)
  return jax.vmap(lambda k: masking.jax_mask_indices(k, frame_mask, **kw))(keys)


HUBERT = dict(mask_prob=0.8, mask_length=10, min_masks=2)


def test_reference_matches_exact_expectation():
  for t in (500, 120):
    got = numpy_masks(250, [t] * 8, t, require_same_masks=False, **HUBERT).mean()
    want = expected_fraction(t, **{"length": 10, "prob": 0.8, "min_masks": 2})
    assert abs(got - want) < 0.004, (t, got, want)
  # Long utterances: ~56.7 % before trimming; batch-minimum trimming (8 rows) brings it into
  # 50-55 %, the range the HuBERT recipe (mask_prob 0.8, length 10, overlapping spans) masks.
  assert 0.565 < expected_fraction(500, 10, 0.8, 2) < 0.568
  trimmed = numpy_masks(250, [500] * 8, 500, require_same_masks=True, **HUBERT).mean()
  assert 0.50 < trimmed < 0.55


@pytest.mark.parametrize("same", [False, True])
def test_jax_matches_numpy_masked_fraction(same):
  lengths = np.array([500, 480, 430, 500, 390, 500, 460, 500])
  ref = numpy_masks(300, lengths, 512, require_same_masks=same, **HUBERT)
  got = np.asarray(jax_masks(300, 512, jnp.asarray(lengths), require_same_masks=same, **HUBERT))
  np.testing.assert_allclose(got.sum((0, 2)) / (300 * lengths),
                             ref.sum((0, 2)) / (300 * lengths), atol=0.01)
  assert abs(got.mean() - ref.mean()) < 0.005


def test_jax_matches_numpy_per_position_on_short_rows():
  # T=6, L=4: sz - L <= num, so starts come from num + 1 positions (fairseq's edge case).
  for t, kw in ((6, dict(mask_prob=1.0, mask_length=4, min_masks=2)),
                (12, dict(mask_prob=0.5, mask_length=3, min_masks=1))):
    ref = numpy_masks(5000, [t], t, require_same_masks=False, allow_full_mask=True, **kw)[:, 0]
    got = np.asarray(jax_masks(5000, t, jnp.asarray([t]), require_same_masks=False, **kw))[:, 0]
    np.testing.assert_allclose(got.mean(0), ref.mean(0), atol=0.03)
    assert abs(got.mean() - expected_fraction(t, kw["mask_length"], kw["mask_prob"],
                                              kw["min_masks"])) < 0.01


def test_padding_never_masked_and_same_counts():
  lengths = np.array([40, 17, 0, 33])  # row 2 is a padding row: no mask, not in the minimum
  ref = numpy_masks(50, lengths, 40, require_same_masks=True, **HUBERT)
  got = np.asarray(jax_masks(50, 40, jnp.asarray(lengths), require_same_masks=True, **HUBERT))
  padding = np.arange(40)[None, :] >= lengths[:, None]
  for masks in (ref, got):
    assert not np.any(masks & padding[None])
    counts = masks.sum(-1)  # [batches, B]
    assert np.all(counts[:, 2] == 0)
    assert np.all(counts[:, [0, 1, 3]] == counts[:, :1]) and counts[:, 0].min() > 0


def test_min_masks_respected():
  lengths = np.array([60, 25])
  kw = dict(mask_prob=0.0, mask_length=1, min_masks=2, require_same_masks=False)
  for masks in (numpy_masks(20, lengths, 60, **kw),
                np.asarray(jax_masks(20, 60, jnp.asarray(lengths), **kw))):
    assert np.all(masks.sum(-1) == 2)  # length-1 spans with distinct starts: exactly 2 frames
  kw = dict(mask_prob=0.01, mask_length=10, min_masks=3, require_same_masks=False)
  got = np.asarray(jax_masks(50, 60, jnp.asarray(lengths), **kw)).sum(-1)
  assert got.min() >= 10 and got.max() <= 30 and got.mean() > 20


def test_mask_dropout_removes_rounded_fraction():
  lengths = jnp.asarray([200, 200])
  full = np.asarray(jax_masks(10, 200, lengths, require_same_masks=True, **HUBERT))
  dropped = np.asarray(jax_masks(10, 200, lengths, require_same_masks=True, mask_dropout=0.1,
                                 **HUBERT))
  assert np.all(dropped <= full)  # same key: holes are punched into the same mask
  np.testing.assert_array_equal(dropped.sum(-1), full.sum(-1) - np.rint(full.sum(-1) * 0.1))


def test_determinism_per_key():
  frame_mask = jnp.ones((4, 100), bool)
  a = masking.jax_mask_indices(jax.random.key(3), frame_mask, **HUBERT)
  b = masking.jax_mask_indices(jax.random.key(3), frame_mask, **HUBERT)
  c = masking.jax_mask_indices(jax.random.key(4), frame_mask, **HUBERT)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(a), np.asarray(c))
  ref = [masking.compute_mask_indices((4, 100), None, 0.8, 10, 2, np.random.default_rng(s))
         for s in (5, 5)]
  np.testing.assert_array_equal(*ref)


def _channel_masks(rng, draws, rows, channels, prob, length, **kw):
  """`draws` batches of channel masks from the NumPy reference and from jax_channel_mask."""
  ref = np.stack([masking.compute_mask_indices((rows, channels), None, prob, length, 0, rng,
                                               **kw) for _ in range(draws)])
  keys = jax.random.split(jax.random.key(0), draws)
  got = np.asarray(jax.vmap(lambda k: masking.jax_channel_mask(
      k, rows, channels, prob, length, **kw))(keys))
  return ref, got


def test_channel_mask_matches_reference_and_zeroes_channels():
  ref, got = _channel_masks(np.random.default_rng(0), 200, 4, 192, 0.5, 64)
  assert abs(got.mean() - ref.mean()) < 0.01
  assert np.all(got.sum(-1) == got.sum(-1)[:, :1])  # require_same_masks across the batch
  x = jnp.ones((4, 7, 192))
  y = np.asarray(masking.apply_channel_mask(x, jnp.asarray(got[0])))
  np.testing.assert_array_equal(y, np.broadcast_to(~got[0][:, None, :], y.shape))


def test_no_overlap_reference_places_disjoint_spans():
  rng = np.random.default_rng(1)
  masks = masking.compute_mask_indices((16, 300), None, 0.5, 10, 2, rng,
                                       require_same_masks=False, no_overlap=True)
  counts = masks.sum(-1)
  # 0.5 * 300 / 10 = 15 spans in every row (an integer: no rounding draw), each one whole.
  assert np.all(counts % 10 == 0) and np.all(counts == counts[0])


def _brute_force_span_counts(rng, rows, size, prob, length):
  """Masked count of each row, drawn independently of mlasr.masking: per-row span number,
  starts a uniform subset of [0, size - length), union of the spans."""
  counts = []
  for _ in range(rows):
    num = math.floor(prob * size / length + rng.random())
    covered = set()
    for start in rng.permutation(size - length)[:num]:
      covered.update(range(start, start + length))
    counts.append(len(covered))
  return np.asarray(counts)


def test_channel_spans_are_drawn_per_row_as_current_fairseq():
  # Channel mask p=0.1, L=64 over 768 channels, 8 rows: 1.2 spans on average, so a row draws
  # 1 span (p 0.8) or 2; one draw per row (fairseq since Dec 2022) makes almost every batch
  # contain a one-span row, and require_same_masks trims all rows to 64 channels: 8.3 %
  # (one draw per batch, the older fairseq, masked 9.2 %).
  rng = np.random.default_rng(0)
  ref, got = _channel_masks(rng, 300, 8, 768, 0.1, 64)
  brute = np.stack([_brute_force_span_counts(rng, 8, 768, 0.1, 64) for _ in range(300)])
  for masks in (ref, got):
    assert abs(masks.mean() - brute.min(-1).mean() / 768) < 0.002
    assert abs(masks.mean() - 64 / 768) < 0.002
  # Without trimming, rows of one batch differ: the per-row span counts follow the brute force.
  ref, got = _channel_masks(rng, 300, 8, 768, 0.1, 64, require_same_masks=False)
  for masks in (ref, got):
    counts = masks.sum(-1)
    assert np.mean(np.any(counts != counts[:, :1], axis=1)) > 0.5  # not one draw per batch
    assert abs(np.mean(counts == 64) - np.mean(brute == 64)) < 0.03  # one span: p ≈ 0.8
    assert abs(counts.mean() - brute.mean()) < 3


def test_rows_too_short_for_their_spans_raise_as_fairseq():
  # T=6, L=4, two spans from starts in [0, 3): {0, 2} covers all 6 frames (fairseq raises).
  with pytest.raises(ValueError, match="entire sequence"):
    numpy_masks(1, [6] * 30, 6, require_same_masks=False, mask_prob=1.0, mask_length=4,
                min_masks=2)
  with pytest.raises(ValueError, match="can mask all 66 channels"):
    masking.jax_channel_mask(jax.random.key(0), 2, 66, 1.0, 64)
