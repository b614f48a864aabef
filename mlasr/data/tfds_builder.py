"""TFDS array_record datasets, one per (corpus, lang), built without TensorFlow.

One builder class, `MlasrAsr`, with a BuilderConfig made on the fly per `<corpus>_<lang>`
(TFDS accepts config objects not listed in BUILDER_CONFIGS), so datasets land in
`DATA_DIR/mlasr_asr/<corpus>_<lang>/<version>/` and are read back with
`tfds.builder_from_directory` (no registration or class import needed by readers).

Next to each dataset we write `data_report.json` (every skipped clip/row, counted) and
`mlasr_index.json` (per split, in data-source order: utt_id, num_samples, text_norm) so the
input pipeline can bucket and filter without reading audio.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import multiprocessing
import os
import types
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from mlasr.data import audio as audio_lib
from mlasr.data import corpora

log = logging.getLogger(__name__)

SAMPLE_RATE = audio_lib.SAMPLE_RATE
MIN_SECONDS = 0.1
NAME = "mlasr_asr"
VERSION = "1.0.0"
INDEX_FILE = "mlasr_index.json"
REPORT_FILE = "data_report.json"


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
  """Top-level so a process pool can pickle it."""
  try:
    wav = audio_lib.load_audio(utt.audio_path, SAMPLE_RATE)
  except audio_lib.AudioError as e:
    return utt, None, "audio_" + e.reason.split(" ")[0]
  return utt, (wav * 32767.0).round().astype(np.int16), None


class MlasrAsr(tfds.core.GeneratorBasedBuilder):
  """Speech + transcript examples of one (corpus, lang); the config name is `<corpus>_<lang>`."""

  VERSION = tfds.core.Version(VERSION)
  # No checksums/metadata files live next to this module; without this, TFDS looks for them
  # through `importlib_resources`, which is not installed (and not needed).
  code_path = None

  def __init__(self, *, utterances: dict[str, list[corpora.Utterance]] | None = None,
               report: corpora.DataReport | None = None,
               normalize: Callable[[str, str], str] | None = None, num_workers: int = 1,
               **kwargs):
    self._utterances = utterances or {}
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
    del dl_manager
    return {split: self._generate_examples(utts)
            for split, utts in self._utterances.items() if utts}

  def _generate_examples(self, utts: Sequence[corpora.Utterance]) -> Iterator[tuple[str, dict]]:
    if self._num_workers > 1:
      # "spawn": forking a process that has started JAX's threads can deadlock.
      context = multiprocessing.get_context("spawn")
      with concurrent.futures.ProcessPoolExecutor(self._num_workers, mp_context=context) as pool:
        yield from self._examples(pool.map(_decode, utts, chunksize=8))
    else:
      yield from self._examples(map(_decode, utts))

  def _examples(self, decoded) -> Iterator[tuple[str, dict]]:
    for utt, pcm, error in decoded:
      if error is None and len(pcm) < MIN_SECONDS * SAMPLE_RATE:
        error = "too_short"
      if error is not None:
        self._report.skip(utt.corpus, utt.lang, utt.split, error, utt.audio_path)
        continue
      duration = len(pcm) / SAMPLE_RATE
      self._report.keep(utt.corpus, utt.lang, utt.split, duration)
      yield utt.utt_id, {
          "audio": pcm, "text": utt.text, "text_norm": self._normalize(utt.text, utt.lang),
          "lang": utt.lang, "speaker": utt.speaker, "utt_id": utt.utt_id,
          "duration": np.float32(duration)}


def dataset_dir(data_dir: str, corpus: str, lang: str) -> str:
  """Where prepare() writes the (corpus, lang) dataset."""
  return os.path.join(data_dir, NAME, f"{corpus}_{lang}", VERSION)


def _load_utterances(root: str, corpus: str, lang: str,
                     report: corpora.DataReport) -> dict[str, list[corpora.Utterance]]:
  utts = corpora.read_corpus(root, corpus, langs=[lang], report=report)
  by_split = {s: [u for u in utts if u.split == s] for s in corpora.SPLITS}
  for name in corpora.SUBSETS:
    try:
      ids = corpora.read_subset(root, corpus, lang, name)
    except FileNotFoundError:
      continue  # Subsets are optional; real downloads have none.
    train = {u.utt_id: u for u in by_split["train"]}
    for utt_id in sorted(ids - set(train)):
      report.skip(corpus, lang, name, "subset_id_not_in_train", utt_id)
    by_split[name] = [corpora.Utterance(corpus, lang, name, u.utt_id, u.audio_path, u.text,
                                        u.speaker)
                      for u in by_split["train"] if u.utt_id in ids]
  return by_split


def prepare(root: str, data_dir: str, corpus: str, lang: str, *, num_workers: int = 1,
            normalize: Callable[[str, str], str] | None = None) -> str:
  """Builds the (corpus, lang) array_record dataset from corpus root `root`; idempotent.

  Splits: train, dev, test, plus train_10min / train_1h where ROOT/subsets/<corpus>/<lang>/
  has manifests. Empty splits are left out (and counted in the report as missing/ skipped).

  Args:
    root: corpus root as written by data_prep (or real downloads in the same layout).
    data_dir: TFDS data dir.
    corpus: "commonvoice" or "voxpopuli".
    lang: language code (the directory name in the corpus).
    num_workers: processes decoding audio (mp3 decoding + resampling dominates).
    normalize: text normaliser; defaults to mlasr.data.text.normalize.

  Returns:
    The dataset directory (also holding data_report.json and mlasr_index.json).
  """
  out_dir = dataset_dir(data_dir, corpus, lang)
  if os.path.isfile(os.path.join(out_dir, INDEX_FILE)):
    log.info("%s/%s already prepared in %s", corpus, lang, out_dir)
    return out_dir
  if normalize is None:
    from mlasr.data import text as text_lib  # pylint: disable=g-import-not-at-top
    normalize = text_lib.normalize
  report = corpora.DataReport()
  utterances = _load_utterances(root, corpus, lang, report)
  if not any(utterances.values()):
    report.to_json(os.path.join(out_dir, REPORT_FILE))
    raise ValueError(f"{root}: no usable {corpus}/{lang} utterances; see "
                     f"{os.path.join(out_dir, REPORT_FILE)}")
  builder = MlasrAsr(utterances=utterances, report=report, normalize=normalize,
                     num_workers=num_workers, config=tfds.core.BuilderConfig(
                         name=f"{corpus}_{lang}", description=f"{corpus} {lang}"),
                     data_dir=data_dir, file_format="array_record")
  if not os.path.isfile(os.path.join(out_dir, "dataset_info.json")):
    # TFDS draws a bar per split and per shuffle; the caller shows one bar for the stage.
    tfds.display_progress_bar(False)
    try:
      builder.download_and_prepare()
    finally:
      tfds.display_progress_bar(True)
    report.to_json(os.path.join(out_dir, REPORT_FILE))
  _write_index(out_dir)
  log.info("prepared %s/%s in %s\n%s", corpus, lang, out_dir, report.summary())
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
  p.add_argument("datasets", nargs="+", help="corpus:lang, e.g. commonvoice:hi")
  p.add_argument("--num_workers", type=int, default=os.cpu_count() or 1)
  args = p.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  for spec in args.datasets:
    corpus, lang = spec.split(":")
    out = prepare(args.root, args.data_dir, corpus, lang, num_workers=args.num_workers)
    print(f"{corpus}/{lang}: {out} (report: {os.path.join(out, REPORT_FILE)})")


if __name__ == "__main__":
  main()
