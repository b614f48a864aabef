"""Error analysis (mlasr.evaluators.errors) and evaluating a run on other test sets.

Counts are checked against jiwer directly (its corpus measures and its own character
alignment), not against the code under test. The end-to-end tests reuse test_transcribe's
randomly initialised tiny CTC run: what it transcribes is noise, which is all scoring needs.
"""
import collections
import json
import os

import jiwer
import numpy as np
import pytest
import soundfile as sf

from data_prep import synth_benchmark
from mlasr import evaluate
from mlasr.data import corpora
from mlasr.evaluators import errors
from test_report import _utts as report_utts
from test_transcribe import tiny_run  # pylint: disable=unused-import  (a fixture)

SR = 16000
GENDERS = ("male_masculine", "female_feminine", "")
AGES = ("twenties", "fifties", "")
ACCENTS = ("United States English", "", "Scottish English")
SNRS = (("none", ""), ("white", "5.0"), ("pink", "10.0"), ("babble", "20.0"))


def _with_attributes(utts):
  """report's utterances with Common Voice demographics and benchmark noise attached."""
  for k, u in enumerate(utts):
    noise, snr = SNRS[k % len(SNRS)]
    u["attributes"] = {n: v for n, v in (("gender", GENDERS[k % 3]), ("age", AGES[k % 3]),
                                          ("accent", ACCENTS[k % 3]), ("noise", noise),
                                          ("snr_db", snr)) if v}
    u["seconds"] = 0.7 + 1.9 * k
  return utts


def _jiwer_totals(utts):
  """(S, D, I, N) of the pooled characters, from jiwer's own corpus alignment."""
  out = jiwer.process_characters([" ".join(u["ref"].split()) for u in utts],
                                 [" ".join(u["hyp"].split()) for u in utts])
  return out.substitutions, out.deletions, out.insertions, out.hits + out.substitutions + \
      out.deletions


def test_every_breakdown_adds_up_to_the_corpus_counts():
  utts = _with_attributes(report_utts())
  analysis = errors.analyze(utts)
  total = _jiwer_totals(utts)
  a = analysis["all"]["cer"]
  assert (a["sub"], a["del"], a["ins"], a["n"]) == total
  expected = {"language", "speaker group", "gender", "age", "accent", "noise", "SNR band",
              "length"}
  assert set(analysis["breakdowns"]) == expected
  for name, rows in analysis["breakdowns"].items():
    summed = tuple(sum(r["cer"][k] for r in rows.values()) for k in ("sub", "del", "ins", "n"))
    assert summed == total, name
    assert sum(r["utts"] for r in rows.values()) == len(utts), name
    words = sum(r["wer"]["n"] for r in rows.values())
    assert words == sum(len(u["ref"].split()) for u in utts), name
  # One value's rate is jiwer's CER over exactly the utterances stating it.
  female = [u for u in utts if u["attributes"].get("gender") == "female_feminine"]
  assert analysis["breakdowns"]["gender"]["female"]["cer"]["rate"] == pytest.approx(
      jiwer.cer([u["ref"] for u in female], [u["hyp"] for u in female]))
  assert list(analysis["breakdowns"]["SNR band"]) == ["clean", "≤ 5 dB", "5–10 dB",
                                                      "15–20 dB"]
  assert list(analysis["breakdowns"]["length"])[0] == "≤ 2 s"
  assert errors.NOT_GIVEN in analysis["breakdowns"]["gender"]


