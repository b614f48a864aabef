"""Loader quirks (Common Voice, VoxPopuli), DataReport counts, and audio decoding."""

import json
import os

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from mlasr.data import audio
from mlasr.data import corpora

CV_NEW = ("client_id path sentence_id sentence sentence_domain up_votes down_votes age gender "
          "accents variant locale segment").split()
CV_OLD = "client_id path sentence up_votes down_votes age gender accents locale".split()
VP = ("id raw_text normalized_text speaker_id split gender is_gold_transcript "
      "accent").split()


def _tone(seconds, sr, freq=440.0):
  t = np.arange(int(seconds * sr)) / sr
  return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _cv_row(header, path, sentence, client="spk1", **extra):
  values = {"client_id": client, "path": path, "sentence": sentence, "locale": "x"}
  values.update(extra)
  return "\t".join(values.get(c, "") for c in header)


def _write(path, header, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write("\t".join(header) + "\n" + "".join(r + "\n" for r in rows))


@pytest.fixture(scope="module")
def quirks(tmp_path_factory):
  """A Common Voice + VoxPopuli tree with one of each quirk (counts asserted below)."""
  root = tmp_path_factory.mktemp("quirks")
  hi = root / "commonvoice" / "hi"
  (hi / "clips").mkdir(parents=True)
  for i in range(3):
    sf.write(hi / "clips" / f"common_voice_hi_{i}.mp3", _tone(0.5, 48000), 48000)
  (hi / "clips" / "zero.mp3").write_bytes(b"")
  (hi / "clips" / "corrupt.mp3").write_bytes(b"not an mp3" * 50)
  sf.write(hi / "clips" / "short.mp3", _tone(0.05, 48000), 48000)
  header = CV_NEW + ["brand_new_column"]  # A future release with an unknown column.
  _write(str(hi / "train.tsv"), header, [
      _cv_row(header, "common_voice_hi_0.mp3", 'He said "hi" and \'bye\''),  # Bare quotes.
      _cv_row(header, "common_voice_hi_1.mp3", '"quoted start'),
      _cv_row(header, "missing.mp3", "a sentence"),  # missing_audio
      _cv_row(header, "zero.mp3", "a sentence"),  # empty_audio
      _cv_row(header, "corrupt.mp3", "kept by the loader, counted by the builder"),
      _cv_row(header, "short.mp3", "too short: counted by the builder"),
      _cv_row(header, "common_voice_hi_2.mp3", "   "),  # empty_text
      "only\ttwo",  # bad_row
      _cv_row(header, "common_voice_hi_0.mp3", "duplicate"),  # duplicate_id
  ])
  _write(str(hi / "test.tsv"), header, [_cv_row(header, "common_voice_hi_2.mp3", "test one")])
  # No dev.tsv for hi: missing_tsv.
  ca = root / "commonvoice" / "ca"  # An old release: no sentence_id/domain/variant/segment.
  (ca / "clips").mkdir(parents=True)
  sf.write(ca / "clips" / "a.mp3", _tone(0.4, 32000), 32000)
  for split in ("train", "dev", "test"):
    _write(str(ca / f"{split}.tsv"), CV_OLD, [_cv_row(CV_OLD, "a.mp3", f"frase {split}")])
  (root / "commonvoice" / "xx" / "clips").mkdir(parents=True)  # A dir without TSVs.
  zz = root / "commonvoice" / "zzq"  # Valid data, language code unknown to mlasr.
  (zz / "clips").mkdir(parents=True)
  sf.write(zz / "clips" / "z.mp3", _tone(0.4, 48000), 48000)
  _write(str(zz / "train.tsv"), CV_NEW, [_cv_row(CV_NEW, "z.mp3", "zz text")])

  it = root / "voxpopuli" / "transcribed_data" / "it"
  ids = ["20180101-0900-PLENARY-1_it_1", "20190202-0900-PLENARY-2_it_2",
         "20190202-0900-PLENARY-2_it_3"]
  for utt in ids[:2]:
    (it / utt[:4]).mkdir(parents=True, exist_ok=True)
    sf.write(it / utt[:4] / f"{utt}.ogg", _tone(0.6, 16000), 16000)
  _write(str(it / "asr_train.tsv"), VP, [
      "\t".join([ids[0], "Ciao, \"mondo\"!", "ciao mondo", "s1", "train", "f", "True", "None"]),
      "\t".join([ids[1], "", "solo normalizzato", "s2", "train", "m", "True", "None"]),
      "\t".join([ids[2], "manca", "manca", "s2", "train", "m", "True", "None"]),  # missing
      "\t".join([ids[0] + "x", "", "", "s1", "train", "f", "True", "None"]),  # empty_text
  ])
  _write(str(it / "asr_dev.tsv"), VP, [])
  return str(root)


def test_commonvoice_quirks_are_counted(quirks, tmp_path):
  report = corpora.DataReport()
  utts = corpora.read_commonvoice(quirks, report=report)
  hi_train = [u for u in utts if u.lang == "hi" and u.split == "train"]
  assert [u.text for u in hi_train] == [
      'He said "hi" and \'bye\'', '"quoted start',
      "kept by the loader, counted by the builder", "too short: counted by the builder"]
  assert hi_train[0].utt_id == "common_voice_hi_0"
  assert hi_train[0].speaker == "spk1"
  assert os.path.isabs(hi_train[0].audio_path)
  assert report.skip_counts("commonvoice", "hi", "train") == {
      "missing_audio": 1, "empty_audio": 1, "empty_text": 1, "bad_row": 1, "duplicate_id": 1}
  assert report.skip_counts("commonvoice", "hi", "dev") == {"missing_tsv": 1}
  assert report.skip_counts("commonvoice", "xx") == {"no_split_tsvs": 1}
  assert report.skip_counts("commonvoice", "ca") == {}
  assert [(u.split, u.text) for u in utts if u.lang == "ca"] == [
      ("train", "frase train"), ("dev", "frase dev"), ("test", "frase test")]
  # Unknown language codes are kept, with a warning when the language table exists.
  assert [u.text for u in utts if u.lang == "zzq"] == ["zz text"]
  try:
    from mlasr.data import languages  # pylint: disable=g-import-not-at-top
    assert "zzq" not in languages.LANGUAGES
    assert {(w["lang"], w["reason"]) for w in report.warnings} >= {
        ("zzq", "unknown_language_code")}
  except ImportError:
    pass
  path = tmp_path / "report.json"
  report.to_json(str(path))
  d = json.loads(path.read_text())
  bad = [e for e in d["skipped"] if e["reason"] == "bad_row"][0]
  assert bad["count"] == 1 and bad["examples"][0].endswith("train.tsv:9")  # 1-based file line
  again = corpora.DataReport.from_json(str(path))
  assert again.skip_counts() == report.skip_counts()
  assert "missing_audio" in report.summary()


def test_commonvoice_langs_filter_and_missing_dir(quirks):
  report = corpora.DataReport()
  utts = corpora.read_commonvoice(quirks, langs=["ca", "nope"], splits=("dev",), report=report)
  assert [(u.lang, u.text) for u in utts] == [("ca", "frase dev")]
  assert report.skip_counts(lang="nope") == {"missing_language_dir": 1}


def test_voxpopuli_loader(quirks):
  report = corpora.DataReport()
  utts = corpora.read_voxpopuli(quirks, report=report)
  assert [(u.utt_id, u.text, u.speaker) for u in utts] == [
      ("20180101-0900-PLENARY-1_it_1", 'Ciao, "mondo"!', "s1"),
      ("20190202-0900-PLENARY-2_it_2", "solo normalizzato", "s2")]
  assert utts[0].audio_path.endswith("it/2018/20180101-0900-PLENARY-1_it_1.ogg")
  assert report.skip_counts("voxpopuli", "it", "train") == {"missing_audio": 1,
                                                            "empty_text": 1}
  assert report.skip_counts("voxpopuli", "it", "dev") == {}
  assert report.skip_counts("voxpopuli", "it", "test") == {"missing_tsv": 1}


def test_read_subset(tmp_path):
  _write(str(tmp_path / "subsets" / "commonvoice" / "hi" / "train_10min.tsv"), ["utt_id"],
         ["a", "b", ""])
  assert corpora.read_subset(str(tmp_path), "commonvoice", "hi", "train_10min") == {"a", "b"}
  with pytest.raises(FileNotFoundError, match="train_1h"):
    corpora.read_subset(str(tmp_path), "commonvoice", "hi", "train_1h")


def test_load_audio_formats(tmp_path):
  x48 = _tone(1.0, 48000)
  sf.write(tmp_path / "a.mp3", x48, 48000)
  got = audio.load_audio(str(tmp_path / "a.mp3"))
  ref = signal.resample_poly(sf.read(tmp_path / "a.mp3", dtype="float32")[0], 1, 3)
  assert got.dtype == np.float32 and got.shape == ref.shape
  np.testing.assert_allclose(got[200:-200], ref[200:-200], atol=2e-3)

  stereo = np.stack([_tone(0.5, 16000), -0.5 * _tone(0.5, 16000)], axis=1)
  sf.write(tmp_path / "s.flac", stereo, 16000)
  np.testing.assert_allclose(audio.load_audio(str(tmp_path / "s.flac")),
                             stereo.mean(axis=1), atol=1e-4)
  sf.write(tmp_path / "v.ogg", _tone(0.5, 16000), 16000)
  assert audio.load_audio(str(tmp_path / "v.ogg")).shape == (8000,)
  sf.write(tmp_path / "w.wav", _tone(0.5, 8000), 8000)
  assert audio.load_audio(str(tmp_path / "w.wav")).shape == (16000 // 2,)


@pytest.mark.parametrize("content,reason", [
    (None, "missing"), (b"", "empty"), (b"garbage" * 100, "undecodable")])
def test_load_audio_errors_name_file_and_reason(tmp_path, content, reason):
  path = tmp_path / "bad.mp3"
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(audio.AudioError, match=reason) as e:
    audio.load_audio(str(path))
  assert str(path) in str(e.value) and e.value.reason.startswith(reason)
