"""grain input pipeline: language-balanced, length-bucketed, checkpointable train batches and
in-order padded eval batches, read from the array_record datasets of tfds_builder.

Train design (stateless per step). Batch `step` is a pure function of (seed, step, shard):
  1. a bucket b is drawn with rng(seed, step), the same on every host so the global batch has
     one shape, with P(b) ∝ Q_b / B_b, where Q_b is the sampling mass of the bucket's examples
     (each example of language l has mass p_l / n_l, p_l ∝ size_l^alpha); so the expected
     number of examples drawn per bucket, and per language, is exactly proportional to mass;
  2. each of the B_b rows draws a language ∝ p_l * (share of l's examples in b) and then an
     example uniformly (with replacement) from this host's members of (l, b) with
     rng(seed, step, 1 + shard_index); over-long clips get a random crop.
Two levels (XLS-R, mHuBERT-147: upsampling by language and by data source): where a language
has several sources (commonvoice:fi and voxpopuli:fi), its mass p_l is split over them by
q_{s|l} ∝ size_s^source_alpha, each example of s having mass p_l * q_{s|l} / n_s; a row of
such a language then draws a source ∝ its mass in the bucket before the example, uniformly
within (source, l, b). A language with one source makes no extra draw, so its batches are
exactly those of the one-level sampler for the same seed.
The step → batch map is a grain MapDataset over step numbers, so grain's own iterator
state (a step counter, plus per-worker positions with worker_count > 0) restores exactly,
and batches do not depend on worker_count. Shapes come only from the fixed bucket set.

Self-supervised targets (`labels=LabelStore(...)`, mlasr.targets.labels): batches also carry
`targets` int32 [B, L] (frame labels at the store's label_rate, -1 padded) and `target_mask`
[B, L]; L is fixed per bucket (`labels.num_labels(num_samples)`). Random crops then start at a
multiple of the label hop (16000 / label_rate samples), so the crop's labels are exactly
labels[offset / hop:][:L]. Utterances without labels are skipped and counted ("no_targets");
a label count that differs from the expected one by more than one frame raises (wrong dump).

Eval: every kept utterance exactly once, grouped by bucket in dataset order, the last batch
of a bucket padded (example_mask 0); hosts take every shard_count-th utterance and all hosts
yield the same number of batches.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Iterator, Protocol, Sequence

import grain
import numpy as np

from mlasr.data import augment as augment_lib
from mlasr.data import corpora
from mlasr.data import sampling
from mlasr.data import tfds_builder

log = logging.getLogger(__name__)

SAMPLE_RATE = tfds_builder.SAMPLE_RATE
_PCM_SCALE = 32767.0  # tfds_builder stores round(x * 32767) as int16.


class Labels(Protocol):
  """What the pipeline needs of mlasr.targets.labels.LabelStore."""
  label_rate: float
  hop: int

  def num_labels(self, num_samples: int) -> int:
    ...

  def has(self, corpus: str, lang: str, split: str, utt_id: str) -> bool:
    ...

  def length(self, corpus: str, lang: str, split: str, utt_id: str) -> int:
    ...

  def get(self, corpus: str, lang: str, split: str, utt_id: str) -> np.ndarray:
    ...


class Tokenizer(Protocol):

  def encode(self, text: str, lang: str) -> list[int]:
    ...


def make_buckets(max_seconds: float = 16.0, batch_seconds: float = 128.0, num_buckets: int = 4,
                 min_seconds: float = 2.0, batch_multiple: int = 1, sample_multiple: int = 1600,
                 seconds: Sequence[float] | None = None) -> list[tuple[int, int]]:
  """A fixed set of (batch_size, num_samples) shapes with batch_size * num_samples roughly
  constant (≈ batch_seconds of audio per batch).

  Lengths are `seconds` if given (e.g. config.data.bucket_seconds), else geometric between
  min_seconds and max_seconds; rounded up to sample_multiple (1600 = 0.1 s, a multiple of the
  320-sample HuBERT hop). Batch sizes are rounded down to a multiple of batch_multiple (e.g. the
  number of data-parallel devices on this host), at least batch_multiple.
  """
  if seconds is not None:
    secs = sorted(float(s) for s in seconds)
    if not secs or secs[0] <= 0:
      raise ValueError(f"bucket seconds must be positive and non-empty, got {seconds}")
  elif num_buckets < 1 or min_seconds <= 0 or max_seconds < min_seconds:
    raise ValueError(f"bad bucket spec: num_buckets={num_buckets}, min_seconds={min_seconds}, "
                     f"max_seconds={max_seconds}")
  else:
    secs = (np.geomspace(min_seconds, max_seconds, num_buckets) if num_buckets > 1
            else [max_seconds])
  out = []
  for s in secs:
    n = int(math.ceil(s * SAMPLE_RATE / sample_multiple) * sample_multiple)
    b = int(batch_seconds * SAMPLE_RATE // n) // batch_multiple * batch_multiple
    shape = (max(batch_multiple, b), n)
    if shape not in out:
      out.append(shape)
  return out


@dataclasses.dataclass
class _Table:
  """Kept examples of all sources, flattened; row e lives at sources[src[e]][idx[e]]."""
  src: np.ndarray
  idx: np.ndarray
  lang_id: np.ndarray
  num_samples: np.ndarray
  tokens: list[np.ndarray]
  utt_id: list[str]
  text_norm: list[str]


def _load_table(data_dir: str, datasets: Sequence[tuple[str, str]], split: str,
                langs: Sequence[str], tokenizer: Tokenizer | None, max_samples: int | None,
                report: corpora.DataReport, labels: Labels | None = None) -> _Table:
  cols = {f.name: [] for f in dataclasses.fields(_Table)}
  for s, (corpus, lang) in enumerate(datasets):
    index = tfds_builder.load_index(data_dir, corpus, lang)
    if split not in index:
      raise KeyError(f"{tfds_builder.dataset_dir(data_dir, corpus, lang)}: no split {split!r}; "
                     f"available: {sorted(index)}")
    col = index[split]
    for i, (utt_id, n, text) in enumerate(zip(col["utt_id"], col["num_samples"],
                                              col["text_norm"])):
      reason, toks = None, np.zeros([0], np.int32)
      if tokenizer is not None:
        if not text.strip():
          reason = "empty_text_norm"
        else:
          try:
            toks = np.asarray(tokenizer.encode(text, lang), np.int32)
          except Exception:  # pylint: disable=broad-except  (any tokenizer failure is counted)
            toks = np.zeros([0], np.int32)
          if toks.size == 0 or np.any(toks <= 0):
            reason = "untokenizable"
      if reason is None and max_samples is not None and n > max_samples:
        reason = "too_long"
      if reason is None and labels is not None:
        if not labels.has(corpus, lang, split, utt_id):
          reason = "no_targets"
        else:
          got, want = labels.length(corpus, lang, split, utt_id), labels.num_labels(n)
          if abs(got - want) > 1:
            raise ValueError(
                f"labels of {corpus}/{lang}/{split} {utt_id}: {got} frames for {n} samples, "
                f"expected {want} at {labels.label_rate} Hz; the labels dir does not belong "
                "to this data (or was dumped at another label rate)")
      if reason is not None:
        report.skip(corpus, lang, split, reason, utt_id)
        continue
      report.keep(corpus, lang, split, n / SAMPLE_RATE)
      cols["src"].append(s)
      cols["idx"].append(i)
      cols["lang_id"].append(langs.index(lang))
      cols["num_samples"].append(n)
      cols["tokens"].append(toks)
      cols["utt_id"].append(utt_id)
      cols["text_norm"].append(text)
  if not cols["src"]:
    raise ValueError(f"no usable examples in split {split!r} of {list(datasets)}:\n"
                     f"{report.summary()}")
  for k in ("src", "idx", "lang_id", "num_samples"):
    cols[k] = np.asarray(cols[k], np.int64)
  return _Table(**cols)


def _label_lengths(table: _Table, bucket_of: np.ndarray, num_buckets: int) -> list[int]:
  """Per-bucket label length: the bucket's longest token sequence, rounded up to 8."""
  out = []
  for b in range(num_buckets):
    lens = [len(table.tokens[e]) for e in np.flatnonzero(bucket_of == b)]
    out.append(max(8, int(math.ceil(max(lens, default=1) / 8) * 8)))
  return out


