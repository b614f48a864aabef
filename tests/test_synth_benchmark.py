"""Tests for data_prep.synth_benchmark on the tiny preset (built once per session)."""

import csv
import hashlib
import json
import pathlib

import numpy as np
import pytest
import soundfile as sf

from data_prep import synth_audio
from data_prep import synth_benchmark as sb
from mlasr.data import languages

CV_LANGS, VP_LANGS = ("en", "hi", "ru"), ("cs",)


def _read(path: pathlib.Path) -> list[dict]:
  with path.open(encoding="utf-8", newline="") as f:
    return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _header(path: pathlib.Path) -> list[str]:
  return path.read_text(encoding="utf-8").splitlines()[0].split("\t")


def _splits(root):
  """{(corpus, lang, split): rows} with a uniform (utt_id, speaker, text) view."""
  out = {}
  for lang in CV_LANGS:
    for split in sb.SPLITS:
      rows = _read(root / "commonvoice" / lang / f"{split}.tsv")
      out["commonvoice", lang, split] = [
          (r["path"][:-4], r["client_id"], r["sentence"]) for r in rows]
  for lang in VP_LANGS:
    for split in sb.SPLITS:
      rows = _read(root / "voxpopuli/transcribed_data" / lang / f"asr_{split}.tsv")
      out["voxpopuli", lang, split] = [(r["id"], r["speaker_id"], r["raw_text"]) for r in rows]
  return out


def test_files_and_headers(tiny_benchmark):
  root = tiny_benchmark
  for lang in CV_LANGS:
    base = root / "commonvoice" / lang
    for table in ("train", "dev", "test", "validated", "invalidated", "other"):
      assert _header(base / f"{table}.tsv") == sb.CV_HEADER
    rows = _read(base / "validated.tsv")
    assert rows and all(len(r["client_id"]) == 128 for r in rows)
    assert {r["path"][:-4] for r in rows} == {
        r["path"][:-4] for s in sb.SPLITS for r in _read(base / f"{s}.tsv")}
    assert len(_read(base / "invalidated.tsv")) == 2 and len(_read(base / "other.tsv")) == 2
    clip = base / "clips" / rows[0]["path"]
    assert rows[0]["path"].startswith(f"common_voice_{lang}_")
    info = sf.info(str(clip))
    assert (info.format, info.samplerate, info.channels) == ("MP3", 48000, 1)
  for lang in VP_LANGS:
    base = root / "voxpopuli/transcribed_data" / lang
    for split in sb.SPLITS:
      rows = _read(base / f"asr_{split}.tsv")
      assert _header(base / f"asr_{split}.tsv") == sb.VP_HEADER
      assert rows and all(r["split"] == split for r in rows)
      for r in rows[:3]:
        info = sf.info(str(base / r["id"][:4] / f"{r['id']}.ogg"))
        assert (info.format, info.subtype, info.samplerate, info.channels) == (
            "OGG", "VORBIS", 16000, 1)
        assert 0.5 < info.duration < 30
  bench = json.loads((root / "benchmark.json").read_text())
  assert bench["preset"] == "tiny" and set(bench["languages"]) == set(CV_LANGS + VP_LANGS)
  assert bench["languages"]["hi"]["script"] == "Devanagari"
  assert all(v["license"] for v in bench["text_sources"].values())
  assert _header(root / "speakers.tsv") == "corpus lang speaker_id engine voice group split".split()
  assert "| hi | Devanagari | commonvoice |" in (root / "README.md").read_text()
  voices = bench["languages"]["en"]["festival_voices"]
  assert voices["train"] == sorted(sb.FESTIVAL_TRAIN_VOICES["en"]) and voices["unseen"]
  assert not set(voices["train"]) & set(voices["unseen"])
  assert bench["languages"]["hi"]["festival_voices"] == {
      "train": ["czech_krb", "czech_machac"], "unseen": ["hindi_NSK_diphone"]}
  assert (f"| {' '.join(voices['train'])} / {' '.join(voices['unseen'])} |"
          in (root / "README.md").read_text())


