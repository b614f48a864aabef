"""Real Common Voice release files (issue 16 §5): validated.tsv as the train split,
reported.tsv, validated/unvalidated_sentences.tsv, clip_durations.tsv, 32/44.1/48 kHz clips,
and partial downloads. Fixtures are written in the exact formats of the releases (headers as
the Common Voice bundler writes them: docs/real_corpora.md); expectations are listed by hand.
"""

import json
import os

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from mlasr import config_lib
from mlasr.data import corpora
from mlasr.data import inputs
from mlasr.data import tfds_builder

# Clip TSVs since Corpus 17.0 (train, dev, test, validated, invalidated, other).
CLIPS = ("client_id path sentence_id sentence sentence_domain up_votes down_votes age gender "
         "accents variant locale segment").split()
REPORTED = "sentence sentence_id locale reason".split()  # bundler getReportedSentencesLocale
VALIDATED_SENTENCES = "sentence_id sentence sentence_domain source is_used clips_count".split()
# Corpus 25.0 adds variant, and up_votes/down_votes/status to the unvalidated file.
UNVALIDATED_SENTENCES_25 = ("sentence_id sentence variant sentence_domain source up_votes "
                            "down_votes status").split()
DURATIONS = ["clip", "duration[ms]"]


def _tsv(path, header, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8", newline="") as f:
    f.write("\t".join(header) + "\n")
    for r in rows:
      f.write("\t".join(str(r.get(c, "")) for c in header) + "\n")


def _mp3(path, seconds=0.8, sr=48000, freq=330.0):
  t = np.arange(int(round(seconds * sr))) / sr
  sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)


def _clip(client, name, sentence, sid=None):
  return {"client_id": client, "path": name, "sentence": sentence,
          "sentence_id": sid or f"sid_{name[:-4]}", "up_votes": 2, "down_votes": 0,
          "locale": "tw"}


def _release(root, present=None):
  """A small Twi release: train.tsv of one clip, the rest only in validated.tsv.

  Returns (lang dir, {clip name: stated seconds}). `present`: the clips written (default all).
  """
  d = os.path.join(root, "commonvoice", "tw")
  os.makedirs(os.path.join(d, "clips"), exist_ok=True)
  dev = [_clip("spk_dev", "dev0.mp3", "Ɛyɛ dev kasa.", "sid_dev0")]
  test = [_clip("spk_test", "test0.mp3", "Test kasa a ɛtɔ so mmienu.", "sid_test0"),
          _clip("spk_test", "test1.mp3", "Kasa bɔne bi.", "sid_bad")]  # reported
  train = [_clip("spk_a", "a.mp3", "Akwaaba, me nua.")]
  validated = train + dev + test + [
      _clip("spk_b", "b.mp3", "Nsuo no yɛ nwini."),  # kept
      _clip("spk_dev", "c.mp3", "Ade foforo bi."),  # dev speaker
      _clip("spk_c", "d.mp3", "  test KASA a ɛtɔ so   mmienu. "),  # test sentence, by text
      _clip("spk_c", "e.mp3", "Ɛyɛ dev kasa", "sid_dev0"),  # dev sentence, by sentence_id
      _clip("spk_e", "f.mp3", "asɛm a wɔnkaa.", "sid_f"),  # reported sentence, by text
      _clip("spk_f", "g.mp3", "Ɛnnɛ yɛ Memeneda."),  # clip absent (partial download)
      _clip("spk_f", "h.mp3", "Me din de Ama."),  # kept
  ]
  seconds = {c["path"]: 0.6 + 0.1 * i for i, c in enumerate(validated)}
  for c in validated:
    if c["path"] != "g.mp3" and (present is None or c["path"] in present):
      _mp3(os.path.join(d, "clips", c["path"]), seconds[c["path"]])
  _tsv(os.path.join(d, "train.tsv"), CLIPS, train)
  _tsv(os.path.join(d, "dev.tsv"), CLIPS, dev)
  _tsv(os.path.join(d, "test.tsv"), CLIPS, test)
  _tsv(os.path.join(d, "validated.tsv"), CLIPS, validated)
  for name in ("invalidated", "other"):
    _tsv(os.path.join(d, f"{name}.tsv"), CLIPS, [])
  _tsv(os.path.join(d, "reported.tsv"), REPORTED, [
      {"sentence": "Kasa bɔne bi.", "sentence_id": "sid_bad", "locale": "tw",
       "reason": "offensive-language"},
      {"sentence": "Kasa bɔne bi.", "sentence_id": "sid_bad", "locale": "tw",
       "reason": "grammar-or-spelling"},
      {"sentence": "Asɛm a wɔnkaa.", "sentence_id": "sid_text_only", "locale": "tw",
       "reason": "difficult-pronounce"}])
  _tsv(os.path.join(d, "clip_durations.tsv"), DURATIONS,
       [{"clip": n, "duration[ms]": round(s * 1000)} for n, s in seconds.items()])
  _tsv(os.path.join(d, "validated_sentences.tsv"), VALIDATED_SENTENCES, [
      {"sentence_id": "v1", "sentence": "Akwaaba, me nua.", "sentence_domain": "",
       "source": "wiki", "is_used": 1, "clips_count": 1},
      {"sentence_id": "v2", "sentence": "Wiase yɛ fɛ  paa.", "source": "wiki", "is_used": 1,
       "clips_count": 0},
      {"sentence_id": "sid_dev0", "sentence": "Ɛyɛ dev kasa.", "is_used": 1, "clips_count": 2},
      {"sentence_id": "sid_bad", "sentence": "Kasa bɔne bi.", "is_used": 0, "clips_count": 2},
      {"sentence_id": "v3", "sentence": "akwaaba, ME nua.", "is_used": 1, "clips_count": 0},
      {"sentence_id": "v4", "sentence": "   ", "is_used": 1, "clips_count": 0}])
  _tsv(os.path.join(d, "unvalidated_sentences.tsv"), UNVALIDATED_SENTENCES_25, [
      {"sentence_id": "u1", "sentence": "Nnipa dodoɔ bɛba.", "source": "user", "up_votes": 1,
       "down_votes": 0, "status": "pending"},
      {"sentence_id": "u2", "sentence": "Asɛm a ɛnyɛ.", "source": "user", "up_votes": 0,
       "down_votes": 2, "status": "rejected"}])
  return d, seconds


