"""TFDS array_record datasets, one per (corpus, lang), built without TensorFlow.

One builder class, `MlasrAsr`, with a BuilderConfig made on the fly per `<corpus>_<lang>`
(TFDS accepts config objects not listed in BUILDER_CONFIGS), so datasets land in
`DATA_DIR/mlasr_asr/<corpus>_<lang>/<version>/` and are read back with
`tfds.builder_from_directory` (no registration or class import needed by readers).

Next to each dataset we write `data_report.json` (every skipped clip/row, counted) and
`mlasr_index.json` (per split, in data-source order: utt_id, num_samples, text_norm) so the
input pipeline can bucket and filter without reading audio; it comes from the rows the
build kept while writing (no second read of the records). The index is written last and
marks a finished preparation; a dataset found without its report (the process died between
the two writes) is rebuilt, so the report is never lost.

`prepare(..., beam_runner=...)` (CLI `--beam_runner/--beam_options`) builds the same dataset
as a Beam pipeline (DirectRunner, Flink, Spark, Dataflow; docs/beam_conversion.md): the same
_examples make every record and count every refused clip, on workers, in work chunks that a
re-run after an interruption does not decode again (_BeamWork). Records, index and report
equal the single-process path's, which stays the default.

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
import hashlib
import io
import json
import logging
import os
import pickle
import shlex
import shutil
import types
import uuid
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


def _decode_one(utt: corpora.Utterance, segment: segment_lib.SegmentConfig | None):
  """_decode (a transcribed clip) or _decode_recording (an unlabeled one, `segment` set)."""
  if segment is None:
    return _decode(utt)
  return _decode_recording(utt, segment)


def _examples(decoded, normalize: Callable[[str, str], str],
              segment: segment_lib.SegmentConfig | None, report) -> Iterator[tuple[str, dict]]:
  """The (key, example) pairs of decoded items, each item kept or counted by reason.

  The one place where a decoded clip becomes examples, for the single-process and the Beam
  path alike; `report` is the DataReport (single process) or a _Recorder whose calls are
  replayed into it afterwards (Beam), so both write the same report.
  """
  if segment is not None:
    yield from _segment_examples(decoded, report)
    return
  for utt, pcm, error in decoded:
    example = None
    if error is None:
      try:
        error, example = _example(utt, pcm, normalize)
      except Exception as e:  # pylint: disable=broad-except  (one item is never fatal)
        log.warning("%s: %s: %s", utt.audio_path, type(e).__name__, e)
        error = f"error({type(e).__name__})"
    if error is not None:
      report.skip(utt.corpus, utt.lang, utt.split, error, utt.audio_path)
      continue
    report.keep(utt.corpus, utt.lang, utt.split, float(example["duration"]))
    yield utt.utt_id, example


def _segment_examples(decoded, report) -> Iterator[tuple[str, dict]]:
  """One example per kept segment of each decoded recording (see the module doc)."""
  for utt, pcm, pieces, error in decoded:
    if error is not None:
      report.skip(utt.corpus, utt.lang, utt.split, error, utt.audio_path)
      continue
    kept = []
    for p in pieces:
      start = p.start / SAMPLE_RATE
      if p.reason is not None:
        report.skip(utt.corpus, utt.lang, utt.split, p.reason,
                    f"{utt.audio_path}@{start:.2f}-{p.end / SAMPLE_RATE:.2f}")
        continue
      kept.append(p.seconds)
      report.keep(utt.corpus, utt.lang, utt.split, p.seconds)
      seg_id = f"{utt.utt_id}@{start:.2f}"
      yield seg_id, {
          "audio": pcm[p.start:p.end].copy(), "text": "", "text_norm": "", "lang": utt.lang,
          "speaker": utt.speaker, "utt_id": seg_id, "duration": np.float32(p.seconds)}
    report.segmented(utt.corpus, utt.lang, utt.split, len(pcm) / SAMPLE_RATE, kept,
                     segment_lib.left_out_seconds(pieces, len(pcm)))


def _example(utt: corpora.Utterance, pcm: np.ndarray,
             normalize: Callable[[str, str], str]) -> tuple[str | None, dict | None]:
  """(skip reason, None) or (None, the example) for a decoded clip."""
  if len(pcm) < MIN_SECONDS * SAMPLE_RATE:
    return "too_short", None
  duration = len(pcm) / SAMPLE_RATE
  text_norm = normalize(utt.text, utt.lang)
  if len(text_norm) > MAX_CHARS_PER_SECOND * duration + CHARS_SLACK:
    return "text_too_long_for_audio", None
  return None, {
      "audio": pcm, "text": utt.text, "text_norm": text_norm, "lang": utt.lang,
      "speaker": utt.speaker, "utt_id": utt.utt_id, "duration": np.float32(duration)}


class _Recorder:
  """Stands in for the DataReport where examples are made away from it (Beam workers): its
  calls are kept in order, written as JSON, and replayed into the report afterwards."""

  def __init__(self):
    self.calls: list[list] = []

  def skip(self, *args):
    self.calls.append(["skip", *args])

  def keep(self, *args):
    self.calls.append(["keep", *args])

  def segmented(self, *args):
    self.calls.append(["segmented", *args])

  @staticmethod
  def replay(calls: Sequence[Sequence], report: corpora.DataReport) -> None:
    for name, *args in calls:
      getattr(report, name)(*args)


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
               segment: segment_lib.SegmentConfig | None = None,
               beam_work: "_BeamWork | None" = None, **kwargs):
    self._utterances = utterances or {}
    # Unlabeled recordings: cut into segments (None: one example per clip, transcribed).
    self._segment = segment
    self._report = report if report is not None else corpora.DataReport()
    self._normalize = normalize
    self._num_workers = num_workers
    # Set: every split is a Beam PTransform over work chunks (see _BeamWork), else a generator.
    self._beam_work = beam_work
    # split -> [key, utt_id, num_samples, text_norm] of every example written (_write_index).
    self.index_rows: dict[str, list[list]] = {}
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
    """A generator (or Beam PTransform) per split that has at least one usable example.

    TFDS fails the whole build on a split that yields nothing, and a split whose clips the
    loader kept can still lose every one in decoding. So each split's first usable example
    is found here (usually its first clip; every clip only when all are bad) and a split
    without one is left out, its clips counted in the report as usual. With Beam, the clips
    before the first usable one are counted here and the rest, from that one on (decoded
    again: one clip per split), go to the pipeline.
    """
    del dl_manager
    out = {}
    for split, utts in self._utterances.items():
      for i, utt in enumerate(utts):
        report = _Recorder() if self._beam_work else self._report
        head = _examples([self._decode_one(utt)], self._normalize, self._segment, report)
        first = next(head, None)  # a recording's further segments stay in `head`
        if first is not None:
          if self._beam_work:
            out[split] = self._beam_work.transform(split, utts[i:])
          else:
            out[split] = self._indexed(split, self._chain(
                first, head, self._generate_examples(utts[i + 1:])))
          break
        if self._beam_work:
          _Recorder.replay(report.calls, self._report)
      else:
        if utts:
          self._report.warn(utts[0].corpus, utts[0].lang, "split_left_out",
                            f"split {split!r}: all {len(utts)} clips were refused")
    if not out:
      raise NoUsableExamples("every clip was refused")
    return out

  def _indexed(self, split: str, examples: Iterator[tuple[str, dict]]):
    """`examples`, each one's index row kept (key, utt_id, samples, text_norm) on the way."""
    rows = self.index_rows[split] = []
    for key, example in examples:
      rows.append([key, example["utt_id"], len(example["audio"]), example["text_norm"]])
      yield key, example

  def beam_results(self) -> None:
    """After a Beam build: the chunks' report calls replayed into the report in clip order
    (as the single-process path counts them) and their index rows gathered."""
    for split in self._beam_work.chunks:
      rows = self.index_rows[split] = []
      for done in self._beam_work.done(split):
        _Recorder.replay(done["report"], self._report)
        rows += done["examples"]

  @staticmethod
  def _chain(first, *rest):
    yield first
    for part in rest:
      yield from part

  def _decode_one(self, utt: corpora.Utterance):
    return _decode_one(utt, self._segment)

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
        yield from _examples(_ordered_map(pool, self._decode_one, utts, window),
                             self._normalize, self._segment, self._report)
    else:
      yield from _examples(map(self._decode_one, utts), self._normalize, self._segment,
                           self._report)


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