def test_substitution_pairs_follow_jiwers_alignment():
  # Hand-checked: one substitution each, a deleted space, an inserted "s".
  utts = [dict(utt_id="a", lang="ru", ref="кот спит", hyp="кит спит"),
          dict(utt_id="b", lang="ru", ref="кот дома", hyp="котдома"),
          dict(utt_id="c", lang="ru", ref="мир", hyp="миры"),
          dict(utt_id="d", lang="en", ref="the cat", hyp="a cat")]
  ce = errors.character_errors(utts)
  assert ce["ru"]["substitutions"] == [["о", "и", 1]]
  assert ce["ru"]["deletions"] == [[" ", 1]] and ce["ru"]["insertions"] == [["ы", 1]]
  # On real-looking errors: every pair, deletion and insertion as jiwer aligns them.
  utts = report_utts()
  ce = errors.character_errors(utts, top_k=1000)
  for lang in {u["lang"] for u in utts}:
    mine = [u for u in utts if u["lang"] == lang]
    out = jiwer.process_characters([u["ref"] for u in mine], [u["hyp"] for u in mine])
    subs, dels, ins = collections.Counter(), collections.Counter(), collections.Counter()
    for ref, hyp, chunks in zip(out.references, out.hypotheses, out.alignments):
      for c in chunks:
        for k in range(max(c.ref_end_idx - c.ref_start_idx, c.hyp_end_idx - c.hyp_start_idx)):
          if c.type == "substitute":
            subs[(ref[c.ref_start_idx + k], hyp[c.hyp_start_idx + k])] += 1
          elif c.type == "delete":
            dels[ref[c.ref_start_idx + k]] += 1
          elif c.type == "insert":
            ins[hyp[c.hyp_start_idx + k]] += 1
    assert {(r, h): n for r, h, n in ce[lang]["substitutions"]} == dict(subs), lang
    assert dict(map(tuple, ce[lang]["deletions"])) == dict(dels), lang
    assert dict(map(tuple, ce[lang]["insertions"])) == dict(ins), lang
    assert (ce[lang]["sub"], ce[lang]["del"], ce[lang]["ins"]) == (
        out.substitutions, out.deletions, out.insertions)


def test_reports_and_worst_utterances(tmp_path):
  utts = _with_attributes(report_utts())
  paths = errors.write(errors.analyze(utts, worst_k=3), str(tmp_path))
  assert set(paths) == {errors.ERRORS_JSON, errors.ERRORS_MD, errors.SNR_PNG, errors.LENGTH_PNG}
  loaded = json.loads(open(paths[errors.ERRORS_JSON], encoding="utf-8").read())
  worst = loaded["worst"]
  per_utt = sorted((sum(errors.metrics.char_edits([u["ref"]], [u["hyp"]]).errors)
                    for u in utts), reverse=True)
  assert [w["char_errors"] for w in worst] == per_utt[:3]
  md = open(paths[errors.ERRORS_MD], encoding="utf-8").read()
  top, second = worst[0], worst[1]
  assert top["hyp"] == "" and f"| {top['ref']} | ∅ |" in md  # an empty hypothesis shows
  assert f"| {second['ref']} | {second['hyp']} |" in md  # side by side
  assert "## By gender" in md and "## Character errors: ru" in md
  with open(paths[errors.SNR_PNG], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_commonvoice_and_voxpopuli_demographic_columns_are_carried(tmp_path):
  """The columns of real TSVs (in the header the benchmark writes) reach Utterance.attributes."""
  cv = tmp_path / "commonvoice" / "en"
  (cv / "clips").mkdir(parents=True)
  rows = []
  for k in range(3):
    (cv / "clips" / f"c{k}.mp3").write_bytes(b"x")
    row = dict.fromkeys(synth_benchmark.CV_HEADER, "")
    row.update(client_id=f"spk{k}", path=f"c{k}.mp3", sentence="hello", age=AGES[k],
               gender=GENDERS[k], accents=ACCENTS[k])
    rows.append("\t".join(row[c] for c in synth_benchmark.CV_HEADER))
  (cv / "test.tsv").write_text("\t".join(synth_benchmark.CV_HEADER) + "\n" + "\n".join(rows)
                               + "\n", encoding="utf-8")
  got = {u.utt_id: dict(u.attributes) for u in corpora.read_commonvoice(str(tmp_path))}
  assert got == {"c0": {"gender": "male_masculine", "age": "twenties",
                        "accent": "United States English"},
                 "c1": {"gender": "female_feminine", "age": "fifties"},
                 "c2": {"accent": "Scottish English"}}
  vp = tmp_path / "voxpopuli" / "transcribed_data" / "it"
  (vp / "2019").mkdir(parents=True)
  (vp / "2019" / "20190101-0900-PLENARY-it_1.ogg").write_bytes(b"x")
  row = dict(id="20190101-0900-PLENARY-it_1", raw_text="ciao", normalized_text="ciao",
             speaker_id="7", split="test", gender="female", is_gold_transcript="True",
             accent="None")
  (vp / "asr_test.tsv").write_text("\t".join(synth_benchmark.VP_HEADER) + "\n" + "\t".join(
      row[c] for c in synth_benchmark.VP_HEADER) + "\n", encoding="utf-8")
  (u,) = corpora.read_voxpopuli(str(tmp_path))
  assert dict(u.attributes) == {"gender": "female"}  # VoxPopuli's "None" accent states nothing


# ------------------------------------------------------------------------------ end to end


def _tone(path, seconds, freq):
  t = np.arange(int(seconds * SR)) / SR
  sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR)