def test_validated_minus_dev_test_speakers_and_sentences(tmp_path):
  root = str(tmp_path)
  _release(root)
  report = corpora.DataReport()
  utts = corpora.read_commonvoice(root, report=report, train_from_validated=True)
  by_split = {s: sorted(u.utt_id for u in utts if u.split == s) for s in corpora.SPLITS}
  assert by_split == {"train": ["a", "b", "h"], "dev": ["dev0"], "test": ["test0"]}
  assert report.skip_counts("commonvoice", "tw", "train") == {
      "dev_test_speaker": 4,  # dev0, test0, test1 (the dev/test clips themselves) and c
      "dev_test_sentence": 2,  # d (by text), e (by sentence_id)
      "reported_sentence": 1,  # f
      "missing_audio": 1}  # g
  assert report.skip_counts("commonvoice", "tw", "test") == {"reported_sentence": 1}
  assert report.skip_counts("commonvoice", "tw", "dev") == {}
  notes = {n["reason"]: n["detail"] for n in report.notes}
  assert "minus 4 clips of dev/test speakers and 2 of dev/test sentences" in notes[
      "train_from_validated"]
  assert "3 reports" in notes["reported_sentences"]


def test_validated_is_ignored_by_default_with_a_note(tmp_path):
  root = str(tmp_path)
  _release(root)
  report = corpora.DataReport()
  utts = corpora.read_commonvoice(root, report=report)
  assert sorted(u.utt_id for u in utts if u.split == "train") == ["a"]
  notes = {n["reason"]: n["detail"] for n in report.notes}
  # b c d e f g h are in no split TSV; g is absent.
  assert "lists 7 clips in no train/dev/test.tsv (6 of them in clips/)" in notes[
      "validated_unused"]
  assert "validated_unused" not in {w["reason"] for w in report.warnings}
  # A release whose train.tsv lists only an absent clip: validated.tsv holds all there is.
  os.remove(os.path.join(root, "commonvoice", "tw", "clips", "a.mp3"))
  report = corpora.DataReport()
  corpora.read_commonvoice(root, report=report)
  assert "validated_unused" in {w["reason"] for w in report.warnings}
  assert "lost_split" in {w["reason"] for w in report.warnings}