# Clips per Beam work chunk: the unit of parallel work and of resumption (see _BeamWork).
BEAM_CHUNK_CLIPS = 256
# Unlabeled recordings are minutes to hours each: fewer per chunk.
BEAM_CHUNK_RECORDINGS = 4


class _BeamWork:
  """The Beam path's split PTransforms and their resumable work chunks.

  A split's clips (from its first usable one) are cut into chunks of `chunk_size`. Each
  chunk is one Beam element: a worker decodes its clips through the same _examples as the
  single-process path, streams the examples to `<work_dir>/<chunk>.examples.pkl` while it
  emits them, and then writes `<chunk>.done.json`: the chunk's report calls (a _Recorder's)
  and, per example, its key, utt_id, number of samples and normalised text. A chunk with its
  done file is not decoded again: a re-run after an interruption reads its examples back
  (the pipeline's grouping and TFDS's shard writing are redone; they are I/O, decoding is
  the cost). Chunk names carry a hash of their clips and of the options that shape their
  examples, so a chunk of other inputs is never reused. The folder holds a copy of the
  audio while the dataset is built and is removed once the dataset is prepared.

  Workers read and write `work_dir`, the corpus root and the TFDS data dir by path: on a
  cluster they must be one shared file system mounted at the same path everywhere
  (docs/beam_conversion.md).
  """

  def __init__(self, work_dir: str, normalize: Callable[[str, str], str],
               segment: segment_lib.SegmentConfig | None, chunk_size: int):
    if chunk_size < 1:
      raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    self.work_dir = work_dir
    self.normalize = normalize
    self.segment = segment
    self.chunk_size = chunk_size
    self.chunks: dict[str, list[str]] = {}  # split -> chunk names, in clip order

  def _name(self, split: str, k: int, chunk: Sequence[corpora.Utterance]) -> str:
    h = hashlib.sha1(json.dumps([dataclasses.asdict(u) for u in chunk]).encode())
    h.update(repr((self.segment, MIN_SECONDS, SILENCE_PEAK, STATED_TOLERANCE_SECONDS,
                   STATED_TOLERANCE_FRACTION, MAX_CHARS_PER_SECOND, CHARS_SLACK,
                   getattr(self.normalize, "__module__", ""),
                   getattr(self.normalize, "__qualname__", repr(self.normalize)))).encode())
    return f"{split}-{k:05d}-{h.hexdigest()[:12]}"

  def transform(self, split: str, utts: Sequence[corpora.Utterance]):
    """The split's PTransform: () -> (key, example), one chunk per element."""
    import apache_beam as beam  # pylint: disable=import-outside-toplevel
    os.makedirs(self.work_dir, exist_ok=True)
    names = []
    for k, a in enumerate(range(0, len(utts), self.chunk_size)):
      chunk = utts[a:a + self.chunk_size]
      name = self._name(split, k, chunk)
      path = os.path.join(self.work_dir, name + ".utts.json")
      if not os.path.isfile(path):
        _write_json(path, [dataclasses.asdict(u) for u in chunk])
      names.append(name)
    self.chunks[split] = names
    work_dir, normalize, segment = self.work_dir, self.normalize, self.segment

    @beam.ptransform_fn
    def _chunks(pipeline):
      return (pipeline
              | "Chunks" >> beam.Create(names)
              | "Spread" >> beam.Reshuffle()  # one chunk per worker at a time, not one bundle
              | "Convert" >> beam.FlatMap(_convert_chunk, work_dir, normalize, segment))
    return _chunks()  # pylint: disable=no-value-for-parameter

  def done(self, split: str) -> Iterator[dict]:
    """The done files of a split's chunks, in clip order (after the pipeline ran)."""
    for name in self.chunks.get(split, ()):
      with open(os.path.join(self.work_dir, name + ".done.json"), encoding="utf-8") as f:
        yield json.load(f)


