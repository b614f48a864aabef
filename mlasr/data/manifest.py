"""A scoring test set from a manifest: TSV or JSONL rows with path, text and language.

  TSV    header line with `path`, `text` (or `sentence`), `lang` (or `language`), optionally
         `speaker` (or `client_id`/`speaker_id`) and any other columns; tab-separated.
  JSONL  one object per line with the same keys (`audio_filepath` also names the path, as in
         NeMo manifests).

Relative paths are relative to the manifest's folder. Every column besides path, text, lang,
speaker and utt_id (gender, age, accent, noise, snr_db, anything) is kept as an attribute of
the utterance, which the error analysis breaks the CER down by.

A manifest is scored where it lies: nothing is written next to it (a colleague's folder may be
read-only) and nothing into the run. Its clips are decoded once (mlasr.data.audio.load_audio:
any codec, rate and channel count) and held as 16-bit PCM, 115 MB per hour of audio; rows
whose audio cannot be read or whose normalized text is empty are skipped and counted in
`.report`, as the corpus loaders do. `ManifestData.batches()` yields the batches
mlasr.data.pipeline.EvalData yields (same keys, same padding, the run's bucket shapes).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator, Sequence

import numpy as np

from mlasr.data import audio as audio_lib
from mlasr.data import corpora
from mlasr.data import text as text_lib

CORPUS = "manifest"
SAMPLE_RATE = audio_lib.SAMPLE_RATE
_KEYS = {"path": ("path", "audio_filepath"), "text": ("text", "sentence"),
         "lang": ("lang", "language", "locale"),
         "speaker": ("speaker", "client_id", "speaker_id"), "utt_id": ("utt_id", "id")}


@dataclasses.dataclass
class Row:
  path: str
  text: str
  lang: str
  speaker: str = ""
  utt_id: str = ""
  attributes: dict[str, str] = dataclasses.field(default_factory=dict)


def _pick(row: dict, key: str) -> tuple[str | None, str | None]:
  """(column name, value) of the first of `key`'s spellings that `row` has."""
  for name in _KEYS[key]:
    if name in row:
      return name, "" if row[name] is None else str(row[name])
  return None, None


def read_manifest(path: str) -> list[Row]:
  """Rows of a TSV or JSONL manifest (see the module docstring).

  Raises:
    ValueError: a header (TSV) or row (JSONL) lacks path, text or language, naming the line.
  """
  base = os.path.dirname(os.path.abspath(path))
  raw = []
  with open(path, encoding="utf-8") as f:
    if path.endswith((".jsonl", ".json")):
      for n, line in enumerate(f, 1):
        if line.strip():
          raw.append((n, json.loads(line)))
    else:
      header = f.readline().rstrip("\r\n").split("\t")
      for n, line in enumerate(f, 2):
        if line.strip():
          raw.append((n, dict(zip(header, line.rstrip("\r\n").split("\t")))))
  rows, ids = [], set()
  for n, row in raw:
    used, values = set(), {}
    for key in _KEYS:
      name, value = _pick(row, key)
      if name is not None:
        used.add(name)
      values[key] = (value or "").strip()
    missing = [k for k in ("path", "text", "lang") if not values[k] and _pick(row, k)[0] is None]
    if missing:
      raise ValueError(f"{path}:{n}: no {'/'.join(missing)} column (have {sorted(row)}); a "
                       "scoring manifest needs path, text and lang (optional speaker)")
    p = os.path.expanduser(values["path"])
    p = p if os.path.isabs(p) else os.path.join(base, p)
    utt_id = values["utt_id"] or os.path.splitext(os.path.basename(p))[0]
    if utt_id in ids:  # two rows may name files of the same stem in different folders
      utt_id = f"{utt_id}_{n}"
    ids.add(utt_id)
    attrs = {k: str(v).strip() for k, v in row.items()
             if k not in used and v is not None and str(v).strip()}
    rows.append(Row(p, values["text"], values["lang"], values["speaker"], utt_id, attrs))
  return rows