def _other_root(root):
  """A Common Voice root in the real TSV format, with the benchmark's clips.tsv and
  speakers.tsv: six English test clips of 0.8-1.8 s and one dev clip."""
  cv = root / "commonvoice" / "en"
  (cv / "clips").mkdir(parents=True)
  texts = ["left front", "right rear", "the quick fox", "side center", "front", "rear left"]
  rows, clips = [], []
  for k, sentence in enumerate(texts):
    # At most 2 s: all in the run's first bucket, one compiled shape (the test's main cost).
    _tone(cv / "clips" / f"common_voice_en_{k}.wav", 0.8 + 0.2 * k, 200 + 50 * k)
    row = dict.fromkeys(synth_benchmark.CV_HEADER, "")
    row.update(client_id=f"spk{k % 2}", path=f"common_voice_en_{k}.wav", sentence=sentence,
               age=AGES[k % 3], gender=GENDERS[k % 2], accents=ACCENTS[k % 3], locale="en")
    rows.append("\t".join(row[c] for c in synth_benchmark.CV_HEADER))
    noise, snr = SNRS[k % len(SNRS)]
    clips.append(f"commonvoice\ten\ttest\tcommon_voice_en_{k}\tspk{k % 2}\t{noise}\t{snr}\tx\ty")
  (cv / "test.tsv").write_text("\t".join(synth_benchmark.CV_HEADER) + "\n" + "\n".join(rows)
                               + "\n", encoding="utf-8")
  _tone(cv / "clips" / "common_voice_en_dev.wav", 1.0, 440)
  (cv / "dev.tsv").write_text("\t".join(synth_benchmark.CV_HEADER) + "\n" + "\t".join(
      dict(path="common_voice_en_dev.wav", sentence="left").get(c, "")
      for c in synth_benchmark.CV_HEADER) + "\n", encoding="utf-8")
  (root / "clips.tsv").write_text(
      "corpus\tlang\ttable\tutt_id\tspeaker_id\tnoise\tsnr_db\tsource\tlicense\n"
      + "\n".join(clips) + "\n", encoding="utf-8")
  (root / "speakers.tsv").write_text(
      "corpus\tlang\tspeaker_id\tengine\tvoice\tgroup\tsplit\n"
      "commonvoice\ten\tspk0\tespeak\tv0\tseen\ttest\n"
      "commonvoice\ten\tspk1\tfestival\tv1\tunseen\ttest\n", encoding="utf-8")
  return texts


def test_evaluate_another_root_end_to_end(tiny_run, tmp_path):
  root = tmp_path / "cv-other"
  texts = _other_root(root)
  config_before = open(os.path.join(tiny_run, "config.json"), encoding="utf-8").read()
  results = evaluate.run(tiny_run, "test", n_boot=20, data_root=str(root),
                         sources=("commonvoice:en",))
  out = os.path.join(tiny_run, "eval_on_cv-other-commonvoice_en-test")
  assert os.path.isdir(os.path.join(root, "tfds"))  # prepared into that root's own TFDS dir
  assert not os.path.exists(os.path.join(tiny_run, "tfds"))
  assert open(os.path.join(tiny_run, "config.json"), encoding="utf-8").read() == config_before
  for name in ("results.json", "results.md", "cer_by_lang.png", "ref.trn", "hyp.char.trn",
               "per_utt.tsv", "errors.md", "errors.json", "cer_by_snr.png",
               "cer_by_length.png"):
    assert os.path.exists(os.path.join(out, name)), name
  assert results["meta"]["data_root"] == str(root) and results["all"]["utts"] == len(texts)
  analysis = json.load(open(os.path.join(out, "errors.json"), encoding="utf-8"))
  b = analysis["breakdowns"]
  assert set(b["gender"]) == {"male", "female"}  # Common Voice's male_masculine, ... pooled
  assert set(b["accent"]) == {"United States English", "Scottish English", errors.NOT_GIVEN}
  assert set(b["speaker group"]) == {"seen", "unseen"}
  assert list(b["SNR band"]) == ["clean", "≤ 5 dB", "5–10 dB", "15–20 dB"]
  hyps = {line.split("\t")[0]: line.rstrip("\n").split("\t")[-1]
          for line in open(os.path.join(out, "per_utt.tsv"), encoding="utf-8").readlines()[1:]}
  all_cer = jiwer.cer(texts, [hyps[f"common_voice_en_{k}"] for k in range(len(texts))])
  assert results["all"]["cer"]["rate"] == pytest.approx(all_cer)
  for rows in b.values():
    assert sum(r["cer"]["n"] for r in rows.values()) == results["all"]["cer"]["n"]
  # The tokenizer knows the letters of "front center left right rear side" only.
  known = set("front center left right rear side") - {" "}
  unknown = sum(ch not in known and ch != " " for t in texts for ch in t)
  assert results["unknown_chars"]["en"]["count"] == unknown > 0
  # Several splits as one set (already prepared: the dev row was built with test).
  both = evaluate.run(tiny_run, "test,dev", n_boot=0, data_root=str(root),
                      sources=("commonvoice:en",))
  assert both["all"]["utts"] == len(texts) + 1
  assert os.path.exists(os.path.join(tiny_run, "eval_on_cv-other-commonvoice_en-test+dev",
                                     "errors.md"))
  with pytest.raises(ValueError, match=r"does not know the language\(s\) \['de'\]"):
    evaluate.run(tiny_run, "test", data_root=str(root), sources=("commonvoice:de",))
  # A corpus inside the run folder would be prepared into it: refused, nothing written.
  with pytest.raises(ValueError, match="inside the run's workdir"):
    evaluate.run(tiny_run, "test", data_root=os.path.join(tiny_run, "cv"),
                 sources=("commonvoice:en",))
  assert not os.path.exists(os.path.join(tiny_run, "cv"))


