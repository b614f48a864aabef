"""Language-balanced sampling weights (XLS-R style p_l ∝ n_l^alpha), the second level over
data sources within a language (q_{s|l} ∝ n_s^beta, as XLS-R and mHuBERT-147 upsample by
language and by data source), and language sizes."""

from __future__ import annotations

import collections
from typing import Iterable, Mapping

import numpy as np


def language_weights(sizes: Mapping[str, float], alpha: float) -> dict[str, float]:
  """p_l ∝ n_l^alpha, normalised to sum to 1.

  alpha = 1 samples in proportion to the data (natural), 0 uniformly over languages,
  0.5 is the XLS-R setting. Languages of size 0 get weight 0.

  Args:
    sizes: language -> hours (or utterance counts).
    alpha: exponent in [0, 1] (values > 1 sharpen towards the big languages; allowed).

  Raises:
    ValueError: negative sizes/alpha, or no language with data.
  """
  if alpha < 0:
    raise ValueError(f"alpha must be >= 0, got {alpha}")
  bad = {l: n for l, n in sizes.items() if not n >= 0}
  if bad:
    raise ValueError(f"language sizes must be >= 0, got {bad}")
  if not any(n > 0 for n in sizes.values()):
    raise ValueError(f"no language has data: {dict(sizes)}")
  # Normalising sizes first keeps n^alpha finite for huge counts.
  total = float(sum(sizes.values()))
  raw = {l: (n / total) ** alpha if n > 0 else 0.0 for l, n in sizes.items()}
  z = sum(raw.values())
  return {l: w / z for l, w in raw.items()}


def two_level_weights(sizes: Mapping[str, Mapping[str, float]], alpha: float,
                      source_alpha: float) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
  """(p_l, q_{s|l}): languages by p_l ∝ n_l^alpha with n_l = sum of its sources' sizes, then
  sources within each language by q_{s|l} ∝ n_s^source_alpha. An example of source s in
  language l is drawn with probability p_l * q_{s|l} / (number of examples of s).

  A language with one source gets q = 1 and p_l is exactly language_weights(n_l, alpha);
  a language of size 0 gets p_l = 0 and q = 0 for each of its sources.

  Args:
    sizes: language -> {source name (e.g. "commonvoice:fi") -> hours or utterances}.
    alpha: the language exponent (see language_weights).
    source_alpha: the source exponent within a language (1 natural, 0 uniform over sources).
  """
  if source_alpha < 0:
    raise ValueError(f"source_alpha must be >= 0, got {source_alpha}")
  lang_sizes = {l: float(sum(src.values())) for l, src in sizes.items()}
  bad = {f"{l}/{s}": n for l, src in sizes.items() for s, n in src.items() if not n >= 0}
  if bad:
    raise ValueError(f"source sizes must be >= 0, got {bad}")
  p = language_weights(lang_sizes, alpha)
  q = {}
  for l, src in sizes.items():
    if lang_sizes[l] > 0:
      q[l] = language_weights(src, source_alpha)
    else:
      q[l] = {s: 0.0 for s in src}
  return p, q


def sizes_from_durations(items: Iterable[tuple[str, float]],
                         unit: str = "hours") -> dict[str, float]:
  """Sums (lang, seconds) pairs into sizes per language in "hours" or "utterances"."""
  if unit not in ("hours", "utterances"):
    raise ValueError(f"unit must be 'hours' or 'utterances', got {unit!r}")
  sizes = collections.defaultdict(float)
  for lang, seconds in items:
    sizes[lang] += seconds / 3600.0 if unit == "hours" else 1.0
  return dict(sizes)


def sizes_from_prepared(data_dir: str, datasets: Iterable[tuple[str, str]],
                        split: str = "train", unit: str = "hours") -> dict[str, float]:
  """Language sizes of prepared TFDS datasets [(corpus, lang), ...] from their index files
  (no audio is read). Several corpora of one language add up."""
  from mlasr.data import tfds_builder  # pylint: disable=g-import-not-at-top
  pairs = []
  for corpus, lang in datasets:
    index = tfds_builder.load_index(data_dir, corpus, lang)[split]
    pairs += [(lang, n / tfds_builder.SAMPLE_RATE) for n in index["num_samples"]]
  return sizes_from_durations(pairs, unit)


def empirical_proportions(langs: Iterable[str]) -> dict[str, float]:
  """Fraction of each language in a sequence of draws (for checking samplers)."""
  counts = collections.Counter(langs)
  n = sum(counts.values())
  return {l: c / n for l, c in counts.items()} if n else {}


def kl_divergence(p: Mapping[str, float], q: Mapping[str, float]) -> float:
  """KL(p || q) over the union of keys (q smoothed by 1e-12)."""
  keys = sorted(set(p) | set(q))
  pa = np.array([p.get(k, 0.0) for k in keys])
  qa = np.array([q.get(k, 0.0) for k in keys]) + 1e-12
  m = pa > 0
  return float(np.sum(pa[m] * np.log(pa[m] / qa[m])))