def _convert_chunk(name: str, work_dir: str, normalize: Callable[[str, str], str],
                   segment: segment_lib.SegmentConfig | None) -> Iterator[tuple[str, dict]]:
  """A Beam worker's unit: one chunk's (key, example) pairs, decoded or read back."""
  base = os.path.join(work_dir, name)
  if os.path.isfile(base + ".done.json"):
    with open(base + ".examples.pkl", "rb") as f:
      while True:
        try:
          yield pickle.load(f)
        except EOFError:
          return
  with open(base + ".utts.json", encoding="utf-8") as f:
    utts = [corpora.Utterance(**{**d, "attributes": tuple(map(tuple, d["attributes"]))})
            for d in json.load(f)]
  recorder, meta = _Recorder(), []
  tmp = f"{base}.examples.pkl.tmp{os.getpid()}.{uuid.uuid4().hex[:8]}"
  with open(tmp, "wb") as f:
    for key, example in _examples((_decode_one(u, segment) for u in utts), normalize, segment,
                                  recorder):
      pickle.dump((key, example), f, protocol=pickle.HIGHEST_PROTOCOL)
      meta.append([key, example["utt_id"], len(example["audio"]), example["text_norm"]])
      yield key, example
  os.replace(tmp, base + ".examples.pkl")
  _write_json(base + ".done.json", {"report": recorder.calls, "examples": meta})  # last


