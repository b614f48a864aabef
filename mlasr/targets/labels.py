"""Dumped frame labels (k-means cluster ids) in array_record, keyed by utterance.

Layout of a labels directory (written by data_prep/dump_labels.py):
  meta.json                                label_rate, num_classes, frame_spec, feature spec,
                                           kmeans dir, source datasets, dtype
  kmeans/kmeans.{npz,json}                 the k-means model that made the labels
  <corpus>_<lang>_<split>-<SSSSS>.array_record
                                           one record per utterance: little-endian uint16
                                           (int32 if num_classes > 65536) labels
  <corpus>_<lang>_<split>-<SSSSS>.done.json
                                           done marker of that shard (written after it): rows,
                                           utt_ids and label counts; a shard without one is redone
  <corpus>_<lang>_<split>.index.json       {"shards": [file, ...], "utts": {utt_id: [shard,
                                           record, num_labels]}}, written when the split is done
                                           (by whichever dump process finds every marker)
  diagnostics.{json,md}                    cluster usage and crude character purity

`LabelStore(labels_dir).get(corpus, lang, split, utt_id)` returns the int32 labels of one clip;
splits that were not dumped fall back to "train" (the ML-SUPERB subsets train_10min/train_1h
are subsets of train). The store is picklable (open readers are dropped and reopened lazily),
so grain worker processes can hold one.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Sequence

import numpy as np
from array_record.python import array_record_module as arm

from mlasr.features import FrameSpec

META_FILE = "meta.json"


def split_name(corpus: str, lang: str, split: str) -> str:
  return f"{corpus}_{lang}_{split}"


def shard_file(corpus: str, lang: str, split: str, shard: int) -> str:
  return f"{split_name(corpus, lang, split)}-{shard:05d}.array_record"


def done_file(corpus: str, lang: str, split: str, shard: int) -> str:
  return f"{split_name(corpus, lang, split)}-{shard:05d}.done.json"


def index_file(corpus: str, lang: str, split: str) -> str:
  return f"{split_name(corpus, lang, split)}.index.json"


def label_dtype(num_classes: int) -> np.dtype:
  return np.dtype("<u2") if num_classes <= 65536 else np.dtype("<i4")


def write_shard(path: str, labels: Sequence[np.ndarray], num_classes: int) -> None:
  """Writes one array_record shard atomically (temp file + rename)."""
  dtype = label_dtype(num_classes)
  tmp = path + ".tmp"
  writer = arm.ArrayRecordWriter(tmp, "group_size:1")
  for lab in labels:
    lab = np.asarray(lab)
    if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
      raise ValueError(f"{path}: label outside [0, {num_classes})")
    writer.write(lab.astype(dtype).tobytes())
  writer.close()
  os.replace(tmp, path)


def write_json(path: str, obj) -> None:
  """Atomic JSON write (a temp file of its own per call: several processes may write the same
  identical file)."""
  tmp = f"{path}.{uuid.uuid4().hex}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, ensure_ascii=False, indent=1)
  os.replace(tmp, path)


class LabelStore:
  """Random access to dumped labels; see the module docstring."""

  def __init__(self, labels_dir: str):
    self.labels_dir = os.path.abspath(os.path.expanduser(labels_dir))
    path = os.path.join(self.labels_dir, META_FILE)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{path}: not a labels dir; run data_prep/dump_labels.py first")
    with open(path, encoding="utf-8") as f:
      self.meta = json.load(f)
    self.label_rate = float(self.meta["label_rate"])
    self.num_classes = int(self.meta["num_classes"])
    self.frame_spec = FrameSpec.from_json(self.meta["frame_spec"])
    self.dtype = label_dtype(self.num_classes)
    self._index: dict[str, dict] = {}
    self._readers: dict[str, arm.ArrayRecordReader] = {}

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_readers"] = {}
    return state

  @property
  def hop(self) -> int:
    """Samples per label (16000 / label_rate): crops must start at multiples of it."""
    return self.frame_spec.hop

  def num_labels(self, num_samples):
    """Labels of a clip of num_samples samples (as dumped: the feature extractor's frames)."""
    return self.frame_spec.num_frames(num_samples)

  def _split_index(self, corpus: str, lang: str, split: str) -> tuple[str, dict]:
    for s in (split, "train"):
      key = split_name(corpus, lang, s)
      if key not in self._index:
        path = os.path.join(self.labels_dir, index_file(corpus, lang, s))
        if not os.path.isfile(path):
          continue
        with open(path, encoding="utf-8") as f:
          self._index[key] = json.load(f)
      return key, self._index[key]
    raise KeyError(f"{self.labels_dir}: no labels for {corpus}/{lang}/{split} (nor train); "
                   f"dumped: {self.meta.get('datasets')}; run data_prep/dump_labels.py for it")

  def has(self, corpus: str, lang: str, split: str, utt_id: str) -> bool:
    try:
      return utt_id in self._split_index(corpus, lang, split)[1]["utts"]
    except KeyError:
      return False

  def length(self, corpus: str, lang: str, split: str, utt_id: str) -> int:
    return int(self._entry(corpus, lang, split, utt_id)[4])

  def _entry(self, corpus, lang, split, utt_id):
    key, index = self._split_index(corpus, lang, split)
    try:
      return key, index, *index["utts"][utt_id]
    except KeyError:
      raise KeyError(f"{self.labels_dir}: no labels for utterance {utt_id!r} of {key}") from None

  def get(self, corpus: str, lang: str, split: str, utt_id: str) -> np.ndarray:
    """int32 labels [num_labels] of one utterance."""
    _, index, shard, record, _ = self._entry(corpus, lang, split, utt_id)
    name = index["shards"][shard]
    reader = self._readers.get(name)
    if reader is None:
      reader = self._readers[name] = arm.ArrayRecordReader(os.path.join(self.labels_dir, name))
    raw = reader.read([record])[0]
    return np.frombuffer(raw, self.dtype).astype(np.int32)
