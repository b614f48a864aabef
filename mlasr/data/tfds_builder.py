"""TFDS array_record datasets, one per (corpus, lang), built without TensorFlow.

One builder class, `MlasrAsr`, with a BuilderConfig made on the fly per `<corpus>_<lang>`
(TFDS accepts config objects not listed in BUILDER_CONFIGS), so datasets land in
`DATA_DIR/mlasr_asr/<corpus>_<lang>/<version>/` and are read back with
`tfds.builder_from_directory` (no registration or class import needed by readers).

Next to each dataset we write `data_report.json` (every skipped clip/row, counted) and
`mlasr_index.json` (per split, in data-source order: utt_id, num_samples, text_norm) so the
input pipeline can bucket and filter without reading audio. The index is written last and
marks a finished preparation; a dataset found without its report (the process died between
the two writes) is rebuilt, so the report is never lost.

What is refused, each counted in the report by reason (nothing one clip does is fatal: any
exception while preparing an item, MemoryError included, is counted as `error(<type>)`):
- audio that load_audio refuses (`audio_<reason>`: undecodable, bad_sample_rate, bad_header,
  truncated, too_long, ...), clips shorter than MIN_SECONDS (`too_short`), digital silence
  (`audio_silent`), clips whose decoded length disagrees with the corpus' stated duration
  (`audio_truncated`, `audio_longer_than_stated`);
- transcripts too long to be spoken in the clip (`text_too_long_for_audio`: more than
  MAX_CHARS_PER_SECOND normalised characters per second plus CHARS_SLACK); one such row set a
  whole bucket's label width to 100,000;
- one clip listed in two splits (`also_in_<split>`): it is kept in the split that is scored
  (test before dev before train) and dropped from the other, so nothing trained on is
  tested on.

A partial download (most listed clips absent) prepares what is there, every absent clip
counted (`missing_audio`, and the report's `listing`); a split that lists clips and has none
of them on disk fails the preparation (ValueError naming it), as a language with no usable
clip does. Options that change what a split holds (`train_from_validated`) are written to
`prepare_options.json`; a dataset prepared under other options is refused, not reused.
Common Voice's text-only sentence files go to DATA_DIR/lm_text/<lang>.txt (validated) and
DATA_DIR/lm_text_unvalidated/<lang>.txt, for `mlasr.lm --extra_text` and the tokenizer.

Unlabeled sources (corpora.UNLABELED_CORPORA: voxpopuli_unlabelled, audio_dir) are built by
the same builder into the same features, with empty `text`/`text_norm` and a train split
only: each recording is streamed, decoded whole as int16 and cut into segments
(mlasr.data.segment: fixed windows by default, or VAD), one example per segment, utt_id
`<recording>@<start seconds>`. A recording refused whole counts once by its reason; each
piece left out (short remainder, silence, no speech) counts once by its reason, and the
seconds of both sides go to the report's `segmentation` (kept + left out = decoded). The
segmentation options are prepare options (prepare_options.json).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import io
import json
import logging
import os
import shutil
import types
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from mlasr.data import audio as audio_lib
from mlasr.data import corpora
from mlasr.data import segment as segment_lib

log = logging.getLogger(__name__)

SAMPLE_RATE = audio_lib.SAMPLE_RATE
MIN_SECONDS = 0.1
# Peak at or below this (int16 units, about -80 dBFS) is digital silence: no speech to learn.
SILENCE_PEAK = 3
# Decoded vs stated duration (clip_durations.tsv): MP3 decoders differ by a frame or two.
STATED_TOLERANCE_SECONDS = 0.15
STATED_TOLERANCE_FRACTION = 0.05
# Absurd, not fast, transcripts: fast speech is ~15-20 characters per second in Latin script
# and up to ~40 code points in abugidas (Devanagari vowel signs are code points of their own).
MAX_CHARS_PER_SECOND = 60
CHARS_SLACK = 50
# The order in which a clip listed in several splits is given to one of them.
_SPLIT_PRECEDENCE = ("test", "dev", "train")
NAME = "mlasr_asr"
VERSION = "1.0.0"
INDEX_FILE = "mlasr_index.json"
REPORT_FILE = "data_report.json"
OPTIONS_FILE = "prepare_options.json"
# Where prepare() writes Common Voice's text-only corpora, under DATA_DIR, as <lang>.txt.
TEXT_DIRS = {"validated_sentences": "lm_text", "unvalidated_sentences": "lm_text_unvalidated"}


def _spill_without_tensorflow() -> None:
  """Lets TFDS write splits bigger than its 1 GB in-memory shuffle buffer without TensorFlow.

  Past that size `tfds.core.shuffle` spills to temporary bucket files through
  `tf.io.gfile` (and nothing else of TensorFlow), so a real Common Voice language failed
  with "No module named 'tensorflow'" while the small benchmark languages worked. Local
  files are all it needs; with TensorFlow installed nothing is replaced.
  """
  try:
    import tensorflow  # pylint: disable=import-outside-toplevel,unused-import
    return
  except ImportError:
    pass
  from tensorflow_datasets.core import shuffle  # pylint: disable=import-outside-toplevel

  class _ResourceExhaustedError(OSError):
    message = ""

  shuffle.tf = types.SimpleNamespace(
      io=types.SimpleNamespace(gfile=types.SimpleNamespace(GFile=open, exists=os.path.exists,
                                                           remove=os.remove)),
      errors=types.SimpleNamespace(ResourceExhaustedError=_ResourceExhaustedError))


_spill_without_tensorflow()


def _decode(utt: corpora.Utterance) -> tuple[corpora.Utterance, np.ndarray | None, str | None]:
  """(utt, int16 PCM or None, skip reason or None); run on the decoding threads.

  Never raises: whatever one clip does (MemoryError included) is its skip reason.
  """
  try:
    wav = audio_lib.load_audio(utt.audio_path, SAMPLE_RATE)
    pcm = (wav * 32767.0).round().astype(np.int16)
    del wav
  except audio_lib.AudioError as e:
    return utt, None, "audio_" + e.reason.split(" ")[0]
  except Exception as e:  # pylint: disable=broad-except
    log.warning("%s: %s: %s", utt.audio_path, type(e).__name__, e)
    return utt, None, f"error({type(e).__name__})"
  if len(pcm) and int(np.abs(pcm.astype(np.int32)).max()) <= SILENCE_PEAK:
    return utt, None, "audio_silent"
  if utt.stated_seconds is not None:
    seconds = len(pcm) / SAMPLE_RATE
    tolerance = STATED_TOLERANCE_SECONDS + STATED_TOLERANCE_FRACTION * utt.stated_seconds
    if seconds < utt.stated_seconds - tolerance:
      return utt, None, "audio_truncated"
    if seconds > utt.stated_seconds + tolerance:
      return utt, None, "audio_longer_than_stated"
  return utt, pcm, None


def _decode_recording(utt: corpora.Utterance, cfg: segment_lib.SegmentConfig):
  """(utt, int16 PCM, its pieces, None) or (utt, None, None, skip reason) of an unlabeled
  recording; run on the decoding threads. Never raises, like _decode."""
  try:
    pcm = segment_lib.decode_recording(utt.audio_path, cfg)
    return utt, pcm, segment_lib.cut(pcm, cfg), None
  except audio_lib.AudioError as e:
    return utt, None, None, "audio_" + e.reason.split(" ")[0]
  except Exception as e:  # pylint: disable=broad-except
    log.warning("%s: %s: %s", utt.audio_path, type(e).__name__, e)
    return utt, None, None, f"error({type(e).__name__})"


class NoUsableExamples(Exception):
  """Raised while building when decoding refused every clip the loaders kept."""


class MlasrAsr(tfds.core.GeneratorBasedBuilder):
  """Speech + transcript examples of one (corpus, lang); the config name is `<corpus>_<lang>`."""

  VERSION = tfds.core.Version(VERSION)
  # No checksums/metadata files live next to this module; without this, TFDS looks for them
  # through `importlib_resources`, which is not installed (and not needed).
  code_path = None

  def __init__(self, *, utterances: dict[str, list[corpora.Utterance]] | None = None,
               report: corpora.DataReport | None = None,
               normalize: Callable[[str, str], str] | None = None, num_workers: int = 1,
               segment: segment_lib.SegmentConfig | None = None, **kwargs):
    self._utterances = utterances or {}
    # Unlabeled recordings: cut into segments (None: one example per clip, transcribed).
    self._segment = segment
    self._report = report if report is not None else corpora.DataReport()
    self._normalize = normalize
    self._num_workers = num_workers
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="mlasr speech recognition examples for one (corpus, language).",
        features=tfds.features.FeaturesDict({
            "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16),  # 16 kHz PCM
            "text": tfds.features.Text(),
            "text_norm": tfds.features.Text(),
            "lang": tfds.features.Text(),
            "speaker": tfds.features.Text(),
            "utt_id": tfds.features.Text(),
            "duration": tfds.features.Scalar(dtype=np.float32),
        }))

  def _split_generators(self, dl_manager):
    """A generator per split that has at least one usable example.

    TFDS fails the whole build on a split that yields nothing, and a split whose clips the
    loader kept can still lose every one in decoding. So each split's first usable example
    is found here (usually its first clip; every clip only when all are bad) and a split
    without one is left out, its clips counted in the report as usual.
    """
    del dl_manager
    out = {}
    for split, utts in self._utterances.items():
      for i, utt in enumerate(utts):
        head = self._examples([self._decode_one(utt)])  # a recording's further segments too
        first = next(head, None)
        if first is not None:
          out[split] = self._chain(first, head, self._generate_examples(utts[i + 1:]))
          break
      else:
        if utts:
          self._report.warn(utts[0].corpus, utts[0].lang, "split_left_out",
                            f"split {split!r}: all {len(utts)} clips were refused")
    if not out:
      raise NoUsableExamples("every clip was refused")
    return out

  @staticmethod
  def _chain(first, *rest):
    yield first
    for part in rest:
      yield from part

  def _decode_one(self, utt: corpora.Utterance):
    if self._segment is None:
      return _decode(utt)
    return _decode_recording(utt, self._segment)

  def _generate_examples(self, utts: Sequence[corpora.Utterance]) -> Iterator[tuple[str, dict]]:
    if not utts:
      return
    if self._num_workers > 1:
      # Threads, not processes: libsndfile, mpg123 and soxr release the GIL, so decoding
      # scales over cores, and a thread pool starts in microseconds where spawned processes
      # took ~8 s per split to import their libraries (most of a small corpus' conversion).
      # Recordings can be hours: fewer of them in flight than clips.
      window = self._num_workers + 1 if self._segment is not None else 4 * self._num_workers
      with concurrent.futures.ThreadPoolExecutor(self._num_workers) as pool:
        yield from self._examples(_ordered_map(pool, self._decode_one, utts, window))
    else:
      yield from self._examples(map(self._decode_one, utts))

  def _examples(self, decoded) -> Iterator[tuple[str, dict]]:
    if self._segment is not None:
      yield from self._segment_examples(decoded)
      return
    for utt, pcm, error in decoded:
      example = None
      if error is None:
        try:
          error, example = self._example(utt, pcm)
        except Exception as e:  # pylint: disable=broad-except  (one item is never fatal)
          log.warning("%s: %s: %s", utt.audio_path, type(e).__name__, e)
          error = f"error({type(e).__name__})"
      if error is not None:
        self._report.skip(utt.corpus, utt.lang, utt.split, error, utt.audio_path)
        continue
      self._report.keep(utt.corpus, utt.lang, utt.split, float(example["duration"]))
      yield utt.utt_id, example

  def _segment_examples(self, decoded) -> Iterator[tuple[str, dict]]:
    """One example per kept segment of each decoded recording (see the module doc)."""
    for utt, pcm, pieces, error in decoded:
      if error is not None:
        self._report.skip(utt.corpus, utt.lang, utt.split, error, utt.audio_path)
        continue
      kept = []
      for p in pieces:
        start = p.start / SAMPLE_RATE
        if p.reason is not None:
          self._report.skip(utt.corpus, utt.lang, utt.split, p.reason,
                            f"{utt.audio_path}@{start:.2f}-{p.end / SAMPLE_RATE:.2f}")
          continue
        kept.append(p.seconds)
        self._report.keep(utt.corpus, utt.lang, utt.split, p.seconds)
        seg_id = f"{utt.utt_id}@{start:.2f}"
        yield seg_id, {
            "audio": pcm[p.start:p.end].copy(), "text": "", "text_norm": "", "lang": utt.lang,
            "speaker": utt.speaker, "utt_id": seg_id, "duration": np.float32(p.seconds)}
      self._report.segmented(utt.corpus, utt.lang, utt.split, len(pcm) / SAMPLE_RATE, kept,
                             segment_lib.left_out_seconds(pieces, len(pcm)))

  def _example(self, utt: corpora.Utterance, pcm: np.ndarray) -> tuple[str | None, dict | None]:
    """(skip reason, None) or (None, the example) for a decoded clip."""
    if len(pcm) < MIN_SECONDS * SAMPLE_RATE:
      return "too_short", None
    duration = len(pcm) / SAMPLE_RATE
    text_norm = self._normalize(utt.text, utt.lang)
    if len(text_norm) > MAX_CHARS_PER_SECOND * duration + CHARS_SLACK:
      return "text_too_long_for_audio", None
    return None, {
        "audio": pcm, "text": utt.text, "text_norm": text_norm, "lang": utt.lang,
        "speaker": utt.speaker, "utt_id": utt.utt_id, "duration": np.float32(duration)}


def _ordered_map(pool, fn, items, window: int):
  """pool.map that keeps at most `window` results in flight: `Executor.map` submits every
  item at once and would hold a whole split's decoded audio in memory."""
  pending = collections.deque()
  for item in items:
    pending.append(pool.submit(fn, item))
    if len(pending) >= window:
      yield pending.popleft().result()
  while pending:
    yield pending.popleft().result()


