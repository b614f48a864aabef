"""Tests for mlasr.metrics against jiwer and against naive re-implementations."""

import math

import jiwer
import numpy as np
import pytest

from mlasr import metrics

REFS = ["the cat sat on the mat", "привет мир", "नमस्ते दुनिया", "příliš žluťoučký kůň", "a b c d",
        "", "one two", "x"]
HYPS = ["the cat sat on mat", "привет мир мир", "नमस्ते दुनया", "příliš žlutoučký kun", "",
        "extra words here", "one two", "y z"]


def _jiwer_counts(out):
  return out.substitutions, out.deletions, out.insertions, out.hits


def test_word_counts_match_jiwer_per_utterance_and_corpus():
  w = metrics.word_edits(REFS, HYPS)
  for i, (r, h) in enumerate(zip(REFS, HYPS)):
    assert (w.sub[i], w.dele[i], w.ins[i], w.hits[i]) == _jiwer_counts(jiwer.process_words(r, h))
  out = jiwer.process_words(REFS, HYPS)
  assert (w.sub.sum(), w.dele.sum(), w.ins.sum(), w.hits.sum()) == _jiwer_counts(out)
  assert metrics.corpus_error_rate(w) == pytest.approx(out.wer)


def test_char_counts_match_jiwer_including_spaces():
  c = metrics.char_edits(REFS, HYPS)
  for i, (r, h) in enumerate(zip(REFS, HYPS)):
    assert (c.sub[i], c.dele[i], c.ins[i], c.hits[i]) == _jiwer_counts(
        jiwer.process_characters(r, h))
  assert metrics.corpus_error_rate(c) == pytest.approx(jiwer.cer(REFS, HYPS))
  # Units are code points with spaces: "a b c d" is 7 characters.
  assert c.ref_len[4] == 7 and c.dele[4] == 7


def test_char_counts_without_spaces_like_sclite_c():
  c = metrics.char_edits(["ab cd", "ab cd"], ["abcd", "a bcd"], include_spaces=False)
  assert c.errors.tolist() == [0, 0] and c.ref_len.tolist() == [4, 4]
  c = metrics.char_edits(["ab cd"], ["abcd"])
  assert (c.dele[0], c.ref_len[0]) == (1, 5)


def test_edge_cases_empty_hyp_ref_all_insertions():
  w = metrics.word_edits(["a b c", "", ""], ["", "x y", ""])
  assert w.dele.tolist() == [3, 0, 0] and w.ins.tolist() == [0, 2, 0]
  assert w.ref_len.tolist() == [3, 0, 0]
  assert metrics.corpus_error_rate(w) == pytest.approx(5 / 3)
  # All references empty: undefined rate, flagged, no crash; insertions still counted.
  only_ins = metrics.word_edits(["", ""], ["x", "y z"])
  s = metrics.summarize(only_ins, n_boot=50)
  assert math.isnan(s["rate"]) and not s["defined"] and s["ins"] == 3 and s["n"] == 0
  assert all(math.isnan(v) for v in s["ci"])
  empty = metrics.word_edits([], [])
  assert len(empty) == 0 and math.isnan(metrics.corpus_error_rate(empty))
  with pytest.raises(ValueError, match="2 references but 1"):
    metrics.word_edits(["a", "b"], ["a"])


def test_corpus_rate_is_not_mean_of_utterance_rates():
  w = metrics.word_edits(["a", "a b c d e f g h i j"], ["b", "a b c d e f g h i j"])
  assert metrics.corpus_error_rate(w) == pytest.approx(1 / 11)  # the mean would be 0.5


def _random_counts(n, err_rate, seed):
  rng = np.random.default_rng(seed)
  ref = rng.integers(5, 30, n)
  sub = rng.binomial(ref, err_rate)
  dele = rng.binomial(ref - sub, err_rate / 2)
  ins = rng.binomial(ref, err_rate / 4)
  return metrics.EditCounts(sub, dele, ins, ref - sub - dele)


def test_bootstrap_ci_contains_estimate_and_shrinks():
  small = _random_counts(50, 0.2, 0)
  lo, hi = metrics.bootstrap_ci(small, n_boot=1000, seed=0)
  rate = metrics.corpus_error_rate(small)
  assert lo < rate < hi
  assert metrics.bootstrap_ci(small, n_boot=1000, seed=0) == (lo, hi)  # seeded
  big = metrics.EditCounts.concat([small] * 16)  # same rate, 16x the utterances
  blo, bhi = metrics.bootstrap_ci(big, n_boot=1000, seed=0)
  assert metrics.corpus_error_rate(big) == pytest.approx(rate)
  assert blo < rate < bhi and (bhi - blo) < 0.5 * (hi - lo)  # ~1/sqrt(16) = 0.25


def test_bootstrap_matches_naive_loop():
  counts = _random_counts(80, 0.15, 1)
  rng = np.random.default_rng(123)
  rates = []
  for _ in range(4000):
    idx = rng.integers(0, len(counts), len(counts))
    rates.append(counts.errors[idx].sum() / counts.ref_len[idx].sum())
  naive = np.percentile(rates, [2.5, 97.5])
  lo, hi = metrics.bootstrap_ci(counts, n_boot=4000, seed=7)
  assert lo == pytest.approx(naive[0], abs=0.006) and hi == pytest.approx(naive[1], abs=0.006)


def test_paired_bootstrap_detects_better_system():
  a = _random_counts(300, 0.10, 2)
  rng = np.random.default_rng(3)
  extra = rng.binomial(1, 0.5, len(a))  # B makes about 0.5 more substitutions per utterance
  extra = np.minimum(extra, a.hits)
  b = metrics.EditCounts(a.sub + extra, a.dele, a.ins, a.hits - extra)
  res = metrics.paired_bootstrap(a, b, n_boot=1000, seed=0)
  assert res["prob_a_better"] > 0.99
  assert res["diff"] < 0 and res["ci_low"] < res["diff"] < res["ci_high"] < 0
  rev = metrics.paired_bootstrap(b, a, n_boot=1000, seed=0)
  assert rev["prob_a_better"] < 0.01 and rev["diff"] == pytest.approx(-res["diff"])
  same = metrics.paired_bootstrap(a, a, n_boot=200, seed=0)
  assert same["prob_a_better"] == 0 and same["ci_low"] == same["ci_high"] == 0
  with pytest.raises(ValueError, match="same utterances"):
    metrics.paired_bootstrap(a, a.subset(range(10)))


def test_macro_rate_and_ci():
  parts = [_random_counts(100, 0.1, 4), _random_counts(100, 0.3, 5),
           metrics.word_edits([""], ["x"])]  # a language with no reference words is left out
  rates = [metrics.corpus_error_rate(p) for p in parts[:2]]
  assert metrics.macro_rate(parts) == pytest.approx(np.mean(rates))
  lo, hi = metrics.macro_bootstrap_ci(parts, n_boot=500, seed=0)
  assert lo < metrics.macro_rate(parts) < hi