def _read(sources, table: _Table, rows: Sequence[int]) -> list[dict[str, Any]]:
  """Reads rows grouped by source (one array_record batch read per source)."""
  out = [None] * len(rows)
  for s in sorted(set(int(table.src[e]) for e in rows)):
    pos = [i for i, e in enumerate(rows) if table.src[e] == s]
    for i, ex in zip(pos, sources[s].__getitems__([int(table.idx[rows[i]]) for i in pos])):
      out[i] = ex
  return out


def _waveform(ex: dict, offset: int = 0, num_samples: int | None = None) -> np.ndarray:
  """float32 audio of ex[offset:offset + num_samples]; the int16 clip is cropped first, so a
  long clip in a short bucket is not converted whole."""
  pcm = ex["audio"][offset:None if num_samples is None else offset + num_samples]
  return pcm.astype(np.float32) / _PCM_SCALE


def _pad_batch(waves: Sequence[np.ndarray], table: _Table, rows: Sequence[int], batch_size: int,
               num_samples: int, num_labels: int | None, offsets: Sequence[int],
               with_labels: bool) -> dict[str, np.ndarray]:
  audio = np.zeros([batch_size, num_samples], np.float32)
  audio_mask = np.zeros([batch_size, num_samples], np.int32)
  lang_id = np.zeros([batch_size], np.int32)
  example_mask = np.zeros([batch_size], np.int32)
  if with_labels:
    labels = np.zeros([batch_size, num_labels], np.int32)
    label_mask = np.zeros([batch_size, num_labels], np.int32)
  for r, (wave, e, off) in enumerate(zip(waves, rows, offsets)):
    pcm = wave[off:off + num_samples]
    audio[r, :len(pcm)] = pcm
    audio_mask[r, :len(pcm)] = 1
    lang_id[r] = table.lang_id[e]
    example_mask[r] = 1
    if with_labels:
      toks = table.tokens[e]
      labels[r, :len(toks)] = toks
      label_mask[r, :len(toks)] = 1
  batch = {"audio": audio, "audio_mask": audio_mask, "lang_id": lang_id,
           "example_mask": example_mask}
  if with_labels:
    batch.update(labels=labels, label_mask=label_mask)
  return batch