def _write_json(path: str, obj) -> None:
  tmp = f"{path}.tmp{os.getpid()}.{uuid.uuid4().hex[:8]}"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, ensure_ascii=False)
  os.replace(tmp, path)


def beam_work_dir(data_dir: str, corpus: str, lang: str) -> str:
  """Where a Beam conversion of (corpus, lang) keeps its work chunks until it finishes."""
  return os.path.join(data_dir, NAME + "_beam_work", f"{corpus}_{lang}", VERSION)


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
            segment: segment_lib.SegmentConfig | dict | None = None,
            beam_runner: Any = None, beam_options: str | Sequence[str] | Any = None,
            chunk_size: int | None = None) -> str:
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
    beam_runner: convert on Apache Beam (docs/beam_conversion.md): a runner name
      ("DirectRunner", "FlinkRunner", "SparkRunner", "DataflowRunner") or object. None (and
      no beam_options): the single-process path. Same records, index and report either way.
    beam_options: Beam pipeline options, as command-line flags (one string or a list, e.g.
      "--direct_num_workers=2 --direct_running_mode=multi_processing") or PipelineOptions.
      Given alone, it selects Beam too (the runner from its --runner).
    chunk_size: Beam: clips per work chunk, the unit of parallel work and of resumption
      (default BEAM_CHUNK_CLIPS, BEAM_CHUNK_RECORDINGS for unlabeled sources).

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
  use_beam = beam_runner is not None or beam_options is not None
  work = None
  if use_beam:
    work = _BeamWork(beam_work_dir(data_dir, corpus, lang), normalize, segment,
                     chunk_size if chunk_size is not None else
                     (BEAM_CHUNK_RECORDINGS if unlabeled else BEAM_CHUNK_CLIPS))
  builder = MlasrAsr(utterances=utterances, report=report, normalize=normalize,
                     num_workers=num_workers, segment=segment, beam_work=work,
                     config=tfds.core.BuilderConfig(
                         name=f"{corpus}_{lang}", description=f"{corpus} {lang}"),
                     data_dir=data_dir, file_format="array_record")
  index_rows = None
  if not os.path.isfile(info_path):
    # TFDS draws a bar per split and per shuffle, and prints "Downloading and preparing
    # dataset ..." / "... downloaded and prepared" to stdout (termcolor) for each one; the
    # caller shows one bar for the stage.
    tfds.display_progress_bar(False)
    try:
      with contextlib.redirect_stdout(io.StringIO()):
        builder.download_and_prepare(download_config=_download_config(beam_runner,
                                                                      beam_options))
    except NoUsableExamples:
      raise no_usable() from None
    finally:
      tfds.display_progress_bar(True)
    if work is not None:
      builder.beam_results()
    index_rows = builder.index_rows
    with open(os.path.join(out_dir, OPTIONS_FILE), "w", encoding="utf-8") as f:
      json.dump(options, f)  # before the report: a dataset with its report has its options
    report.to_json(report_path)
  else:
    report = corpora.DataReport.from_json(report_path)  # the build's, not the loader's alone
  _write_index(out_dir, index_rows)  # last: its presence means "prepared"
  if work is not None:
    shutil.rmtree(work.work_dir, ignore_errors=True)
    for parent in (os.path.dirname(work.work_dir), os.path.dirname(os.path.dirname(
        work.work_dir))):
      with contextlib.suppress(OSError):
        os.rmdir(parent)  # only when empty: other datasets' chunks may be there
  # One line per dataset (the stage has its own bar); the full report is in the dataset's
  # folder, and its other lines (skips, absent clips, warnings) are shown here.
  kept = [e for (c, l, _), e in report.kept.items() if (c, l) == (corpus, lang)]
  losses = [line for line in report.summary().splitlines() if not line.startswith("kept")]
  log.info("prepared %s/%s: %d records, %.2f h over its splits and subsets (%s)%s", corpus,
           lang, sum(e["count"] for e in kept), sum(e["seconds"] for e in kept) / 3600,
           out_dir, "".join("\n" + line for line in losses))
  return out_dir