def test_speaker_disjoint_and_unseen_in_test(tiny_benchmark):
  splits = _splits(tiny_benchmark)
  speakers = _read(tiny_benchmark / "speakers.tsv")
  for (corpus, lang, split), rows in splits.items():
    mine = {spk for _, spk, _ in rows}
    for other in sb.SPLITS:
      if other != split:
        assert not mine & {spk for _, spk, _ in splits[corpus, lang, other]}
    groups = {s["group"] for s in speakers if s["lang"] == lang and s["split"] == split}
    assert groups == ({"seen", "unseen"} if split == "test" else {"seen"})
    engines = {s["engine"] for s in speakers if s["speaker_id"] in mine}
    # Training spans two synthesisers where the language has festival training voices; dev
    # and seen test speakers are espeak-ng voices the training split does not have.
    expected = {"espeak-ng", "festival"} if split == "test" or (
        split == "train" and lang in sb.FESTIVAL_TRAIN_VOICES) else {"espeak-ng"}
    assert engines == expected, (lang, split, engines)
  # An unseen voice is one no training or dev clip was spoken by, not just another speaker id.
  voice = lambda s: s["voice"].split(" ")[0]
  heard = {(s["lang"], voice(s)) for s in speakers if s["split"] != "test"}
  unseen = {(s["lang"], voice(s)) for s in speakers if s["group"] == "unseen"}
  assert unseen and not heard & unseen
  assert {l for l, _ in unseen} == {l for _, l, _ in splits}
  # Festival voices heard outside test are training voices of that language (a tiny split may
  # not hear all of them; the engine check above asserts it hears one).
  heard_festival = {(l, v) for l, v in heard
                    if not v.startswith(languages.get(l).espeak_voice + "+")}
  assert heard_festival <= {(l, v) for l, vs in sb.FESTIVAL_TRAIN_VOICES.items() for v in vs}
  assert {l for l, _ in heard_festival} == {l for _, l, _ in splits} & set(sb.FESTIVAL_TRAIN_VOICES)


def test_no_sentence_overlap_across_splits(tiny_benchmark):
  splits = _splits(tiny_benchmark)
  for corpus, lang in {(c, l) for c, l, _ in splits}:
    texts = [sb._normalize(t) for s in sb.SPLITS for _, _, t in splits[corpus, lang, s]]
    assert len(texts) == len(set(texts))


def test_subsets_are_subsets_of_train(tiny_benchmark):
  splits = _splits(tiny_benchmark)
  bench = json.loads((tiny_benchmark / "benchmark.json").read_text())
  found = 0
  for (corpus, lang, split), rows in splits.items():
    if split != "train":
      continue
    train = {u for u, _, _ in rows}
    listed = bench["languages"][lang]["subsets"]
    for name in ("train_10min", "train_1h"):
      path = tiny_benchmark / "subsets" / corpus / lang / f"{name}.tsv"
      assert path.exists() == (name in listed)
      if path.exists():
        found += 1
        ids = [r["utt_id"] for r in _read(path)]
        assert ids and set(ids) <= train and len(ids) == listed[name]["clips"]
    small = {r["utt_id"] for r in _read(tiny_benchmark / "subsets" / corpus / lang /
                                        "train_10min.tsv")}
    big = {r["utt_id"] for r in _read(tiny_benchmark / "subsets" / corpus / lang /
                                      "train_1h.tsv")}
    assert small <= big
    # A language with less train audio than the subset asks for gets all of it, flagged.
    assert listed["train_1h"]["all_of_train"] == (big == train)
    assert (small < big) or listed["train_10min"]["all_of_train"]
  assert found == 2 * 4  # every language has both tracks
  assert any(bench["languages"][l]["subsets"]["train_1h"]["all_of_train"]
             for l in bench["languages"])


def _digest(root: pathlib.Path) -> dict[str, str]:
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob("*")) if p.is_file() and p.name != "build_log.json"}


def test_interrupted_build_resumes_byte_identical(tiny_benchmark, tmp_path):
  resumed = tmp_path / "resumed"
  assert sb.build("tiny", resumed, seed=0, workers=2, max_clips=40, progress=False) is None
  n_partial = sum(1 for p in resumed.rglob("*") if p.suffix in (".mp3", ".ogg"))
  assert n_partial == 40 and not (resumed / "benchmark.json").exists()
  sb.build("tiny", resumed, seed=0, workers=1, progress=False)
  log = json.loads((resumed / "build_log.json").read_text())["runs"][-1]
  assert log["new_clips"] == sum(1 for p in resumed.rglob("*") if p.suffix in (".mp3", ".ogg")) - 40
  assert _digest(resumed) == _digest(tiny_benchmark)