class ManifestData:
  """Eval batches of a manifest, shaped as pipeline.EvalData's (see the module docstring).

  langs: the model's languages; lang_id indexes it (rows of another language are an error
    the caller reports first, see `languages`).
  buckets: (batch_size, num_samples) shapes (the run's); longer clips get a length rounded
    up to a multiple of the largest bucket, as pipeline.eval_data does.
  """

  def __init__(self, path: str, langs: Sequence[str], buckets: Sequence[tuple[int, int]],
               batch_size: int | None = None, shard_index: int = 0, shard_count: int = 1):
    self.path = path
    self.langs = list(langs)
    self.report = corpora.DataReport()
    self.rows = read_manifest(path)
    unknown = sorted({r.lang for r in self.rows} - set(self.langs))
    if unknown:
      raise ValueError(f"{path}: languages {unknown} are not languages of the model "
                       f"({self.langs}); its tokenizer and heads know no others")
    self.pcm, self.kept = [], []
    for r in self.rows:
      r.text = text_lib.normalize(r.text, r.lang)
      if not r.text:
        self.report.skip(CORPUS, r.lang, "test", "empty_text", r.path)
        continue
      try:
        wave = audio_lib.load_audio(r.path)
      except audio_lib.AudioError as e:
        self.report.skip(CORPUS, r.lang, "test", "audio_" + e.reason.split(" ")[0], r.path)
        continue
      self.pcm.append(np.round(np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16))
      self.kept.append(r)
      self.report.keep(CORPUS, r.lang, "test", len(wave) / SAMPLE_RATE)
    if not self.kept:
      raise ValueError(f"{path}: no usable rows:\n{self.report.summary()}")
    buckets = sorted([tuple(map(int, b)) for b in buckets], key=lambda x: x[1])
    if batch_size is not None:
      buckets = [(int(batch_size), n) for _, n in buckets]
    batch_samples = max(bs * n for bs, n in buckets)
    max_len = buckets[-1][1]
    shapes, bucket_of = list(buckets), []
    for pcm in self.pcm:
      if len(pcm) <= max_len:
        bucket_of.append(int(np.searchsorted([s for _, s in buckets], len(pcm))))
        continue
      length = int(math.ceil(len(pcm) / max_len) * max_len)
      shape = (batch_size or max(1, batch_samples // length), length)
      if shape not in shapes:
        shapes.append(shape)
      bucket_of.append(shapes.index(shape))
    self.shapes = shapes
    self.plan = []
    bucket_of = np.asarray(bucket_of)
    for b, (size, _) in enumerate(shapes):
      mine = np.flatnonzero(bucket_of == b)[shard_index::shard_count].tolist()
      self.plan += [(b, mine[k:k + size]) for k in range(0, len(mine), size)]

  def __len__(self) -> int:
    return len(self.plan)

  def attributes(self) -> dict[tuple[str, str, str], dict[str, str]]:
    """(corpus, lang, utt_id) -> the row's extra columns, for the error analysis."""
    return {(CORPUS, r.lang, r.utt_id): dict(r.attributes) for r in self.kept}

  def batches(self) -> Iterator[dict[str, np.ndarray]]:
    for b, rows in self.plan:
      size, n = self.shapes[b]
      batch = {"audio": np.zeros([size, n], np.float32),
               "audio_mask": np.zeros([size, n], np.int32),
               "lang_id": np.zeros([size], np.int32), "example_mask": np.zeros([size], np.int32)}
      pad = [""] * (size - len(rows))
      for j, e in enumerate(rows):
        pcm = self.pcm[e]
        batch["audio"][j, :len(pcm)] = pcm.astype(np.float32) / 32767.0  # tfds_builder's scale
        batch["audio_mask"][j, :len(pcm)] = 1
        batch["lang_id"][j] = self.langs.index(self.kept[e].lang)
        batch["example_mask"][j] = 1
      for key, field in (("utt_id", "utt_id"), ("text_norm", "text"), ("lang", "lang"),
                         ("speaker", "speaker")):
        batch[key] = np.array([getattr(self.kept[e], field) for e in rows] + pad, dtype=object)
      batch["corpus"] = np.array([CORPUS] * len(rows) + pad, dtype=object)
      yield batch