def test_release_without_train_tsv(tmp_path):
  root = str(tmp_path)
  d, _ = _release(root)
  os.remove(os.path.join(d, "train.tsv"))
  report = corpora.DataReport()
  utts = corpora.read_commonvoice(root, report=report, train_from_validated=True)
  assert sorted(u.utt_id for u in utts if u.split == "train") == ["a", "b", "h"]
  assert report.skip_counts("commonvoice", "tw", "train").get("missing_tsv") is None
  report = corpora.DataReport()
  assert not [u for u in corpora.read_commonvoice(root, report=report) if u.split == "train"]
  assert report.skip_counts("commonvoice", "tw", "train") == {"missing_tsv": 1}
  assert "validated_unused" in {w["reason"] for w in report.warnings}  # all there is
  # Only validated.tsv: a language without split TSVs, unless the option reads it.
  for split in ("dev", "test"):
    os.remove(os.path.join(d, f"{split}.tsv"))
  report = corpora.DataReport()
  assert corpora.read_commonvoice(root, report=report) == []
  assert report.skip_counts("commonvoice", "tw") == {"no_split_tsvs": 1}
  assert "validated_only" in {w["reason"] for w in report.warnings}
  utts = corpora.read_commonvoice(root, train_from_validated=True)
  assert sorted(u.utt_id for u in utts) == ["a", "b", "c", "d", "dev0", "e", "h", "test0"]


def test_prepare_with_train_from_validated_and_text_corpora(tmp_path):
  root = str(tmp_path)
  _, seconds = _release(root)
  cfg = config_lib.base_config().data
  cfg.root, cfg.sources, cfg.prepare_workers, cfg.train_from_validated = (
      root, ("commonvoice:tw",), 1, True)
  inputs.prepare_sources(cfg)
  data_dir = inputs.data_dir(cfg)
  index = tfds_builder.load_index(data_dir, "commonvoice", "tw")
  assert sorted(index["train"]["utt_id"]) == ["a", "b", "h"]
  assert sorted(index["test"]["utt_id"]) == ["test0"]
  out = tfds_builder.dataset_dir(data_dir, "commonvoice", "tw")
  with open(os.path.join(out, tfds_builder.OPTIONS_FILE)) as f:
    assert json.load(f) == {"train_from_validated": True}
  d = json.load(open(os.path.join(out, tfds_builder.REPORT_FILE), encoding="utf-8"))
  assert {n["reason"] for n in d["notes"]} >= {"train_from_validated", "reported_sentences",
                                               "text_corpus"}
  listing = {e["split"]: e for e in d["listing"]}
  assert (listing["train"]["listed"], listing["train"]["missing"]) == (4, 1)  # a b g h
  assert listing["train"]["missing_hours"] == pytest.approx(
      round(seconds["g.mp3"] * 1000) / 3.6e6, abs=1e-6)
  # Text-only files: LM / tokenizer text, without dev/test, reported or repeated sentences.
  with open(tfds_builder.text_corpus_path(data_dir, "tw"), encoding="utf-8") as f:
    assert f.read() == "Akwaaba, me nua.\nWiase yɛ fɛ paa.\n"
  with open(tfds_builder.text_corpus_path(data_dir, "tw", "unvalidated_sentences"),
            encoding="utf-8") as f:
    assert f.read() == "Nnipa dodoɔ bɛba.\n"
  report = tfds_builder.load_report(data_dir, "commonvoice", "tw")
  assert report.skip_counts("commonvoice", "tw", "validated_sentences") == {
      "dev_test_sentence": 1, "reported_sentence": 1, "duplicate_sentence": 1,
      "empty_text": 1}
  assert report.skip_counts("commonvoice", "tw", "unvalidated_sentences") == {
      "rejected_sentence": 1}
  cfg.tokenizer_text = ("validated_sentences", "unvalidated_sentences")
  from mlasr.data import text as text_lib  # pylint: disable=g-import-not-at-top
  assert inputs.tokenizer_text(cfg) == {"tw": [text_lib.normalize(t, "tw") for t in (
      "Akwaaba, me nua.", "Wiase yɛ fɛ paa.", "Nnipa dodoɔ bɛba.")]}
  # The same data_dir under the other option: refused, not silently reused.
  cfg.train_from_validated = False
  with pytest.raises(ValueError, match="train_from_validated"):
    inputs.prepare_sources(cfg)


