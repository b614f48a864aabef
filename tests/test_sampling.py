"""language_weights and size helpers (the pipeline's sampled proportions are checked against
these weights in test_tfds_pipeline.py::test_language_proportions_follow_alpha)."""

import pytest

from mlasr.data import sampling


def test_alpha_cases_against_hand_computed_values():
  sizes = {"en": 100.0, "hi": 25.0, "te": 1.0}
  natural = sampling.language_weights(sizes, 1.0)
  assert natural == pytest.approx({"en": 100 / 126, "hi": 25 / 126, "te": 1 / 126})
  uniform = sampling.language_weights(sizes, 0.0)
  assert uniform == pytest.approx({"en": 1 / 3, "hi": 1 / 3, "te": 1 / 3})
  xlsr = sampling.language_weights(sizes, 0.5)
  assert xlsr == pytest.approx({"en": 10 / 16, "hi": 5 / 16, "te": 1 / 16})
  assert sum(xlsr.values()) == pytest.approx(1.0)


def test_scale_invariant_and_zero_sizes():
  a = sampling.language_weights({"a": 3e9, "b": 1e9}, 0.3)
  b = sampling.language_weights({"a": 3.0, "b": 1.0}, 0.3)
  assert a == pytest.approx(b)
  assert sampling.language_weights({"a": 2.0, "b": 0.0}, 0.0) == {"a": 1.0, "b": 0.0}


@pytest.mark.parametrize("sizes,alpha,match", [
    ({"a": 1.0}, -0.1, "alpha"), ({"a": -1.0, "b": 2.0}, 0.5, "a"),
    ({"a": 0.0}, 0.5, "no language"), ({}, 1.0, "no language")])
def test_bad_input_names_the_value(sizes, alpha, match):
  with pytest.raises(ValueError, match=match):
    sampling.language_weights(sizes, alpha)


def test_sizes_from_durations():
  items = [("hi", 1800.0), ("hi", 1800.0), ("ru", 360.0)]
  assert sampling.sizes_from_durations(items) == pytest.approx({"hi": 1.0, "ru": 0.1})
  assert sampling.sizes_from_durations(items, "utterances") == {"hi": 2.0, "ru": 1.0}
  with pytest.raises(ValueError, match="unit"):
    sampling.sizes_from_durations(items, "minutes")


def test_empirical_proportions_and_kl():
  p = sampling.empirical_proportions(["a", "a", "b", "a"])
  assert p == {"a": 0.75, "b": 0.25}
  assert sampling.kl_divergence(p, p) == pytest.approx(0.0, abs=1e-9)
  assert sampling.kl_divergence(p, {"a": 0.5, "b": 0.5}) > 0


def test_two_level_weights_against_hand_computed_values():
  sizes = {"fi": {"commonvoice:fi": 9.0, "voxpopuli:fi": 27.0}, "hi": {"commonvoice:hi": 4.0}}
  p, q = sampling.two_level_weights(sizes, 0.5, 0.5)
  # n_fi = 36, n_hi = 4: p ∝ 6, 2; within fi q ∝ 3, sqrt(27).
  assert p == pytest.approx({"fi": 6 / 8, "hi": 2 / 8})
  r = 27 ** 0.5
  assert q["fi"] == pytest.approx({"commonvoice:fi": 3 / (3 + r), "voxpopuli:fi": r / (3 + r)})
  assert q["hi"] == {"commonvoice:hi": 1.0}
  _, uniform = sampling.two_level_weights(sizes, 1.0, 0.0)
  assert uniform["fi"] == {"commonvoice:fi": 0.5, "voxpopuli:fi": 0.5}
  # One source per language: level 1 is language_weights exactly, level 2 is 1.0.
  one = {"a": {"x:a": 3.0}, "b": {"x:b": 1.0}}
  p1, q1 = sampling.two_level_weights(one, 0.3, 0.7)
  assert p1 == sampling.language_weights({"a": 3.0, "b": 1.0}, 0.3)
  assert q1 == {"a": {"x:a": 1.0}, "b": {"x:b": 1.0}}
  with pytest.raises(ValueError, match="source_alpha"):
    sampling.two_level_weights(one, 0.5, -1.0)
  p0, q0 = sampling.two_level_weights({"a": {"x:a": 1.0}, "z": {"x:z": 0.0}}, 0.5, 0.5)
  assert p0 == {"a": 1.0, "z": 0.0} and q0["z"] == {"x:z": 0.0}