def _download_config(beam_runner, beam_options) -> tfds.download.DownloadConfig | None:
  if beam_runner is None and beam_options is None:
    return None  # TFDS's default: no pipeline
  from apache_beam.options import pipeline_options  # pylint: disable=import-outside-toplevel
  # Beam logs each worker's gRPC channels and every stage at INFO: not for the terminal.
  beam_log = logging.getLogger("apache_beam")
  beam_log.setLevel(max(beam_log.getEffectiveLevel(), logging.WARNING))
  if beam_options is None or isinstance(beam_options, (str, list, tuple)):
    flags = shlex.split(beam_options) if isinstance(beam_options, str) else beam_options
    beam_options = pipeline_options.PipelineOptions(list(flags or []))
  return tfds.download.DownloadConfig(beam_runner=beam_runner, beam_options=beam_options)


def _write_index(out_dir: str, rows: dict[str, list[list]] | None = None) -> None:
  """Per split, in data-source order: utt_id, num_samples, text_norm.

  From the rows the build kept (`rows`: [key, utt_id, num_samples, text_norm] per example),
  in the order TFDS writes records: by its hash of the key, salted with the split name (its
  Shuffler and BeamWriter both sort by it). The order is checked against the written
  records at three places per split; without rows, or where they disagree (another TFDS),
  every record is read instead (audio included: a second full read of the dataset).
  """
  builder = tfds.builder_from_directory(out_dir)
  index = {}
  for split in builder.info.splits:
    source = builder.as_data_source(split)
    cols = _index_from_rows(split, (rows or {}).get(split), source)
    if cols is None:
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


def _index_from_rows(split: str, rows: list[list] | None, source) -> dict | None:
  if not rows or len(rows) != len(source):
    return None
  from tensorflow_datasets.core import hashing  # pylint: disable=import-outside-toplevel
  hasher = hashing.Hasher(split)
  rows = sorted(rows, key=lambda r: hasher.hash_key(r[0]))
  for i in sorted({0, len(rows) // 2, len(rows) - 1}):
    ex = source[i]
    if (_str(ex["utt_id"]), int(len(ex["audio"]))) != (rows[i][1], rows[i][2]):
      log.warning("%s: records are not in the order of TFDS's key hash here; the index is "
                  "read from the records", split)
      return None
  return {"utt_id": [r[1] for r in rows], "num_samples": [int(r[2]) for r in rows],
          "text_norm": [r[3] for r in rows]}


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
  p.add_argument("--beam_runner", default=None,
                 help="convert on Apache Beam with this runner (DirectRunner, FlinkRunner, "
                 "SparkRunner, DataflowRunner); default: one process, --num_workers threads. "
                 "See docs/beam_conversion.md")
  p.add_argument("--beam_options", default=None,
                 help="Beam pipeline options as one string of flags, given with '=' as "
                 "the value starts with '--': --beam_options='--direct_num_workers=2 "
                 "--direct_running_mode=multi_processing'")
  p.add_argument("--chunk_size", type=int, default=None,
                 help=f"Beam: clips per work chunk, the unit of work and of resumption "
                 f"(default {BEAM_CHUNK_CLIPS}; {BEAM_CHUNK_RECORDINGS} recordings for "
                 "unlabeled sources)")
  args = p.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  segment = segment_lib.SegmentConfig(args.segment, args.window_seconds, args.min_seconds)
  for spec in args.datasets:
    corpus, lang = spec.split(":")
    out = prepare(args.root, args.data_dir, corpus, lang, num_workers=args.num_workers,
                  train_from_validated=args.train_from_validated, segment=segment,
                  beam_runner=args.beam_runner, beam_options=args.beam_options,
                  chunk_size=args.chunk_size)
    print(f"{corpus}/{lang}: {out} (report: {os.path.join(out, REPORT_FILE)})")


if __name__ == "__main__":
  main()