class _StepToBatch:
  """step -> train batch; pure, picklable (grain workers receive a copy)."""

  def __init__(self, sources, table, buckets, num_labels, bucket_probs, lang_probs, members,
               seed, shard_index, with_labels, targets=None, augmenter=None,
               source_draws=None):
    self.sources, self.table, self.buckets = sources, table, buckets
    self.num_labels, self.bucket_probs, self.lang_probs = num_labels, bucket_probs, lang_probs
    self.members, self.seed, self.shard_index = members, seed, shard_index
    self.with_labels = with_labels
    self.targets = targets  # _Targets or None
    self.augmenter = augmenter  # augment.Augmenter or None
    # source_draws[b][l]: None (one source: uniform over members[b][l]) or
    # (probabilities over the language's sources in b, this host's members of each).
    self.source_draws = source_draws

  def plan(self, step: int) -> tuple[int, list[int], list[int]]:
    """(bucket, table rows, crop offsets) of batch `step` on this host."""
    return self.plan_with_speed(step)[:3]

  def plan_with_speed(self, step: int) -> tuple[int, list[int], list[int], list[float]]:
    """(bucket, table rows, crop offsets, speed factors) of batch `step` on this host.

    A speed factor that would make a clip longer than its bucket is replaced by 1.0 (the
    transcript cannot be cropped), so the slow factor reaches the shorter clips of a bucket.
    """
    b = int(np.random.default_rng([self.seed, step]).choice(len(self.buckets),
                                                            p=self.bucket_probs))
    batch_size, num_samples = self.buckets[b]
    rng = np.random.default_rng([self.seed, step, 1 + self.shard_index])
    langs = rng.choice(len(self.lang_probs[b]), size=batch_size, p=self.lang_probs[b])
    rows, offsets, factors = [], [], []
    for r, l in enumerate(langs):
      draw = self.source_draws[b][l] if self.source_draws is not None else None
      if draw is None:
        m = self.members[b][l]
      else:
        probs, per_source = draw
        m = per_source[int(rng.choice(len(probs), p=probs))]
      e = int(m[rng.integers(len(m))])
      n = int(self.table.num_samples[e])
      factor = 1.0
      if self.augmenter is not None:
        factor = self.augmenter.speed_factor(self.augmenter.rng(step, self.shard_index, r))
        if self.targets is None and self.with_labels and round(n / factor) > num_samples:
          factor = 1.0
        n = int(round(n / factor))
      factors.append(factor)
      rows.append(e)
      if n <= num_samples:
        offsets.append(0)
      elif self.targets is None:
        offsets.append(int(rng.integers(n - num_samples + 1)))
      else:  # Crop on the label grid so labels[offset / hop:] line up with the audio.
        hop = self.targets.hop
        offsets.append(hop * int(rng.integers((n - num_samples) // hop + 1)))
    return b, rows, offsets, factors

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    b, rows, offsets, factors = self.plan_with_speed(step)
    batch_size, num_samples = self.buckets[b]
    examples = _read(self.sources, self.table, rows)
    if self.augmenter is not None:  # speed perturbation needs the whole clip before the crop
      waves = self._augment(step, [_waveform(ex) for ex in examples], offsets, factors,
                            num_samples)
    else:
      waves = [_waveform(ex, off, num_samples) for ex, off in zip(examples, offsets)]
    # Rows are cropped already; `offsets` still places the frame labels (targets) below.
    batch = _pad_batch(waves, self.table, rows, batch_size, num_samples, self.num_labels[b],
                       [0] * len(waves), self.with_labels)
    if self.targets is not None:
      batch.update(self.targets.batch(self.table, rows, offsets, batch_size, num_samples))
    return batch

  def _augment(self, step, waves, offsets, factors, num_samples) -> list[np.ndarray]:
    """Speed-perturbed, cropped, then augmented rows (babble drawn from the other rows)."""
    aug = self.augmenter
    waves = [aug.perturb_speed(w, f)[off:off + num_samples]
             for w, f, off in zip(waves, factors, offsets)]
    out = []
    for r, w in enumerate(waves):
      rng = aug.rng(step, self.shard_index, r)
      aug.speed_factor(rng)  # the draw plan_with_speed() made; the next draws are the row's
      out.append(aug(w, rng, others=waves[:r] + waves[r + 1:])[0])
    return out


class _Targets:
  """Reads, crops and pads self-supervised frame labels for batch rows (picklable)."""

  def __init__(self, labels: Labels, datasets: Sequence[tuple[str, str]], split: str):
    self.labels, self.datasets, self.split = labels, list(datasets), split
    self.hop = int(labels.hop)

  def batch(self, table: _Table, rows: Sequence[int], offsets: Sequence[int], batch_size: int,
            num_samples: int) -> dict[str, np.ndarray]:
    length = int(self.labels.num_labels(num_samples))
    targets = np.full([batch_size, length], -1, np.int32)
    mask = np.zeros([batch_size, length], np.int32)
    for r, (e, off) in enumerate(zip(rows, offsets)):
      corpus, lang = self.datasets[table.src[e]]
      lab = self.labels.get(corpus, lang, self.split, table.utt_id[e])
      if off % self.hop:
        raise ValueError(f"crop offset {off} is not a multiple of the label hop {self.hop}")
      lab = lab[off // self.hop:][:length]
      targets[r, :len(lab)] = lab
      mask[r, :len(lab)] = 1
    return {"targets": targets, "target_mask": mask}


@dataclasses.dataclass
class TrainData:
  """What train_data() built. Iterate `dataset` (a grain IterDataset) for batches."""
  dataset: grain.IterDataset
  weights: dict[str, float]  # language -> sampling probability p_l
  sizes: dict[str, float]  # language -> hours (or utterances) used for p_l
  langs: list[str]  # lang_id -> language code
  shapes: list[tuple[int, int, int]]  # (batch_size, num_samples, num_labels) per bucket
  report: corpora.DataReport  # examples dropped by the pipeline (text, tokens, length)
  step_fn: _StepToBatch
  num_targets: list[int] | None = None  # per bucket, with labels: target length L
  # Second level: language -> {"corpus:lang" source -> q_{s|l}} (1.0 for one-source
  # languages), and the exponent it was drawn with.
  source_weights: dict[str, dict[str, float]] | None = None
  source_alpha: float = 1.0
  alpha: float = 0.5
  size_unit: str = "hours"
  source_sizes: dict[str, float] | None = None  # "corpus:lang" -> hours (or utterances)

  def weights_dict(self) -> dict:
    """Both levels, as written next to sampling_weights.json (sampling_weights_sources.json):
    alpha, p_l, source_alpha, q_{s|l}, and each source's overall share p_l * q_{s|l}."""
    return {"alpha": self.alpha, "size_unit": self.size_unit, "languages": dict(self.weights),
            "source_alpha": self.source_alpha, "sources": self.source_weights,
            "source_sizes": self.source_sizes,
            "source_shares": {s: self.weights[l] * q for l, src in self.source_weights.items()
                              for s, q in src.items()}}

  def iterator(self) -> grain.DatasetIterator:
    """A fresh iterator (supports get_state()/set_state() and grain's orbax handler)."""
    return iter(self.dataset)


def train_data(data_dir: str, datasets: Sequence[tuple[str, str]], *, split: str = "train",
               langs: Sequence[str] | None = None, tokenizer: Tokenizer | None = None,
               alpha: float = 0.5, size_unit: str = "hours",
               buckets: Sequence[tuple[int, int]] | None = None, seed: int = 0,
               shard_index: int = 0, shard_count: int = 1, worker_count: int = 0,
               long_clips: str | None = None, num_steps: int = 2**40,
               labels: Labels | None = None,
               augment: augment_lib.AugmentConfig | None = None,
               source_alpha: float = 1.0) -> TrainData:
  """Builds the language-balanced, bucketed train input.

  Args:
    data_dir: TFDS data dir holding datasets made by tfds_builder.prepare.
    datasets: [(corpus, lang), ...] to train on; a language may come from several corpora.
    split: "train", "train_10min" or "train_1h".
    langs: lang_id order (config.langs); defaults to the languages of `datasets` in order.
    tokenizer: object with encode(text, lang) -> list[int] (ids > 0). None: no labels
      (self-supervised pretraining); batches then have no labels/label_mask.
    alpha: p_l ∝ size_l^alpha (1 natural, 0 uniform, 0.5 XLS-R).
    source_alpha: within a language of several sources, q_{s|l} ∝ size_s^source_alpha
      (1 natural, 0 uniform over the language's sources); no effect on one-source languages.
    size_unit: "hours" or "utterances" for size_l.
    buckets: (batch_size, num_samples) per bucket, see make_buckets(); per host.
    seed: everything random derives from (seed, step, shard_index).
    shard_index, shard_count: this host's share (jax.process_index(), jax.process_count()).
    worker_count: grain worker processes (0: in this process). Scripts using > 0 need an
      `if __name__ == "__main__":` guard.
    long_clips: clips longer than the largest bucket are "crop"ped at random (pretraining) or
      "drop"ped and counted (CTC, where a crop breaks the transcript). Default: "drop" with a
      tokenizer, "crop" without.
    num_steps: length of the (effectively endless) step range.
    labels: a mlasr.targets.labels.LabelStore: adds `targets`/`target_mask` (see module doc).
    augment: waveform augmentation (mlasr.data.augment), drawn from (seed, step, shard, row).
  """
  buckets = sorted([tuple(map(int, b)) for b in (buckets or make_buckets())], key=lambda x: x[1])
  langs = list(langs) if langs is not None else source_languages(datasets)
  long_clips = long_clips or ("drop" if tokenizer is not None else "crop")
  if long_clips not in ("crop", "drop"):
    raise ValueError(f"long_clips must be 'crop' or 'drop', got {long_clips!r}")
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
  augmenter = augment_lib.Augmenter(augment, seed) if augment and augment.enabled else None
  if augmenter is not None and labels is not None and set(augment.speed_factors) - {1.0}:
    raise ValueError("speed perturbation would move the frame labels of a LabelStore; use it "
                     "for CTC or BEST-RQ, not with dumped HuBERT targets")
  report = corpora.DataReport()
  max_len = buckets[-1][1]
  table = _load_table(data_dir, datasets, split, langs, tokenizer,
                      max_len if long_clips == "drop" else None, report, labels)

  sizes = sampling.sizes_from_durations(
      [(langs[l], n / SAMPLE_RATE) for l, n in zip(table.lang_id, table.num_samples)], size_unit)
  names = [f"{c}:{l}" for c, l in datasets]
  src_sizes = sampling.sizes_from_durations(
      [(names[s], n / SAMPLE_RATE) for s, n in zip(table.src, table.num_samples)], size_unit)
  by_lang = {}
  for s, (_, l) in enumerate(datasets):
    if names[s] in src_sizes:
      by_lang.setdefault(l, {})[names[s]] = src_sizes[names[s]]
  weights = sampling.language_weights(sizes, alpha)  # p_l exactly as the one-level sampler
  _, q = sampling.two_level_weights(by_lang, alpha, source_alpha)
  log.info("language sampling weights (alpha=%s, %s): %s", alpha, size_unit,
           {l: round(w, 4) for l, w in weights.items()})
  if any(len(v) > 1 for v in q.values()):
    log.info("source sampling weights within languages (source_alpha=%s): %s", source_alpha,
             {l: {s: round(w, 4) for s, w in v.items()} for l, v in q.items()})

  lengths = np.minimum(table.num_samples, max_len)
  bucket_of = np.searchsorted(np.array([n for _, n in buckets]), lengths)
  counts = np.bincount(table.src, minlength=len(datasets))
  # p_l * q_{s|l} / n_s; with one source q = 1.0 and n_s = n_l: the one-level p_l / n_l.
  mass = np.array([weights.get(langs[l], 0.0) * q.get(langs[l], {}).get(names[s], 0.0)
                   / max(counts[s], 1) for l, s in zip(table.lang_id, table.src)])
  members, lang_probs, bucket_mass, source_draws = [], [], [], []

  def mine(m):
    m_host = m[shard_index::shard_count]
    return m_host if len(m_host) else m  # Tiny data: share rather than starve a host.

  for b in range(len(buckets)):
    in_b = bucket_of == b
    lm = np.array([mass[in_b & (table.lang_id == l)].sum() for l in range(len(langs))])
    bucket_mass.append(lm.sum())
    lang_probs.append(lm / lm.sum() if lm.sum() > 0 else np.full(len(langs), 1 / len(langs)))
    per_lang, draws = [], []
    for l in range(len(langs)):
      in_bl = in_b & (table.lang_id == l)
      per_lang.append(mine(np.flatnonzero(in_bl)))
      srcs = [s for s in np.unique(table.src[in_bl])]
      if len(srcs) < 2:
        draws.append(None)
        continue
      sm = np.array([mass[in_bl & (table.src == s)].sum() for s in srcs])
      draws.append((sm / sm.sum() if sm.sum() > 0 else np.full(len(srcs), 1 / len(srcs)),
                    [mine(np.flatnonzero(in_bl & (table.src == s))) for s in srcs]))
    members.append(per_lang)
    source_draws.append(draws)
  bucket_probs = np.array(bucket_mass) / np.array([bs for bs, _ in buckets])
  bucket_probs /= bucket_probs.sum()
  num_labels = _label_lengths(table, bucket_of, len(buckets))

  sources = [tfds_builder.data_source(data_dir, c, l, split) for c, l in datasets]
  step_fn = _StepToBatch(sources, table, buckets, num_labels, bucket_probs, lang_probs, members,
                         seed, shard_index, tokenizer is not None,
                         _Targets(labels, datasets, split) if labels is not None else None,
                         augmenter, source_draws)
  ds = grain.MapDataset.range(num_steps).map(step_fn)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=2))
  if worker_count > 0:
    from absl import flags  # pylint: disable=g-import-not-at-top
    if not flags.FLAGS.is_parsed():
      # grain reads its absl flags when starting workers; scripts without absl (pytest,
      # notebooks) would otherwise fail with UnparsedFlagAccessError.
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count,
                                                     per_worker_buffer_size=2))
  shapes = [(bs, n, nl) for (bs, n), nl in zip(buckets, num_labels)]
  log.info("train buckets (batch, samples, labels): %s; pipeline skips:\n%s", shapes,
           report.summary())
  num_targets = ([int(labels.num_labels(n)) for _, n in buckets] if labels is not None
                 else None)
  return TrainData(it, weights, sizes, langs, shapes, report, step_fn, num_targets,
                   source_weights=q, source_alpha=source_alpha, alpha=alpha, size_unit=size_unit,
                   source_sizes=src_sizes)


