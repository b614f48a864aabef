"""CTC loss against a brute-force sum over alignments; infeasible masking; greedy decoding."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlasr.tasks import ctc


def brute_force_nll(log_probs: np.ndarray, labels: list[int]) -> float:
  """-log sum over every frame-level path that collapses to `labels`."""
  num_frames, vocab = log_probs.shape
  total = 0.0
  for path in itertools.product(range(vocab), repeat=num_frames):
    collapsed = [t for i, t in enumerate(path) if t != 0 and (i == 0 or t != path[i - 1])]
    if collapsed == labels:
      total += np.exp(sum(log_probs[i, t] for i, t in enumerate(path)))
  return -np.log(total) if total > 0 else np.inf


@pytest.mark.parametrize("labels,num_frames,valid_frames", [
    ([1], 3, 3), ([1, 2], 4, 4), ([1, 1], 4, 4), ([2, 1, 2], 5, 5), ([1, 2], 5, 3),
])
def test_ctc_loss_matches_brute_force(labels, num_frames, valid_frames):
  rng = np.random.default_rng(len(labels) * 10 + num_frames)
  logits = rng.normal(size=(1, num_frames, 3)).astype(np.float32)
  frame_mask = (np.arange(num_frames) < valid_frames)[None].astype(np.int32)
  label_arr = np.array([labels + [0]], np.int32)
  label_mask = np.array([[1] * len(labels) + [0]], np.int32)
  _, aux = ctc.ctc_loss(jnp.asarray(logits), frame_mask, label_arr, label_mask)
  log_probs = jax.nn.log_softmax(logits[0, :valid_frames], -1)
  expected = brute_force_nll(np.asarray(log_probs, np.float64), labels)
  np.testing.assert_allclose(float(aux["per_example"][0]), expected, rtol=1e-4)


def test_infeasible_examples_are_masked_and_counted():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(3, 4, 5)), jnp.float32)
  frame_mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]], np.int32)
  # Row 1: labels [2, 2] need 3 frames (a blank between repeats) but have 2 -> infeasible.
  labels = np.array([[1, 2, 3], [2, 2, 0], [4, 0, 0]], np.int32)
  label_mask = (labels > 0).astype(np.int32)
  loss, aux = ctc.ctc_loss(logits, frame_mask, labels, label_mask)
  assert aux["used"].tolist() == [True, False, True]
  assert int(aux["num_infeasible"]) == 1
  assert float(aux["per_example"][1]) == 0.0
  # The loss is the feasible examples' NLL over their 3 + 1 label tokens, not 1e5-scaled.
  expected = (float(aux["per_example"][0]) + float(aux["per_example"][2])) / 4
  np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
  grads = jax.grad(lambda x: ctc.ctc_loss(x, frame_mask, labels, label_mask)[0])(logits)
  assert np.all(np.isfinite(np.asarray(grads)))
  np.testing.assert_array_equal(np.asarray(grads[1]), 0.0)


def test_padding_rows_are_ignored():
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(2, 6, 4)), jnp.float32)
  frame_mask = np.ones((2, 6), np.int32)
  labels = np.array([[1, 2], [3, 3]], np.int32)
  label_mask = np.ones((2, 2), np.int32)
  loss_both, _ = ctc.ctc_loss(logits, frame_mask, labels, label_mask, np.array([1, 1]))
  loss_first, aux = ctc.ctc_loss(logits, frame_mask, labels, label_mask, np.array([1, 0]))
  loss_alone, _ = ctc.ctc_loss(logits[:1], frame_mask[:1], labels[:1], label_mask[:1])
  np.testing.assert_allclose(float(loss_first), float(loss_alone), rtol=1e-6)
  assert int(aux["num_infeasible"]) == 0 and float(loss_both) != float(loss_first)


def reference_greedy(best: np.ndarray, length: int) -> list[int]:
  out, prev = [], None
  for t in best[:length]:
    if t != prev and t != 0:
      out.append(int(t))
    prev = t
  return out


def test_greedy_decode_matches_python_reference():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(4, 12, 5)).astype(np.float32)
  logits[:, :, 0] += 0.5  # plenty of blanks
  lengths = np.array([12, 7, 1, 0])
  frame_mask = (np.arange(12)[None] < lengths[:, None]).astype(np.int32)
  tokens, num = jax.jit(ctc.greedy_decode)(jnp.asarray(logits), jnp.asarray(frame_mask))
  best = logits.argmax(-1)
  for b in range(4):
    expected = reference_greedy(best[b], lengths[b])
    assert int(num[b]) == len(expected)
    assert np.asarray(tokens[b, :len(expected)]).tolist() == expected
    assert np.all(np.asarray(tokens[b, len(expected):]) == 0)
