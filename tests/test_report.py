"""Tests for mlasr.evaluators.report, including counts checked by the real NIST sclite."""

import os
import re
import shutil
import subprocess
import urllib.parse

import numpy as np
import pytest

from mlasr import metrics
from mlasr.data import text
from mlasr.evaluators import report

# Raw (ref, hyp) pairs with typical ASR errors; both sides are normalized as evaluate.py does.
PAIRS = {
    "ru": [("Съешь же ещё этих мягких французских булок, да выпей чаю.",
            "съешь же еще этих мягких французских булок да выпей чай"),
           ("Привет, мир!", "привет мир"),
           ("Ёлка стоит в углу комнаты.", "ёлка стоит углу комнаты и"),
           ("Не удалось открыть файл.", "не удалось открыт файл"),
           ("Москва не сразу строилась.", "москва не сразу строилась")],
    "hi": [("भारत एक विशाल देश है।", "भारत एक विशाल देस है"),
           ("क्या आप मेरी मदद कर सकते हैं?", "क्या आप मेरी मदत कर सकते"),
           ("यहाँ क़लम ज़्यादा है॥", "यहां कलम ज्यादा है"),
           ("मुझे हिंदी बोलना अच्छा लगता है।", "मुझे हिंदी बोलना बहुत अच्छा लगता है"),
           ("कृपया दस्तावेज़ को सहेजें।", "")],
    "cs": [("Příliš žluťoučký kůň úpěl ďábelské ódy.", "příliš žlutoučký kůň úpěl ďábelské ódy"),
           ("Dobrý den, jak se máte?", "dobrý den jak se mate"),
           ("Řeřicha roste na zahrádce.", "řeřicha roste na zahrádce"),
           ("", "hm")],
    "fi": [("Hyvää päivää! Mitä kuuluu?", "hyvää päivää mitä kuuluu"),
           ("Älä unohda tallentaa asiakirjaa.", "älä unohda tallenta asia kirjaa"),
           ("Öisin järvellä on hiljaista.", "öisin järvellä on hiljaista")],
}
GROUPS = ("seen", "unseen")


def _utts():
  utts = []
  for lang, pairs in PAIRS.items():
    for k, (ref, hyp) in enumerate(pairs):
      # Ids exercise the escaping: spaces, parentheses, '%', non-ASCII, VoxPopuli-style colons.
      utt_id = {0: f"common_voice_{lang}_{k}", 1: f"2018-0900-PLENARY-{lang}_21:18:11_{k}",
                2: f"{lang}_spk ({k}) 100%", 3: f"{lang}_ünï_{k}"}.get(k, f"{lang}-{k}")
      utts.append({"utt_id": utt_id, "lang": lang, "ref": text.normalize(ref, lang),
                   "hyp": text.normalize(hyp, lang), "seconds": 2.5 + k,
                   "group": GROUPS[k % 2]})
  return utts


@pytest.fixture(scope="module")
def written(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("report"))
  utts = _utts()
  results = report.build_results(utts, n_boot=200, seed=0, meta={"name": "unit test"})
  paths = report.write_report(results, out, utts)
  return utts, results, paths


def test_results_structure_and_json(written):
  utts, results, paths = written
  loaded = report.read_results(paths[report.RESULTS_JSON])
  assert sorted(loaded["languages"]) == sorted(PAIRS)
  assert sorted(loaded["groups"]) == list(GROUPS)
  hi = loaded["languages"]["hi"]
  refs = [u["ref"] for u in utts if u["lang"] == "hi"]
  hyps = [u["hyp"] for u in utts if u["lang"] == "hi"]
  assert hi["cer"]["rate"] == pytest.approx(
      metrics.corpus_error_rate(metrics.char_edits(refs, hyps)))
  assert hi["utts"] == 5 and hi["hours"] == pytest.approx(sum(2.5 + k for k in range(5)) / 3600)
  for row in list(loaded["languages"].values()) + list(loaded["groups"].values()):
    for m in ("cer", "wer"):
      s = row[m]
      assert s["n"] == s["sub"] + s["del"] + s["hits"]
      assert s["ci"][0] <= s["rate"] <= s["ci"][1]
  per_lang = [loaded["languages"][l]["cer"]["rate"] for l in PAIRS]
  assert loaded["macro"]["cer"]["rate"] == pytest.approx(np.mean(per_lang))
  assert loaded["all"]["utts"] == len(utts)
  pooled = sum(r["cer"]["n"] for r in loaded["languages"].values())
  assert loaded["all"]["cer"]["n"] == pooled
  assert sum(r["utts"] for r in loaded["groups"].values()) == len(utts)