@dataclasses.dataclass
class EvalData:
  """Eval batches of one split: iterate `batches()` (a fresh generator each call)."""
  data_dir: str
  datasets: list[tuple[str, str]]
  split: str
  langs: list[str]
  table: _Table
  plan: list[tuple[int, list[int]]]  # (bucket shape index, table rows) per batch
  shapes: list[tuple[int, int, int]]
  report: corpora.DataReport
  with_labels: bool
  labels: Labels | None = None

  def __len__(self) -> int:
    return len(self.plan)

  def batches(self) -> Iterator[dict[str, np.ndarray]]:
    sources = [tfds_builder.data_source(self.data_dir, c, l, self.split)
               for c, l in self.datasets]
    for b, rows in self.plan:
      batch_size, num_samples, num_labels = self.shapes[b]
      exs = _read(sources, self.table, rows)
      batch = _pad_batch([_waveform(ex) for ex in exs], self.table, rows, batch_size,
                         num_samples, num_labels, [0] * len(rows), self.with_labels)
      if self.labels is not None:
        batch.update(_Targets(self.labels, self.datasets, self.split).batch(
            self.table, rows, [0] * len(rows), batch_size, num_samples))
      pad = [""] * (batch_size - len(rows))
      batch["utt_id"] = np.array([self.table.utt_id[e] for e in rows] + pad, dtype=object)
      batch["text_norm"] = np.array([self.table.text_norm[e] for e in rows] + pad, dtype=object)
      batch["lang"] = np.array([self.langs[self.table.lang_id[e]] for e in rows] + pad,
                               dtype=object)
      batch["corpus"] = np.array([self.datasets[self.table.src[e]][0] for e in rows] + pad,
                                 dtype=object)
      batch["speaker"] = np.array([_text(ex["speaker"]) for ex in exs] + pad, dtype=object)
      yield batch