def dataset_dir(data_dir: str, corpus: str, lang: str) -> str:
  """Where prepare() writes the (corpus, lang) dataset."""
  return os.path.join(data_dir, NAME, f"{corpus}_{lang}", VERSION)


def text_corpus_path(data_dir: str, lang: str, name: str = "validated_sentences") -> str:
  """Where prepare() wrote Common Voice's `name` sentences of `lang` (one per line)."""
  return os.path.join(data_dir, TEXT_DIRS[name], f"{lang}.txt")


def _write_text_corpora(root: str, data_dir: str, lang: str,
                        report: corpora.DataReport) -> None:
  for name in corpora.TEXT_CORPORA:
    sentences = corpora.read_text_corpus(root, lang, name, report)
    if not sentences:
      continue
    path = text_corpus_path(data_dir, lang, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
      f.write("".join(t + "\n" for t in sentences))
    os.replace(tmp, path)


def _options(corpus: str, train_from_validated: bool,
             segment: segment_lib.SegmentConfig | None = None) -> dict:
  if corpus in corpora.UNLABELED_CORPORA:
    return (segment or segment_lib.SegmentConfig()).options()
  return {"train_from_validated": bool(train_from_validated)} if corpus == "commonvoice" else {}


def _check_options(out_dir: str, want: dict) -> None:
  path = os.path.join(out_dir, OPTIONS_FILE)
  # Datasets prepared before options were written (labeled ones only had this option).
  have = {k: False for k in want} if "train_from_validated" in want else {}
  if os.path.isfile(path):
    with open(path, encoding="utf-8") as f:
      have.update(json.load(f))
  if have != want:
    key = next(k for k in want if have.get(k) != want[k])
    field = key if key == "train_from_validated" else f"unlabeled.{key}"
    raise ValueError(
        f"{out_dir} was prepared with {have}, this run asks for {want} (config.data."
        f"{field}); its splits differ. Use another "
        "--config.data.data_dir, or remove that folder to prepare it again.")


def _load_utterances(root: str, corpus: str, lang: str, report: corpora.DataReport,
                     train_from_validated: bool = False) -> dict[str, list[corpora.Utterance]]:
  utts = corpora.read_corpus(root, corpus, langs=[lang], report=report,
                             train_from_validated=train_from_validated)
  by_split = {s: [u for u in utts if u.split == s] for s in corpora.SPLITS}
  # A clip in two splits would be trained on and scored: it goes to one (see module doc).
  owner = {}
  for split in _SPLIT_PRECEDENCE:
    kept = []
    for u in by_split[split]:
      key = os.path.normpath(u.audio_path)
      if key in owner:
        report.skip(corpus, lang, split, f"also_in_{owner[key]}", u.audio_path)
      else:
        owner[key] = split
        kept.append(u)
    by_split[split] = kept
  for name in corpora.SUBSETS:
    try:
      ids = corpora.read_subset(root, corpus, lang, name)
    except FileNotFoundError:
      continue  # Subsets are optional; real downloads have none.
    train = {u.utt_id: u for u in by_split["train"]}
    for utt_id in sorted(ids - set(train)):
      report.skip(corpus, lang, name, "subset_id_not_in_train", utt_id)
    by_split[name] = [dataclasses.replace(u, split=name)
                      for u in by_split["train"] if u.utt_id in ids]
  return by_split


def prepare(root: str, data_dir: str, corpus: str, lang: str, *, num_workers: int = 1,
            normalize: Callable[[str, str], str] | None = None,
            train_from_validated: bool = False,
            segment: segment_lib.SegmentConfig | dict | None = None) -> str:
  """Builds the (corpus, lang) array_record dataset from corpus root `root`; idempotent.

  Splits: train, dev, test, plus train_10min / train_1h where ROOT/subsets/<corpus>/<lang>/
  has manifests. Empty splits, and splits whose every clip is refused, are left out (their
  rows counted in the report as missing/skipped).

  Raises:
    FileNotFoundError: `root` has no folder for (corpus, lang); nothing is written then.
    ValueError: no usable utterance at all, or a split that lists clips has none of them on
      disk (the report, written, says why); or the dataset exists, prepared with other
      options.

  Args:
    root: corpus root as written by data_prep (or real downloads in the same layout).
    data_dir: TFDS data dir.
    corpus: "commonvoice" or "voxpopuli".
    lang: language code (the directory name in the corpus).
    num_workers: threads decoding audio (mp3 decoding + resampling dominates).
    normalize: text normaliser; defaults to mlasr.data.text.normalize.
    train_from_validated: Common Voice: train on validated.tsv minus the dev/test speakers
      and sentences instead of train.tsv (config.data.train_from_validated).
    segment: unlabeled corpora: how recordings are cut (segment.SegmentConfig or its dict,
      config.data.unlabeled; default fixed 15 s windows, 2 s minimum). Ignored otherwise.

  Returns:
    The dataset directory (also holding data_report.json and mlasr_index.json).
  """
  out_dir = dataset_dir(data_dir, corpus, lang)
  report_path = os.path.join(out_dir, REPORT_FILE)
  info_path = os.path.join(out_dir, "dataset_info.json")
  unlabeled = corpus in corpora.UNLABELED_CORPORA
  if isinstance(segment, dict):
    segment = segment_lib.SegmentConfig.from_dict(segment)
  segment = (segment or segment_lib.SegmentConfig()) if unlabeled else None
  options = _options(corpus, train_from_validated, segment)
  if os.path.isfile(os.path.join(out_dir, INDEX_FILE)):
    _check_options(out_dir, options)
    log.info("%s/%s already prepared in %s", corpus, lang, out_dir)
    return out_dir
  corpora.check_root(root, corpus, lang)  # before anything is written under data_dir
  if os.path.isfile(info_path) and not os.path.isfile(report_path):
    # The build finished and the process died before the report was written: the skip
    # counts exist nowhere else, so the dataset is built again rather than left unexplained.
    log.warning("%s: dataset without its %s (an earlier preparation stopped before writing "
                "it); building it again", out_dir, REPORT_FILE)
    shutil.rmtree(out_dir)
  if os.path.isdir(out_dir) and not os.path.isfile(info_path):
    # Only the report of an attempt that failed (no usable clip, a lost split): TFDS would
    # take the folder for a dataset and fail to read its info, so it goes before a rebuild.
    for name in (REPORT_FILE, OPTIONS_FILE):
      if os.path.isfile(os.path.join(out_dir, name)):
        os.remove(os.path.join(out_dir, name))
    try:
      os.rmdir(out_dir)
    except OSError:
      pass
  if normalize is None:
    from mlasr.data import text as text_lib  # pylint: disable=g-import-not-at-top
    normalize = text_lib.normalize
  if os.path.isfile(info_path) and os.path.isfile(os.path.join(out_dir, OPTIONS_FILE)):
    _check_options(out_dir, options)  # built, index not yet written: same options only
  report = corpora.DataReport()
  utterances = _load_utterances(root, corpus, lang, report, train_from_validated)
  if corpus == "commonvoice":
    _write_text_corpora(root, data_dir, lang, report)

  def no_usable() -> ValueError:
    report.to_json(report_path)  # the root is right (checked above): say why, there
    return ValueError(f"{root}: no usable {corpus}/{lang} utterances (report: {report_path}):"
                      f"\n{report.summary()}")
  if not any(utterances.values()):
    raise no_usable()
  if lost := report.lost_splits(corpus, lang):
    report.to_json(report_path)
    e = report.listing
    raise ValueError(
        f"{root}: {corpus}/{lang} lost whole splits, every clip they list is absent: "
        + "; ".join(f"{s!r} ({e[(c, l, s)]['listed']} clips)" for c, l, s in lost)
        + f". A partial download? Download those clips (report: {report_path}):\n"
        f"{report.summary()}")
  builder = MlasrAsr(utterances=utterances, report=report, normalize=normalize,
                     num_workers=num_workers, segment=segment, config=tfds.core.BuilderConfig(
                         name=f"{corpus}_{lang}", description=f"{corpus} {lang}"),
                     data_dir=data_dir, file_format="array_record")
  if not os.path.isfile(info_path):
    # TFDS draws a bar per split and per shuffle, and prints "Downloading and preparing
    # dataset ..." / "... downloaded and prepared" to stdout (termcolor) for each one; the
    # caller shows one bar for the stage.
    tfds.display_progress_bar(False)
    try:
      with contextlib.redirect_stdout(io.StringIO()):
        builder.download_and_prepare()
    except NoUsableExamples:
      raise no_usable() from None
    finally:
      tfds.display_progress_bar(True)
    with open(os.path.join(out_dir, OPTIONS_FILE), "w", encoding="utf-8") as f:
      json.dump(options, f)  # before the report: a dataset with its report has its options
    report.to_json(report_path)
  else:
    report = corpora.DataReport.from_json(report_path)  # the build's, not the loader's alone
  _write_index(out_dir)  # last: its presence means "prepared"
  # One line per dataset (the stage has its own bar); the full report is in the dataset's
  # folder, and its other lines (skips, absent clips, warnings) are shown here.
  kept = [e for (c, l, _), e in report.kept.items() if (c, l) == (corpus, lang)]
  losses = [line for line in report.summary().splitlines() if not line.startswith("kept")]
  log.info("prepared %s/%s: %d records, %.2f h over its splits and subsets (%s)%s", corpus,
           lang, sum(e["count"] for e in kept), sum(e["seconds"] for e in kept) / 3600,
           out_dir, "".join("\n" + line for line in losses))
  return out_dir


def _write_index(out_dir: str) -> None:
  """One pass over every split (audio included, so done once at prepare time)."""
  builder = tfds.builder_from_directory(out_dir)
  index = {}
  for split in builder.info.splits:
    source = builder.as_data_source(split)
    cols = {"utt_id": [], "num_samples": [], "text_norm": []}
    for i in range(len(source)):
      ex = source[i]
      cols["utt_id"].append(_str(ex["utt_id"]))
      cols["num_samples"].append(int(len(ex["audio"])))
      cols["text_norm"].append(_str(ex["text_norm"]))
    index[split] = cols
  tmp = os.path.join(out_dir, INDEX_FILE + ".tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(index, f, ensure_ascii=False)
  os.replace(tmp, os.path.join(out_dir, INDEX_FILE))


def _str(x: Any) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def data_source(data_dir: str, corpus: str, lang: str, split: str):
  """Random-access source of example dicts (numpy audio int16, text fields as bytes).

  Readable by grain (`grain.MapDataset.source(...)`) and picklable for grain workers.
  """
  path = dataset_dir(data_dir, corpus, lang)
  if not os.path.isfile(os.path.join(path, "dataset_info.json")):
    raise FileNotFoundError(f"{path}: no prepared dataset for {corpus}/{lang}; run "
                            f"mlasr.data.tfds_builder.prepare(root, {data_dir!r}, {corpus!r}, "
                            f"{lang!r}) first")
  builder = tfds.builder_from_directory(path)
  if split not in builder.info.splits:
    raise KeyError(f"{path}: no split {split!r}; available: {sorted(builder.info.splits)}")
  return builder.as_data_source(split)


def load_index(data_dir: str, corpus: str, lang: str) -> dict[str, dict[str, list]]:
  """The per-split index written by prepare(): utt_id, num_samples, text_norm columns."""
  path = os.path.join(dataset_dir(data_dir, corpus, lang), INDEX_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: missing; run tfds_builder.prepare for {corpus}/{lang}")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def load_report(data_dir: str, corpus: str, lang: str) -> corpora.DataReport:
  return corpora.DataReport.from_json(
      os.path.join(dataset_dir(data_dir, corpus, lang), REPORT_FILE))


def main(argv: Sequence[str] | None = None) -> None:
  """`python -m mlasr.data.tfds_builder ROOT DATA_DIR corpus:lang ...`."""
  import argparse  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(description=main.__doc__)
  p.add_argument("root")
  p.add_argument("data_dir")
  p.add_argument("datasets", nargs="+", help="corpus:lang, e.g. commonvoice:hi, "
                 "voxpopuli_unlabelled:fi, audio_dir:sw")
  p.add_argument("--num_workers", type=int, default=os.cpu_count() or 1)
  p.add_argument("--train_from_validated", action="store_true",
                 help="Common Voice: train on validated.tsv minus the dev/test speakers and "
                 "sentences")
  defaults = segment_lib.SegmentConfig()
  p.add_argument("--segment", default=defaults.segment, choices=segment_lib.SEGMENTERS,
                 help="unlabeled sources: fixed windows or VAD segments")
  p.add_argument("--window_seconds", type=float, default=defaults.window_seconds)
  p.add_argument("--min_seconds", type=float, default=defaults.min_seconds)
  args = p.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  segment = segment_lib.SegmentConfig(args.segment, args.window_seconds, args.min_seconds)
  for spec in args.datasets:
    corpus, lang = spec.split(":")
    out = prepare(args.root, args.data_dir, corpus, lang, num_workers=args.num_workers,
                  train_from_validated=args.train_from_validated, segment=segment)
    print(f"{corpus}/{lang}: {out} (report: {os.path.join(out, REPORT_FILE)})")


if __name__ == "__main__":
  main()