def test_clip_durations_used_and_disagreement_counted(tmp_path):
  root = str(tmp_path)
  d, seconds = _release(root)
  # Release states 2.5 s for a 0.7 s clip: its decoded duration disagrees badly.
  _tsv(os.path.join(d, "clip_durations.tsv"), DURATIONS,
       [{"clip": n, "duration[ms]": 2500 if n == "b.mp3" else round(s * 1000)}
        for n, s in seconds.items()])
  report = corpora.DataReport()
  utts = corpora.read_commonvoice(root, report=report, train_from_validated=True)
  stated = {u.utt_id: u.stated_seconds for u in utts}
  assert stated == {u: (2.5 if u == "b" else round(seconds[u + ".mp3"] * 1000) / 1000)
                    for u in ("a", "b", "h", "dev0", "test0")}
  data_dir = str(tmp_path / "tfds")
  tfds_builder.prepare(root, data_dir, "commonvoice", "tw", train_from_validated=True)
  rep = tfds_builder.load_report(data_dir, "commonvoice", "tw")
  assert rep.skip_counts("commonvoice", "tw", "train")["audio_truncated"] == 1
  index = tfds_builder.load_index(data_dir, "commonvoice", "tw")
  assert sorted(index["train"]["utt_id"]) == ["a", "h"]
  for utt, n in zip(index["train"]["utt_id"], index["train"]["num_samples"]):
    assert abs(n / 16000 - stated[utt]) < 0.06  # decoded agrees with the stated duration
  # The datasheets' header wording (`filename`) reads the same.
  _tsv(os.path.join(d, "clip_durations.tsv"), ["filename", "duration[ms]"],
       [{"filename": n, "duration[ms]": round(s * 1000)} for n, s in seconds.items()])
  again = corpora.read_commonvoice(root, splits=("dev",))
  assert again[0].stated_seconds == round(seconds["dev0.mp3"] * 1000) / 1000