def test_markdown_table(written):
  _, results, paths = written
  with open(paths[report.RESULTS_MD], encoding="utf-8") as f:
    md = f.read()
  rows = [l for l in md.splitlines() if l.startswith("| ")]
  # header + 4 languages + 2 groups + macro + all
  assert len(rows) == 1 + len(PAIRS) + len(GROUPS) + 2
  assert all(l.count("|") == rows[0].count("|") for l in rows)
  ru = next(l for l in rows if l.startswith("| ru |"))
  assert f"{100 * results['languages']['ru']['cer']['rate']:.2f}" in ru


def test_png_is_valid_image(written):
  from matplotlib import image

  _, _, paths = written
  with open(paths[report.CER_PNG], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  img = image.imread(paths[report.CER_PNG])
  assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
  assert img.std() > 0  # not blank


def test_undefined_rates_write_null(tmp_path):
  utts = [{"utt_id": "u1", "lang": "en", "ref": "", "hyp": "x"}]
  paths = report.write_report(report.build_results(utts, n_boot=10), str(tmp_path), utts)
  loaded = report.read_results(paths[report.RESULTS_JSON])
  assert loaded["languages"]["en"]["wer"]["rate"] is None
  assert loaded["languages"]["en"]["wer"]["defined"] is False
  assert os.path.getsize(paths[report.CER_PNG]) > 0


def test_trn_files_and_id_escaping(written):
  utts, _, paths = written
  with open(paths["hyp.trn"], encoding="utf-8") as f:
    lines = f.read().splitlines()
  assert len(lines) == len(utts)
  for line, u in zip(lines, utts):
    m = re.fullmatch(r"(.*) \((\S+)\)", line)
    assert m and m.group(1).split() == u["hyp"].split()
    assert urllib.parse.unquote(m.group(2)) == u["utt_id"]
    assert m.group(2).isascii() and "(" not in m.group(2)
  with open(paths["ref.char.trn"], encoding="utf-8") as f:
    first = f.readline()
  assert first.startswith("с ъ е ш ь <space> ж е")


def test_trn_duplicate_ids_across_languages(tmp_path):
  utts = [{"utt_id": "1", "lang": "en", "ref": "a", "hyp": "a"},
          {"utt_id": "1", "lang": "ru", "ref": "б", "hyp": "б"}]
  paths = report.write_trn(utts, str(tmp_path))
  with open(paths["ref.trn"], encoding="utf-8") as f:
    assert f.read() == "a (en:1)\nб (ru:1)\n"
  with pytest.raises(ValueError, match="more than once"):
    report.write_trn(utts + utts[:1], str(tmp_path))


def _sclite():
  for cmd in (["sclite"], ["/usr/lib/sctk/bin/sclite"]):
    if shutil.which(cmd[0]):
      return cmd
  if shutil.which("sctk"):
    return ["sctk", "sclite"]
  return None


def _run_sclite(ref, hyp, out_dir, char_mode=False):
  cmd = _sclite() + ["-r", ref, "trn", "-h", hyp, "trn", "-i", "rm", "-e", "utf-8", "-s",
                     "-O", out_dir, "-o", "pralign", "stdout"] + (["-c"] if char_mode else [])
  out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
  scores = dict(re.findall(r"^id: \((\S+)\)\nScores: \(#C #S #D #I\) (\d+ \d+ \d+ \d+)", out,
                           re.M))
  return {k: tuple(int(x) for x in v.split()) for k, v in scores.items()}


@pytest.mark.skipif(_sclite() is None, reason="NIST sclite (Debian package sctk) is not "
                    "installed; `make` installs it (apt-get install sctk).")
@pytest.mark.parametrize("mode", ["word", "char", "char_nospace"])
def test_counts_match_real_sclite(written, tmp_path, mode):
  utts, _, paths = written
  refs, hyps = [u["ref"] for u in utts], [u["hyp"] for u in utts]
  if mode == "word":
    ours = metrics.word_edits(refs, hyps)
    theirs = _run_sclite(paths["ref.trn"], paths["hyp.trn"], str(tmp_path))
  elif mode == "char":  # mlasr's CER: <space> tokens, sclite word mode
    ours = metrics.char_edits(refs, hyps)
    theirs = _run_sclite(paths["ref.char.trn"], paths["hyp.char.trn"], str(tmp_path))
  else:  # sclite's own character mode drops spaces
    ours = metrics.char_edits(refs, hyps, include_spaces=False)
    theirs = _run_sclite(paths["ref.trn"], paths["hyp.trn"], str(tmp_path), char_mode=True)
  assert len(theirs) == len(utts)
  total_n = 0
  for i, u in enumerate(utts):
    c, s, d, ins = theirs[report.sclite_id(u["utt_id"])]  # -s keeps id case
    assert (c, s, d, ins) == (ours.hits[i], ours.sub[i], ours.dele[i], ours.ins[i]), u
    total_n += c + s + d
  assert total_n == ours.ref_len.sum()


@pytest.mark.skipif(_sclite() is None, reason="NIST sclite (Debian package sctk) is not "
                    "installed; `make` installs it (apt-get install sctk).")
def test_known_sclite_differences(tmp_path):
  """Documents where sclite's costs (sub 4, ins/del 3) and jiwer's unit costs disagree."""
  utts = [{"utt_id": "u-1", "lang": "en", "ref": "a b", "hyp": "b c"},
          {"utt_id": "u-2", "lang": "en", "ref": "x1 x2 x3 a b", "hyp": "a b y1 y2 y3"}]
  paths = report.write_trn(utts, str(tmp_path))
  theirs = _run_sclite(paths["ref.trn"], paths["hyp.trn"], str(tmp_path))
  ours = metrics.word_edits([u["ref"] for u in utts], [u["hyp"] for u in utts])
  # Tie: same total, different split (jiwer 2 S; sclite 1 D + 1 I).
  assert (ours.sub[0], ours.dele[0], ours.ins[0]) == (2, 0, 0)
  assert theirs["u-1"] == (1, 0, 1, 1)
  # Shifted match: sclite prefers 2 hits + 6 D/I over Levenshtein's 5 substitutions.
  assert ours.errors[1] == 5 and sum(theirs["u-2"][1:]) == 6


def _with_groups(utts, meta):
  results = report.build_results(utts, n_boot=50, seed=0, meta=meta)
  results["by_group"] = {g: report.build_results([u for u in utts if u["group"] == g], n_boot=50)
                         for g in GROUPS}
  return results


def test_decoder_comparison_table(tmp_path):
  """greedy and LM rows side by side, the CERs those results hold (checked with jiwer)."""
  import jiwer  # pylint: disable=import-outside-toplevel
  from mlasr.evaluators import compare  # pylint: disable=import-outside-toplevel
  utts = [u for u in _utts() if u["lang"] != "cs"]  # jiwer rejects an empty reference
  fixed = [dict(u, hyp=u["ref"]) if u["lang"] == "hi" else u for u in utts]  # "the LM" fixes hi
  for folder, rows_, meta in (("eval_test", utts, dict(decoder="greedy", beam=16)),
                              ("eval_test_beam_lm_char", fixed,
                               dict(decoder="beam_lm", lm_kind="char", beam=16)),
                              ("eval_dev", fixed, dict(decoder="greedy"))):
    report.write_report(_with_groups(rows_, meta), str(tmp_path / folder))
  markdown = compare.write(str(tmp_path), "test")
  table = compare.rows(compare.collect(str(tmp_path), "test"))
  assert [(r["group"], r["decoder"]) for r in table] == [
      ("seen", "greedy"), ("seen", "beam 16 + char LM"), ("unseen", "greedy"),
      ("unseen", "beam 16 + char LM"), ("all", "greedy"), ("all", "beam 16 + char LM")]
  for r in table:
    source = utts if r["decoder"] == "greedy" else fixed
    for lang, cer in r["cer"].items():
      pick = [u for u in source if u["lang"] == lang and r["group"] in ("all", u["group"])]
      expected = jiwer.cer([u["ref"] for u in pick], [u["hyp"] for u in pick])
      assert cer == pytest.approx(expected, abs=1e-9), (r["group"], r["decoder"], lang)
  assert table[-1]["cer"]["hi"] == 0.0 and table[-2]["cer"]["hi"] > 0.0
  assert "| seen voices | greedy |" in markdown
  assert os.path.exists(tmp_path / "compare_test.json")  # eval_dev/ was not mixed in
  # An identified-language run joins the table under its own name; a forced language does not.
  report.write_report(_with_groups(utts, dict(decoder="greedy", adapter_lang="auto")),
                      str(tmp_path / "eval_test_auto"))
  report.write_report(_with_groups(utts, dict(decoder="greedy", adapter_lang="en")),
                      str(tmp_path / "eval_test_en"))
  names = {r["decoder"] for r in compare.rows(compare.collect(str(tmp_path), "test"))}
  assert names == {"greedy", "beam 16 + char LM", "greedy, language identified"}
  with pytest.raises(FileNotFoundError, match="mlasr.evaluate first"):
    compare.collect(str(tmp_path / "eval_dev"), "test")