def test_plan_depends_on_seed():
  a, b = sb.make_plan("tiny", 0), sb.make_plan("tiny", 1)
  assert [c.text for c in a["en"]["clips"]] != [c.text for c in b["en"]["clips"]]
  assert [c.utt_id for c in a["en"]["clips"]] == [c.utt_id for c in sb.make_plan("tiny", 0)[
      "en"]["clips"]]


# One short native sentence per language: enough for every engine to produce speech.
_VOICE_CHECK_TEXT = {
    "en": "The weather is nice today.", "de": "Heute ist das Wetter schön.",
    "it": "Oggi il tempo è bello.",
    "ca": "Avui fa bon temps.", "fi": "Tänään on kaunis ilma.", "cs": "Dnes je hezké počasí.",
    "ru": "Сегодня хорошая погода.", "hi": "आज मौसम अच्छा है।", "mr": "आज हवामान छान आहे.",
    "te": "ఈ రోజు వాతావరణం బాగుంది.",
}


def test_every_preset_voice_synthesises():
  """Each voice of every preset speaks on this machine (a missing Debian package fails here)."""
  voices = sb.preset_voices()
  assert {l for l, _, _ in voices} == set(_VOICE_CHECK_TEXT)
  assert {v for _, e, v in voices if e == "festival"} == set(synth_audio.FESTIVAL_PACKAGES)
  festival = [(synth_audio.festival_text(_VOICE_CHECK_TEXT[l], l, v), v, 1.0)
              for l, e, v in voices if e == "festival"]
  assert all(text is not None for text, _, _ in festival)
  waves = synth_audio.festival_batch(festival)
  for (lang, engine, voice), out in zip([v for v in voices if v[1] == "festival"], waves):
    assert out is not None, f"festival voice {voice} ({lang}) produced no audio"
    wave, rate = out
    assert len(wave) / rate > 0.5 and np.abs(wave).max() > 0.01, (voice, len(wave), rate)
  for lang, engine, voice in voices:
    if engine == "espeak-ng":
      wave, rate = synth_audio.espeak(_VOICE_CHECK_TEXT[lang], voice, 160, 50, 100, 0)
      assert len(wave) / rate > 0.5, (voice, len(wave), rate)


def test_missing_voice_fails_before_synthesis(monkeypatch):
  plan = sb.make_plan("tiny", 0)
  real = synth_audio.festival_batch
  monkeypatch.setattr(synth_audio, "festival_batch",
                      lambda items: [None if v == "hindi_NSK_diphone" else r
                                     for (_, v, _), r in zip(items, real(items))])
  with pytest.raises(SystemExit, match=r"festival voice 'hindi_NSK_diphone' \(hi\).*festival-hi"):
    sb.check_voices(plan)


def test_lost_speaker_group_fails_loudly():
  plan = sb.make_plan("tiny", 0)
  unseen = {c.utt_id for c in plan["ru"]["clips"] if c.speaker.group == "unseen"}
  assert unseen
  sb.check_groups(plan, {next(iter(unseen))} if len(unseen) > 1 else set())  # a few: tolerated
  with pytest.raises(SystemExit, match=r"ru test: unseen .*none made"):
    sb.check_groups(plan, unseen)


def test_lm_text_holds_no_dev_or_test_sentence(tiny_benchmark):
  splits = _splits(tiny_benchmark)
  for corpus, lang in {(c, l) for c, l, _ in splits}:
    lm_text = (tiny_benchmark / "lm_text" / f"{lang}.txt").read_text(encoding="utf-8")
    lm_norm = {sb._normalize(t) for t in lm_text.splitlines() if t}
    held_out = {sb._normalize(t) for s in ("dev", "test") for _, _, t in splits[corpus, lang, s]}
    train = {sb._normalize(t) for _, _, t in splits[corpus, lang, "train"]}
    assert held_out and not lm_norm & held_out
    assert train <= lm_norm  # the training transcripts are LM text too
