"""Conversion on Apache Beam (DirectRunner) equals the single-process conversion; it resumes.

One Common Voice language of the small corpus fixture (bad clips, a subset, four splits)
is converted both ways: the same records in the same order per split, the same index and
the same data report. A Beam run killed part-way is run again and decodes only the chunks
that had not finished.
"""
from __future__ import annotations

import collections
import glob
import itertools
import json
import os

import apache_beam  # noqa: F401  (the test extra installs it; a missing one must fail here)
import numpy as np
import pytest

import corpus_fixture
from mlasr.data import tfds_builder

LANG = "hi"
CHUNK = 4  # clips per work chunk: several chunks per split


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("beam_corpus"))
  corpus_fixture.make_corpus(root)
  single = str(tmp_path_factory.mktemp("single"))
  tfds_builder.prepare(root, single, "commonvoice", LANG)
  return root, single


def _records(data_dir):
  out = {}
  for split in tfds_builder.load_index(data_dir, "commonvoice", LANG):
    source = tfds_builder.data_source(data_dir, "commonvoice", LANG, split)
    out[split] = [source[i] for i in range(len(source))]
  return out


def _files(data_dir):
  d = tfds_builder.dataset_dir(data_dir, "commonvoice", LANG)
  out = {}
  for name in (tfds_builder.INDEX_FILE, tfds_builder.REPORT_FILE, tfds_builder.OPTIONS_FILE):
    with open(os.path.join(d, name), encoding="utf-8") as f:
      out[name] = json.load(f)
  return out


def assert_same_dataset(a, b):
  ra, rb = _records(a), _records(b)
  assert list(ra) == list(rb)
  for split in ra:
    assert len(ra[split]) == len(rb[split]), split
    for x, y in zip(ra[split], rb[split]):
      assert sorted(x) == sorted(y)
      for key in x:
        np.testing.assert_array_equal(x[key], y[key], err_msg=f"{split}: {key}")
  assert _files(a) == _files(b)


def test_beam_direct_runner_equals_single_process(corpus, tmp_path):
  root, single = corpus
  out = tfds_builder.prepare(root, str(tmp_path), "commonvoice", LANG,
                             beam_runner="DirectRunner", chunk_size=CHUNK)
  assert_same_dataset(single, str(tmp_path))
  # The bad clips of the fixture are counted, the same way (part of the equal report).
  report = _files(str(tmp_path))[tfds_builder.REPORT_FILE]
  reasons = {e["reason"] for e in report["skipped"]}
  assert {"audio_undecodable", "too_short", "subset_id_not_in_train"} <= reasons, reasons
  # The work chunks (a copy of the audio) are gone once the dataset is prepared.
  assert not os.path.exists(tfds_builder.beam_work_dir(str(tmp_path), "commonvoice", LANG))
  assert os.path.isfile(os.path.join(out, tfds_builder.INDEX_FILE))


def test_interrupted_beam_run_redoes_only_unfinished_chunks(corpus, tmp_path, monkeypatch):
  root, single = corpus
  data_dir = str(tmp_path)
  work = tfds_builder.beam_work_dir(data_dir, "commonvoice", LANG)
  real_decode = tfds_builder._decode  # pylint: disable=protected-access
  calls = itertools.count()
  decoded = []

  def dies_part_way(utt):
    if next(calls) == 20:  # 4 head clips, then 16 in the pipeline: some chunks finished
      raise RuntimeError("simulated kill of the conversion")
    decoded.append((utt.split, utt.audio_path))  # a clip can be in train and train_10min
    return real_decode(utt)

  monkeypatch.setattr(tfds_builder, "_decode", dies_part_way)
  with pytest.raises(Exception, match="simulated kill"):
    tfds_builder.prepare(root, data_dir, "commonvoice", LANG, beam_runner="DirectRunner",
                         chunk_size=CHUNK)
  assert not os.path.exists(os.path.join(tfds_builder.dataset_dir(data_dir, "commonvoice",
                                                                  LANG), "dataset_info.json"))
  done = sorted(glob.glob(os.path.join(work, "*.done.json")))
  chunks = glob.glob(os.path.join(work, "*.utts.json"))
  assert 0 < len(done) < len(chunks)
  finished = set()
  for path in done:
    with open(path.replace(".done.json", ".utts.json"), encoding="utf-8") as f:
      finished |= {(u["split"], u["audio_path"]) for u in json.load(f)}

  decoded.clear()
  calls = itertools.count(-10**9)  # never dies again
  tfds_builder.prepare(root, data_dir, "commonvoice", LANG, beam_runner="DirectRunner",
                       chunk_size=CHUNK)
  # Finished chunks were read back, not decoded: only each split's first clip (looked at
  # before the pipeline starts, to leave out splits without a usable clip) is decoded again.
  heads = {(u[0].split, u[0].audio_path) for u in _utterances(root).values() if u}
  again = set(decoded) & finished
  assert again <= heads, sorted(again - heads)
  # And nothing twice, but for a split's first clip when its chunk was unfinished (decoded
  # once before the pipeline, once in it).
  counts = collections.Counter(decoded)
  assert all(n <= (2 if clip in heads and clip not in finished else 1)
             for clip, n in counts.items()), counts.most_common(3)
  assert_same_dataset(single, data_dir)


def _utterances(root):
  from mlasr.data import corpora  # pylint: disable=import-outside-toplevel
  return tfds_builder._load_utterances(  # pylint: disable=protected-access
      root, "commonvoice", LANG, corpora.DataReport())


def test_cli_takes_beam_runner_and_options(corpus, tmp_path, capsys):
  root, single = corpus
  tfds_builder.main([root, str(tmp_path), f"commonvoice:{LANG}", "--beam_runner",
                     "DirectRunner", "--beam_options=--direct_num_workers=1",
                     "--chunk_size", "16"])
  assert "commonvoice/hi:" in capsys.readouterr().out
  assert_same_dataset(single, str(tmp_path))


def test_bad_chunk_size_is_refused(corpus, tmp_path):
  root, _ = corpus
  with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
    tfds_builder.prepare(root, str(tmp_path), "commonvoice", LANG, beam_runner="DirectRunner",
                         chunk_size=0)