def eval_data(data_dir: str, datasets: Sequence[tuple[str, str]], split: str = "test", *,
              langs: Sequence[str] | None = None, tokenizer: Tokenizer | None = None,
              buckets: Sequence[tuple[int, int]] | None = None, batch_size: int | None = None,
              shard_index: int = 0, shard_count: int = 1,
              labels: Labels | None = None) -> EvalData:
  """In-order eval batches: every kept utterance once, padded batches with example_mask.

  Utterances with empty normalised text (or untokenizable, with a tokenizer) are skipped and
  counted in `.report` (they have no reference to score). Shapes are the train buckets (with
  `batch_size`, if given, replacing every bucket's batch size); clips longer than the largest
  bucket go to extra eval-only shapes (length rounded up to a multiple of the largest bucket).
  With `labels`, batches also carry `targets`/`target_mask` (utterances without labels are
  skipped and counted as "no_targets").
  """
  buckets = sorted([tuple(map(int, b)) for b in (buckets or make_buckets())], key=lambda x: x[1])
  if batch_size is not None:
    buckets = [(int(batch_size), n) for _, n in buckets]
  langs = list(langs) if langs is not None else source_languages(datasets)
  report = corpora.DataReport()
  table = _load_table(data_dir, datasets, split, langs, tokenizer or _NonEmpty(), None, report,
                      labels)
  batch_samples = max(bs * n for bs, n in buckets)
  max_len = buckets[-1][1]
  shapes = list(buckets)
  bucket_of = []
  for n in table.num_samples:
    if n <= max_len:
      bucket_of.append(int(np.searchsorted([s for _, s in buckets], n)))
    else:
      length = int(math.ceil(n / max_len) * max_len)
      shape = (batch_size or max(1, batch_samples // length), length)
      if shape not in shapes:
        shapes.append(shape)
      bucket_of.append(shapes.index(shape))
  bucket_of = np.asarray(bucket_of)
  num_labels = _label_lengths(table, bucket_of, len(shapes))
  plan = []
  for b, (batch_size, _) in enumerate(shapes):
    members = np.flatnonzero(bucket_of == b)
    if not len(members):
      continue
    per_host = math.ceil(len(members) / shard_count)
    mine = members[shard_index::shard_count].tolist()
    for k in range(math.ceil(per_host / batch_size)):
      plan.append((b, mine[k * batch_size:(k + 1) * batch_size]))
  shapes3 = [(bs, n, nl) for (bs, n), nl in zip(shapes, num_labels)]
  return EvalData(data_dir, list(datasets), split, langs, table, plan, shapes3, report,
                  tokenizer is not None, labels)


def _text(value) -> str:
  """TFDS Text features come back from array_record as bytes."""
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def source_languages(datasets: Sequence[tuple[str, str]]) -> list[str]:
  """The datasets' languages in first-seen order: what lang_id indexes unless a config
  names its languages (`config.data.langs`, see mlasr.data.inputs.languages)."""
  return list(dict.fromkeys(lang for _, lang in datasets))


class _NonEmpty:
  """Stand-in tokenizer for eval without labels: only checks the text is non-empty."""

  def encode(self, text: str, lang: str) -> list[int]:
    del lang
    return [1] if text.strip() else []