def _per_utt(out_dir) -> dict[str, dict]:
  with open(os.path.join(out_dir, "per_utt.tsv"), encoding="utf-8") as fh:
    header, *rows = [line.rstrip("\n").split("\t") for line in fh]
  return {r[0]: dict(zip(header, r)) for r in rows}


def test_evaluate_decodes_over_the_language_or_the_identified_one(tiny_run, tmp_path):
  """Greedy evaluation searches only the utterance's language's outputs: its hypotheses equal
  the on-device greedy decoder (tasks.ctc.greedy_decode) over masked log-posteriors, and
  without the restriction the unmasked one. `--adapter_lang auto` without an LID run decodes
  each utterance in the language LanguageIdentifier picks and reports LID accuracy."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from mlasr import decoding, lm  # pylint: disable=import-outside-toplevel
  from mlasr.tasks import ctc  # pylint: disable=import-outside-toplevel
  import shutil  # pylint: disable=import-outside-toplevel
  from mlasr import checkpoint as ckpt_lib  # pylint: disable=import-outside-toplevel
  root = tmp_path / "cv-other"
  _other_root(root)
  # The random tiny model emits blanks only; biased towards "п", its unmasked hypotheses hold
  # Cyrillic, which English's outputs forbid.
  run = str(tmp_path / "run")
  shutil.copytree(tiny_run, run)
  _, tokenizer, _, _ = evaluate.restore_model(run)
  params = ckpt_lib.read_params(run)
  params["head"]["bias"] = np.zeros_like(params["head"]["bias"])
  params["head"]["bias"][tokenizer.encode("п", "ru")[0]] = 50.0
  params["head"]["bias"][tokenizer.encode("e", "en")[0]] = 49.0
  checkpointer = ckpt_lib.Checkpointer(run)
  checkpointer.save(2, dict(params=params), {}, {})
  checkpointer.wait()
  checkpointer.close()
  tiny_run = run
  kw = dict(n_boot=0, data_root=str(root), sources=("commonvoice:en",))
  name = "eval_on_cv-other-commonvoice_en-test"
  evaluate.run(tiny_run, "test", **kw)
  evaluate.run(tiny_run, "test", restrict_output=False, **kw)
  restricted = _per_utt(os.path.join(tiny_run, name))
  free = _per_utt(os.path.join(tiny_run, name + "_unrestricted"))

  config, tokenizer, model, _ = evaluate.restore_model(tiny_run)
  tset = evaluate.test_set(config, tiny_run, "test", str(root), ("commonvoice:en",), "",
                           tokenizer)
  log_probs_fn = evaluate.jitted_log_probs(config, model)
  en = jnp.asarray(tokenizer.output_mask(["en"])[0])
  posteriors = {}
  for batch in tset.data.batches():
    lp, frame_mask = log_probs_fn(batch)
    for allowed, rows in ((en, restricted), (None, free)):
      tokens, lengths = ctc.greedy_decode(lp if allowed is None else
                                          jnp.where(allowed, lp, -jnp.inf), frame_mask)
      for i in np.flatnonzero(batch["example_mask"]):
        ref = tokenizer.decode(np.asarray(tokens[i, :lengths[i]]).tolist(), "en")
        assert rows[str(batch["utt_id"][i])]["hyp"] == ref
    for i in np.flatnonzero(batch["example_mask"]):
      posteriors[str(batch["utt_id"][i])] = np.asarray(lp[i][np.asarray(frame_mask[i]) > 0])
  from mlasr.data.tokenizer import UNK_SURFACE  # pylint: disable=import-outside-toplevel
  en_chars = set(tokenizer.lang_chars["en"]) | {" ", UNK_SURFACE}
  assert all(set(r["hyp"]) <= en_chars and r["decoded_lang"] == "en"
             for r in restricted.values())
  assert all("п" in r["hyp"] for r in free.values())

  lm_dir = str(tmp_path / "lm")
  lm.build_lms({"en": ["front center left right rear side"] * 3, "ru": ["привет мир"] * 3},
               lm_dir, char_order=3, word_order=2)
  auto = evaluate.run(tiny_run, "test", adapter_lang="auto", lm_dir=lm_dir, **kw)
  rows = _per_utt(os.path.join(tiny_run, name + "_auto"))
  identify = decoding.LanguageIdentifier.for_model(model, tokenizer, ["en", "ru"], lm_dir,
                                                   lm.DEFAULT_LID_LM_WEIGHT)
  for utt_id, row in rows.items():
    assert row["decoded_lang"] == ["en", "ru"][identify(posteriors[utt_id])]
    assert set(row["hyp"]) <= set(tokenizer.lang_chars[row["decoded_lang"]]) | {" ", UNK_SURFACE}
  lid = auto["lid"]
  assert lid["num_utterances"] == len(rows) == 6 and auto["meta"]["lid"] == "ctc_char_lm"
  assert lid["accuracy"] == pytest.approx(
      np.mean([r["decoded_lang"] == "en" for r in rows.values()]))
  assert set(lid["by_group"]) == {"seen", "unseen"}
  assert sum(g["num_utterances"] for g in lid["by_group"].values()) == 6


def test_evaluate_a_manifest_end_to_end(tiny_run, tmp_path):
  clips = tmp_path / "clips"
  clips.mkdir()
  rows = [("a.wav", "left right", "en", "s1", "noisy"),
          ("b.flac", "привет мир", "ru", "s2", "quiet"),
          ("c.wav", "rear side", "en", "s1", "quiet")]
  for k, (name, *_rest) in enumerate(rows):
    _tone(clips / name, 1.0 + 0.4 * k, 300 + 100 * k)  # one bucket, as above
  (clips / "broken.wav").write_bytes(b"RIFF0000")
  manifest = tmp_path / "colleague test.tsv"
  manifest.write_text("path\ttext\tlang\tspeaker\troom\n" + "".join(
      f"clips/{n}\t{t}\t{l}\t{s}\t{r}\n" for n, t, l, s, r in rows + [
          ("broken.wav", "front", "en", "s3", "quiet")]), encoding="utf-8")
  results = evaluate.run(tiny_run, "test", n_boot=20, manifest=str(manifest))
  out = os.path.join(tiny_run, "eval_on_manifest-colleague_test")
  assert results["all"]["utts"] == 3 and list(results["meta"]["skipped"].values()) == [1]
  assert next(iter(results["meta"]["skipped"])).startswith("audio_")  # the broken wav
  assert sorted(results["languages"]) == ["en", "ru"]
  analysis = json.load(open(os.path.join(out, "errors.json"), encoding="utf-8"))
  assert {k: v["utts"] for k, v in analysis["breakdowns"]["room"].items()} == {"noisy": 1,
                                                                               "quiet": 2}
  assert sorted(os.listdir(clips)) == ["a.wav", "b.flac", "broken.wav", "c.wav"]  # untouched
  # The beam decoders score the same set into their own folder.
  beam = evaluate.run(tiny_run, "test", n_boot=0, manifest=str(manifest), decoder="beam", beam=4)
  assert beam["meta"]["decoder"] == "beam" and beam["all"]["utts"] == 3
  assert os.path.exists(os.path.join(out + "_beam", "errors.json"))
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps({"path": "clips/a.wav", "text": "hallo", "lang": "de"}) + "\n")
  with pytest.raises(ValueError, match=r"does not know the language\(s\) \['de'\]"):
    evaluate.run(tiny_run, "test", manifest=str(bad))