@pytest.mark.parametrize("sr", [32000, 44100, 48000])
def test_clips_at_release_sample_rates(tmp_path, sr):
  root = str(tmp_path)
  d = os.path.join(root, "commonvoice", "tw")
  os.makedirs(os.path.join(d, "clips"))
  rows = []
  for split in ("train", "test"):
    name = f"{split}_{sr}.mp3"
    _mp3(os.path.join(d, "clips", name), 1.3, sr=sr, freq=440.0)
    rows.append((split, name))
    _tsv(os.path.join(d, f"{split}.tsv"), CLIPS, [_clip("spk", name, "Akwaaba.")])
  data_dir = str(tmp_path / "tfds")
  tfds_builder.prepare(root, data_dir, "commonvoice", "tw")
  for split, name in rows:
    ex = tfds_builder.data_source(data_dir, "commonvoice", "tw", split)[0]
    # Independent reference: the decoded MP3 through scipy's polyphase resampler.
    ref, file_sr = sf.read(os.path.join(d, "clips", name), dtype="float32")
    assert file_sr == sr
    g = np.gcd(16000, sr)
    ref = signal.resample_poly(ref, 16000 // g, sr // g)
    got = ex["audio"].astype(np.float32) / 32767
    assert abs(len(got) - len(ref)) <= 1
    n = min(len(got), len(ref))
    np.testing.assert_allclose(got[200:n - 200], ref[200:n - 200], atol=3e-3)


def test_partial_download_counted_never_fatal_but_lost_splits_fail(tmp_path):
  root = str(tmp_path / "cv")
  d = os.path.join(root, "commonvoice", "tw")
  os.makedirs(os.path.join(d, "clips"))
  train = [_clip(f"s{i}", f"t{i}.mp3", f"Kasa {i}.") for i in range(10)]
  dev = [_clip("d", f"v{i}.mp3", f"Dev {i}.") for i in range(3)]
  test = [_clip("e", f"x{i}.mp3", f"Test {i}.") for i in range(2)]
  present = {"t1.mp3", "t4.mp3", "t8.mp3", "v0.mp3", "x0.mp3", "x1.mp3"}  # 7 of 10 train absent
  for c in train + dev + test:
    if c["path"] in present:
      _mp3(os.path.join(d, "clips", c["path"]), 0.7)
  for split, rows in (("train", train), ("dev", dev), ("test", test)):
    _tsv(os.path.join(d, f"{split}.tsv"), CLIPS, rows)
  _tsv(os.path.join(d, "clip_durations.tsv"), DURATIONS,
       [{"clip": c["path"], "duration[ms]": 700} for c in train + dev + test])
  data_dir = str(tmp_path / "tfds")
  tfds_builder.prepare(root, data_dir, "commonvoice", "tw")  # not fatal
  report = tfds_builder.load_report(data_dir, "commonvoice", "tw")
  index = tfds_builder.load_index(data_dir, "commonvoice", "tw")
  for split, rows in (("train", train), ("dev", dev), ("test", test)):
    want = sorted(c["path"][:-4] for c in rows if c["path"] in present)
    assert sorted(index[split]["utt_id"]) == want
    skipped = report.skip_counts("commonvoice", "tw", split)
    assert skipped == ({"missing_audio": len(rows) - len(want)} if len(want) < len(rows)
                       else {})
    assert report.kept_count("commonvoice", "tw", split) + sum(skipped.values()) == len(rows)
  e = report.listing[("commonvoice", "tw", "train")]
  assert (e["listed"], e["missing"], e["stated"]) == (10, 7, 10)
  assert e["missing_seconds"] == pytest.approx(4.9)
  partial = [w["detail"] for w in report.warnings if w["reason"] == "partial_download"]
  assert sorted(w.split(":")[0] for w in partial) == ["split 'dev'", "split 'train'"]
  assert any("split 'train': 7 of 10 clips" in w and "0.001 of 0.002 h" in w for w in partial)
  assert "listed  commonvoice/tw/train: 10 clips, 7 absent" in report.summary()

  # A split whose every listed clip is absent fails the build, naming it.
  data_dir2 = str(tmp_path / "tfds2")
  os.remove(os.path.join(d, "clips", "v0.mp3"))
  with pytest.raises(ValueError, match=r"lost whole splits.*'dev' \(3 clips\)"):
    tfds_builder.prepare(root, data_dir2, "commonvoice", "tw")
  assert "lost_split" in {w["reason"] for w in
                          tfds_builder.load_report(data_dir2, "commonvoice", "tw").warnings}
  _mp3(os.path.join(d, "clips", "v0.mp3"), 0.7)  # the clip downloaded: prepares
  tfds_builder.prepare(root, data_dir2, "commonvoice", "tw")
  assert tfds_builder.load_index(data_dir2, "commonvoice", "tw")["dev"]["utt_id"] == ["v0"]

  # A language with no clip at all on disk fails too.
  for name in os.listdir(os.path.join(d, "clips")):
    os.remove(os.path.join(d, "clips", name))
  with pytest.raises(ValueError, match="no usable commonvoice/tw"):
    tfds_builder.prepare(root, str(tmp_path / "tfds3"), "commonvoice", "tw")


def test_voxpopuli_partial_download_is_listed(tmp_path):
  root = str(tmp_path)
  d = os.path.join(root, "voxpopuli", "transcribed_data", "fi")
  header = ("id raw_text normalized_text speaker_id split gender is_gold_transcript "
            "accent").split()
  ids = [f"2019011{i}-0900-PLENARY-{i}_fi_{i}" for i in range(4)]
  os.makedirs(os.path.join(d, "2019"))
  _mp3(os.path.join(d, "2019", ids[0] + ".ogg"), 0.5, sr=16000)
  _tsv(os.path.join(d, "asr_train.tsv"), header, [
      {"id": u, "raw_text": "Hyvää päivää.", "normalized_text": "hyvää päivää",
       "speaker_id": "1", "split": "train", "gender": "female", "is_gold_transcript": "True",
       "accent": "None"} for u in ids])
  report = corpora.DataReport()
  utts = corpora.read_voxpopuli(root, splits=("train",), report=report)
  assert [u.utt_id for u in utts] == ids[:1]
  assert report.skip_counts("voxpopuli", "fi", "train") == {"missing_audio": 3}
  e = report.listing[("voxpopuli", "fi", "train")]
  assert (e["listed"], e["missing"]) == (4, 3)
  assert "partial_download" in {w["reason"] for w in report.warnings}
