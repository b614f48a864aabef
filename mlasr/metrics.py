"""Error counts, corpus error rates and bootstrap confidence intervals for ASR scoring.

Conventions (see also mlasr.evaluators.report):
- Inputs are `mlasr.data.text.normalize`d references and hypotheses.
- Edit counts come from jiwer 4 (Levenshtein alignment, unit costs) per utterance.
- WER units are words split on whitespace.
- CER units are Unicode code points of the normalized text INCLUDING the single space between
  words (`include_spaces=True`, the default). This is jiwer.cer's definition and the one of
  ESPnet/ML-SUPERB, which score characters by writing `<space>` tokens into char-level trn files
  and running sclite in word mode; report.py writes such `*.char.trn` files. sclite's own
  character mode (`sclite -c`) deletes word boundaries instead: that is
  `include_spaces=False` here (spaces removed before alignment, so "ab cd" vs "abcd" is 0 errors).
- Corpus rate = (S + D + I) / N summed over utterances, never a mean of per-utterance rates.
  N = 0 (only empty references) gives nan and `defined=False`, not an exception; an empty
  reference's hypothesis words still count as insertions.
- Bootstrap CIs resample utterances with replacement (Bisani & Ney 2004) and take percentiles of
  the recomputed corpus rate; the paired bootstrap resamples the same utterances for both systems.

Known difference from sclite: sclite aligns with costs sub=4, ins=del=3, so where several
alignments are optimal for unit costs it can split errors differently (ref "a b", hyp "b c":
jiwer 2 S, sclite 1 D + 1 I), and in rare shifted cases it reports more total errors than the
Levenshtein minimum. Typical ASR output gives identical counts (tests/test_report.py checks this
against the real sclite).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jiwer
import numpy as np

_MAX_CELLS = 4_000_000  # bootstrap index matrix cells per chunk (bounds memory).


@dataclasses.dataclass(frozen=True)
class EditCounts:
  """Per-utterance edit counts (int64 arrays of equal length, one entry per utterance)."""

  sub: np.ndarray
  dele: np.ndarray
  ins: np.ndarray
  hits: np.ndarray

  @property
  def ref_len(self) -> np.ndarray:
    return self.hits + self.sub + self.dele

  @property
  def errors(self) -> np.ndarray:
    return self.sub + self.dele + self.ins

  def __len__(self) -> int:
    return len(self.hits)

  def subset(self, index: np.ndarray | Sequence[int]) -> EditCounts:
    index = np.asarray(index, dtype=np.int64)
    return EditCounts(self.sub[index], self.dele[index], self.ins[index], self.hits[index])

  @staticmethod
  def concat(parts: Sequence[EditCounts]) -> EditCounts:
    return EditCounts(*(np.concatenate([getattr(p, f.name) for p in parts]).astype(np.int64)
                        for f in dataclasses.fields(EditCounts)))


def _counts_from_alignments(output: Any) -> EditCounts:
  counts = np.zeros((len(output.alignments), 4), dtype=np.int64)
  column = {"substitute": 0, "delete": 1, "insert": 2, "equal": 3}
  for i, chunks in enumerate(output.alignments):
    for c in chunks:
      # Inserts span hyp positions only; the other chunk types span ref positions.
      if c.type == "insert":
        span = c.hyp_end_idx - c.hyp_start_idx
      else:
        span = c.ref_end_idx - c.ref_start_idx
      counts[i, column[c.type]] += span
  return EditCounts(*counts.T.copy())


def _check_pairs(refs: Sequence[str], hyps: Sequence[str]) -> None:
  if len(refs) != len(hyps):
    raise ValueError(f"Got {len(refs)} references but {len(hyps)} hypotheses; score aligned "
                     "lists (one hypothesis per reference utterance).")


def word_edits(refs: Sequence[str], hyps: Sequence[str]) -> EditCounts:
  """Per-utterance word S/D/I/hits (jiwer.process_words; whitespace-separated words)."""
  _check_pairs(refs, hyps)
  if not refs:
    return EditCounts(*(np.zeros(0, np.int64) for _ in range(4)))
  return _counts_from_alignments(jiwer.process_words(list(refs), list(hyps)))


def char_edits(refs: Sequence[str], hyps: Sequence[str], include_spaces: bool = True) -> EditCounts:
  """Per-utterance character S/D/I/hits over code points (jiwer.process_characters).

  Args:
    refs, hyps: normalized texts, one pair per utterance.
    include_spaces: count the space between words as a character (mlasr's CER, as jiwer and
      ESPnet/ML-SUPERB); False removes all spaces first, as `sclite -c` does.
  """
  _check_pairs(refs, hyps)
  if not refs:
    return EditCounts(*(np.zeros(0, np.int64) for _ in range(4)))
  return _counts_from_alignments(char_alignment(refs, hyps, include_spaces))


def char_alignment(refs: Sequence[str], hyps: Sequence[str], include_spaces: bool = True):
  """jiwer.process_characters output on the texts char_edits scores (same space handling):
  `.references`/`.hypotheses` are per-utterance character lists and `.alignments` per-
  utterance AlignmentChunks, so error analysis reads the very alignment the CER counts."""
  _check_pairs(refs, hyps)
  if include_spaces:
    refs, hyps = [" ".join(r.split()) for r in refs], [" ".join(h.split()) for h in hyps]
  else:
    refs, hyps = ["".join(r.split()) for r in refs], ["".join(h.split()) for h in hyps]
  return jiwer.process_characters(list(refs), list(hyps))


def corpus_error_rate(counts: EditCounts) -> float:
  """(S + D + I) / N over all utterances; nan when N == 0."""
  n = int(counts.ref_len.sum())
  return float(counts.errors.sum()) / n if n else float("nan")


def _bootstrap_rates(errors: np.ndarray, ref_len: np.ndarray, n_boot: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Returns bootstrap sums (errors, ref units) [n_boot] from resampled utterance indices."""
  n = len(errors)
  err_sums, ref_sums = np.zeros(n_boot, np.int64), np.zeros(n_boot, np.int64)
  chunk = max(1, _MAX_CELLS // max(n, 1))
  for start in range(0, n_boot, chunk):
    idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
    err_sums[start:start + len(idx)] = errors[idx].sum(axis=1)
    ref_sums[start:start + len(idx)] = ref_len[idx].sum(axis=1)
  return err_sums, ref_sums


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
  values = values[np.isfinite(values)]
  if values.size == 0:
    return float("nan"), float("nan")
  tail = 100 * (1 - confidence) / 2
  lo, hi = np.percentile(values, [tail, 100 - tail])
  return float(lo), float(hi)


def bootstrap_ci(counts: EditCounts, n_boot: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> tuple[float, float]:
  """Percentile CI of the corpus error rate, resampling utterances with replacement.

  Resamples whose reference length is 0 are left out; (nan, nan) when no utterance has a
  reference unit.
  """
  if n_boot <= 0 or len(counts) == 0 or counts.ref_len.sum() == 0:  # n_boot=0: no CI wanted
    return float("nan"), float("nan")
  rng = np.random.default_rng(seed)
  err, ref = _bootstrap_rates(counts.errors, counts.ref_len, n_boot, rng)
  return _percentiles(_ratio(err, ref), confidence)


def macro_bootstrap_ci(counts_by_lang: Sequence[EditCounts], n_boot: int = 1000, seed: int = 0,
                       confidence: float = 0.95) -> tuple[float, float]:
  """CI of the unweighted mean of per-language corpus rates (stratified: resample per language).

  Languages whose N == 0 are left out of the mean, as in `macro_rate`.
  """
  parts = [c for c in counts_by_lang if len(c) and c.ref_len.sum() > 0]
  if not parts or n_boot <= 0:
    return float("nan"), float("nan")
  rng = np.random.default_rng(seed)
  rates = np.zeros((len(parts), n_boot))
  for k, c in enumerate(parts):
    err, ref = _bootstrap_rates(c.errors, c.ref_len, n_boot, rng)
    rates[k] = _ratio(err, ref)
  with np.errstate(invalid="ignore"):
    return _percentiles(np.nanmean(rates, axis=0), confidence)


def macro_rate(counts_by_lang: Sequence[EditCounts]) -> float:
  """Unweighted mean of per-language corpus rates (languages with N == 0 left out)."""
  rates = [corpus_error_rate(c) for c in counts_by_lang if len(c) and c.ref_len.sum() > 0]
  return float(np.mean(rates)) if rates else float("nan")


def paired_bootstrap(counts_a: EditCounts, counts_b: EditCounts, n_boot: int = 1000,
                     seed: int = 0, confidence: float = 0.95) -> dict[str, float]:
  """Paired bootstrap (Bisani & Ney 2004) of system A vs B on the same utterances.

  Returns {"rate_a", "rate_b", "diff" (= rate_a - rate_b; negative means A is better),
  "ci_low", "ci_high" (CI of diff), "prob_a_better" (fraction of resamples with A's rate
  strictly below B's: Bisani & Ney's probability of improvement)}.
  """
  if len(counts_a) != len(counts_b) or not np.array_equal(counts_a.ref_len, counts_b.ref_len):
    raise ValueError("paired_bootstrap needs both systems scored on the same utterances in the "
                     f"same order (got {len(counts_a)} vs {len(counts_b)} utterances or "
                     "different reference lengths).")
  nan = float("nan")
  if len(counts_a) == 0 or counts_a.ref_len.sum() == 0:
    return {"rate_a": nan, "rate_b": nan, "diff": nan, "ci_low": nan, "ci_high": nan,
            "prob_a_better": nan}
  rng = np.random.default_rng(seed)
  # One resample of utterances serves both systems: stack A's and B's errors as columns.
  n = len(counts_a)
  stacked = np.stack([counts_a.errors, counts_b.errors, counts_a.ref_len], axis=1)
  sums = np.zeros((n_boot, 3), np.int64)
  chunk = max(1, _MAX_CELLS // max(n, 1))
  for start in range(0, n_boot, chunk):
    idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
    sums[start:start + len(idx)] = stacked[idx].sum(axis=1)
  rate_a, rate_b = _ratio(sums[:, 0], sums[:, 2]), _ratio(sums[:, 1], sums[:, 2])
  valid = sums[:, 2] > 0
  diff = rate_a - rate_b
  lo, hi = _percentiles(diff, confidence)
  ra, rb = corpus_error_rate(counts_a), corpus_error_rate(counts_b)
  return {"rate_a": ra, "rate_b": rb, "diff": ra - rb, "ci_low": lo, "ci_high": hi,
          "prob_a_better": float(np.mean(rate_a[valid] < rate_b[valid]))}


def summarize(counts: EditCounts, n_boot: int = 1000, seed: int = 0,
              confidence: float = 0.95) -> dict[str, Any]:
  """JSON-ready summary: rate, CI, S/D/I/hits/N totals, utterance count, `defined` flag."""
  lo, hi = bootstrap_ci(counts, n_boot, seed, confidence) if n_boot else (float("nan"),) * 2
  n = int(counts.ref_len.sum())
  return {"rate": corpus_error_rate(counts), "ci": [lo, hi], "confidence": confidence,
          "sub": int(counts.sub.sum()), "del": int(counts.dele.sum()),
          "ins": int(counts.ins.sum()), "hits": int(counts.hits.sum()), "n": n,
          "utts": len(counts), "defined": n > 0}
