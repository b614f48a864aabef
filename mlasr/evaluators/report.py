"""Scored-results structure and the report writers (JSON, Markdown, PNG, NIST trn).

Input: utterance records, one mapping per scored utterance (plain dicts; evaluate.py fills them):
  {"utt_id": str, "lang": str, "ref": str, "hyp": str,   # ref/hyp: normalize()d text
   "seconds": float (optional, audio duration), "group": str (optional, e.g. "seen"/"unseen")}

`build_results(utts, n_boot, seed, meta)` scores them (mlasr.metrics) into the results
structure, a JSON-ready dict:
  {"meta": {...caller's...}, "n_boot": int, "seed": int, "confidence": 0.95,
   "cer_units": "code points incl. spaces between words",
   "languages": {lang: Row},            # sorted by language code
   "groups": {group: Row},              # utterances of a group pooled over languages
   "macro": {"cer": Macro, "wer": Macro, "langs": [...], "utts": int, "hours": float},
   "all": Row}                          # every utterance pooled (micro average)
  Row   = {"utts": int, "hours": float, "cer": Summary, "wer": Summary}
  Summary = mlasr.metrics.summarize(): {"rate", "ci": [lo, hi], "confidence", "sub", "del",
            "ins", "hits", "n", "utts", "defined"}
  Macro = {"rate": mean of per-language rates, "ci": [lo, hi] (stratified bootstrap)}
Rates are fractions (0.123), shown as percentages in Markdown and the plot; undefined rates
(no reference units) are nan in Python and null in results.json.

`write_report(results, out_dir, utts)` writes results.json, results.md, cer_by_lang.png and,
when `utts` is given, per_utt.tsv and the NIST trn files for sclite:
  ref.trn, hyp.trn             words, `text (utt_id)` one line per utterance;
  ref.char.trn, hyp.char.trn   characters as tokens, the space as `<space>` (ESPnet's
                               convention): `sclite ... -i rm -e utf-8 -s` in word mode on these
                               gives mlasr's CER (sclite's own `-c` mode drops spaces).
  Score with: sclite -r ref.trn trn -h hyp.trn trn -i rm -e utf-8 -s -o sum pralign stdout
utt_id escaping in trn files: every character outside [A-Za-z0-9-_.:+~] (whitespace, the
parentheses that delimit the id, '%', non-ASCII) is percent-encoded as UTF-8 (`sclite_id`,
inverse `urllib.parse.unquote`). If two languages share an utt_id, every id is written as
`<lang>:<utt_id>` instead. Without `-s` sclite folds case in ids (ids must then not differ
only by case); `-i rm` takes the part before the first '-'/'_' as the speaker and prints an
error (but still scores) for ids with neither, which Common Voice/VoxPopuli ids never are.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlasr import fileio, metrics

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
CER_PNG = "cer_by_lang.png"
_SAFE_ID_CHARS = "-_.:+~"


def sclite_id(utt_id: str) -> str:
  """Percent-encodes `utt_id` so it is one sclite-safe token (reversible with unquote)."""
  return urllib.parse.quote(utt_id, safe=_SAFE_ID_CHARS)


def _row(word: metrics.EditCounts, char: metrics.EditCounts, seconds: float, n_boot: int,
         seed: int, confidence: float) -> dict[str, Any]:
  return {"utts": len(word), "hours": seconds / 3600.0,
          "cer": metrics.summarize(char, n_boot, seed, confidence),
          "wer": metrics.summarize(word, n_boot, seed, confidence)}


def build_results(utts: Sequence[Mapping[str, Any]], n_boot: int = 1000, seed: int = 0,
                  meta: Mapping[str, Any] | None = None,
                  confidence: float = 0.95) -> dict[str, Any]:
  """Scores utterance records into the results structure (see the module docstring)."""
  utts = list(utts)
  refs, hyps = [u["ref"] for u in utts], [u["hyp"] for u in utts]
  word, char = metrics.word_edits(refs, hyps), metrics.char_edits(refs, hyps)
  seconds = np.array([float(u.get("seconds") or 0.0) for u in utts])
  by_lang, by_group = collections.defaultdict(list), collections.defaultdict(list)
  for i, u in enumerate(utts):
    by_lang[u["lang"]].append(i)
    if u.get("group"):
      by_group[u["group"]].append(i)

  def row(index: Sequence[int]) -> dict[str, Any]:
    return _row(word.subset(index), char.subset(index), float(seconds[list(index)].sum()),
                n_boot, seed, confidence)

  langs = sorted(by_lang)
  macro = {"langs": langs, "utts": len(utts), "hours": float(seconds.sum()) / 3600.0}
  for name, counts in (("cer", char), ("wer", word)):
    per_lang = [counts.subset(by_lang[l]) for l in langs]
    ci = (metrics.macro_bootstrap_ci(per_lang, n_boot, seed, confidence) if n_boot
          else (float("nan"),) * 2)
    macro[name] = {"rate": metrics.macro_rate(per_lang), "ci": list(ci)}
  return {"meta": dict(meta or {}), "n_boot": n_boot, "seed": seed, "confidence": confidence,
          "cer_units": "code points incl. spaces between words",
          "languages": {l: row(by_lang[l]) for l in langs},
          "groups": {g: row(by_group[g]) for g in sorted(by_group)},
          "macro": macro, "all": row(range(len(utts)))}


def jsonable(obj: Any) -> Any:
  """`obj` with numpy scalars as Python numbers and NaN/inf as None (strict JSON)."""
  if isinstance(obj, float):
    return None if math.isnan(obj) or math.isinf(obj) else obj
  if isinstance(obj, (np.floating, np.integer)):
    return jsonable(obj.item())
  if isinstance(obj, Mapping):
    return {str(k): jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [jsonable(v) for v in obj]
  return obj


def _pct(x: Any) -> str:
  return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def _ci(ci: Sequence[Any]) -> str:
  return f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci and ci[0] is not None else "n/a"


def _sdin(s: Mapping[str, Any]) -> str:
  return f"{s['sub']}/{s['del']}/{s['ins']}/{s['n']}"


def to_markdown(results: Mapping[str, Any]) -> str:
  """The results table in Markdown (percentages, 95% bootstrap CIs, S/D/I/N counts)."""
  conf = int(round(100 * results.get("confidence", 0.95)))
  lines = [f"| | utts | hours | CER % | {conf}% CI | WER % | {conf}% CI | "
           "chars S/D/I/N | words S/D/I/N |", "|---|---:|---:|---:|---|---:|---|---|---|"]

  def add(name: str, r: Mapping[str, Any]) -> None:
    c, w = r["cer"], r["wer"]
    lines.append(f"| {name} | {r['utts']} | {r['hours']:.2f} | {_pct(c['rate'])} | "
                 f"{_ci(c['ci'])} | {_pct(w['rate'])} | {_ci(w['ci'])} | {_sdin(c)} | "
                 f"{_sdin(w)} |")

  for lang, r in results["languages"].items():
    add(lang, r)
  for group, r in results.get("groups", {}).items():
    add(f"group: {group}", r)
  m = results["macro"]
  lines.append(f"| **macro avg ({len(m['langs'])} langs)** | {m['utts']} | {m['hours']:.2f} | "
               f"**{_pct(m['cer']['rate'])}** | {_ci(m['cer']['ci'])} | {_pct(m['wer']['rate'])} "
               f"| {_ci(m['wer']['ci'])} | | |")
  add("all (pooled)", results["all"])
  notes = [f"CER counts {results.get('cer_units', 'characters')}; rates are (S+D+I)/N over "
           f"the set; CIs: bootstrap over utterances, n={results.get('n_boot')}, "
           f"seed={results.get('seed')}; macro = unweighted mean over languages "
           "(stratified bootstrap CI)."]
  title = results.get("meta", {}).get("name")
  head = [f"# {title}", ""] if title else []
  # Per-language tables restricted to each speaker group (e.g. seen vs unseen voices).
  for group, group_results in results.get("by_group", {}).items():
    notes += ["", f"### Speakers: {group}", "", to_markdown(group_results).rstrip("\n")]
  return "\n".join(head + lines + [""] + notes) + "\n"


def plot_cer(results: Mapping[str, Any], path: str) -> None:
  """Bar chart of per-language CER (%) with CI whiskers, plus the macro average bar."""
  # Figure + Agg canvas directly: no pyplot global state, no backend switch for the caller.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  names, rates, lows, highs, colors = [], [], [], [], []
  rows = [(l, r["cer"]) for l, r in results["languages"].items()]
  rows.append(("macro", results["macro"]["cer"]))
  for name, s in rows:
    rate = s["rate"]
    rate = float("nan") if rate is None else 100 * rate
    lo, hi = ((float("nan") if v is None else 100 * v) for v in (s["ci"] or [None, None]))
    names.append(name)
    rates.append(rate)
    lows.append(max(rate - lo, 0.0) if not math.isnan(lo) else 0.0)
    highs.append(max(hi - rate, 0.0) if not math.isnan(hi) else 0.0)
    colors.append("tab:gray" if name == "macro" else "tab:blue")
  fig = Figure(figsize=(max(4.0, 0.6 * len(names) + 1.5), 3.5), dpi=120)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  x = np.arange(len(names))
  ax.bar(x, np.nan_to_num(rates), color=colors, yerr=[lows, highs], capsize=3)
  ax.set_xticks(x, names)
  conf = int(round(100 * results.get("confidence", 0.95)))
  ax.set_ylabel(f"CER % ({conf}% CI)")
  ax.set_title(results.get("meta", {}).get("name", "CER by language"))
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  with fileio.open(path, "wb") as f:  # a file object: `path` may be gs:// (matplotlib: local)
    fig.savefig(f, format="png")


def write_trn(utts: Sequence[Mapping[str, Any]], out_dir: str) -> dict[str, str]:
  """Writes ref/hyp word and char trn files; returns {name: path}."""
  fileio.makedirs(out_dir)
  ids = [u["utt_id"] for u in utts]
  if len(set(ids)) != len(ids):
    if len({(u["lang"], u["utt_id"]) for u in utts}) != len(ids):
      dup = collections.Counter(ids).most_common(1)[0][0]
      raise ValueError(f"utt_id {dup!r} occurs more than once in one language; trn files need "
                       "unique ids per utterance.")
    logging.warning("utt_ids repeat across languages: writing trn ids as <lang>:<utt_id>.")
    ids = [f"{u['lang']}:{u['utt_id']}" for u in utts]
  ids = [sclite_id(i) for i in ids]
  paths = {}
  for side in ("ref", "hyp"):
    for kind in ("", ".char"):
      path = fileio.join(out_dir, f"{side}{kind}.trn")
      with fileio.open(path, "w", encoding="utf-8") as f:
        for utt_id, u in zip(ids, utts):
          words = u[side].split()
          if kind:
            words = ["<space>" if ch == " " else ch for ch in " ".join(words)]
          f.write(f"{' '.join(words)} ({utt_id})\n")
      paths[f"{side}{kind}.trn"] = path
  return paths


def write_per_utt(utts: Sequence[Mapping[str, Any]], path: str) -> None:
  """Per-utterance TSV (utt_id, lang, the language it was decoded in, group, char/word errors
  and N, ref, hyp) for analysis."""
  refs, hyps = [u["ref"] for u in utts], [u["hyp"] for u in utts]
  char, word = metrics.char_edits(refs, hyps), metrics.word_edits(refs, hyps)
  with fileio.open(path, "w", encoding="utf-8") as f:
    f.write("utt_id\tlang\tdecoded_lang\tgroup\tchar_errors\tchars\tword_errors\twords\tref\t"
            "hyp\n")
    for i, u in enumerate(utts):
      f.write(f"{u['utt_id']}\t{u['lang']}\t{u.get('decoded_lang', u['lang'])}\t"
              f"{u.get('group') or ''}\t{char.errors[i]}\t"
              f"{char.ref_len[i]}\t{word.errors[i]}\t{word.ref_len[i]}\t{u['ref']}\t{u['hyp']}\n")


def write_report(results: Mapping[str, Any], out_dir: str,
                 utts: Sequence[Mapping[str, Any]] | None = None) -> dict[str, str]:
  """Writes results.json, results.md, cer_by_lang.png (+ trn files, per_utt.tsv from `utts`).

  Returns {file name: path}.
  """
  fileio.makedirs(out_dir)
  paths = {RESULTS_JSON: fileio.join(out_dir, RESULTS_JSON),
           RESULTS_MD: fileio.join(out_dir, RESULTS_MD), CER_PNG: fileio.join(out_dir, CER_PNG)}
  clean = jsonable(results)
  with fileio.open(paths[RESULTS_JSON], "w", encoding="utf-8") as f:
    json.dump(clean, f, ensure_ascii=False, indent=1, allow_nan=False)
    f.write("\n")
  with fileio.open(paths[RESULTS_MD], "w", encoding="utf-8") as f:
    f.write(to_markdown(clean))
  plot_cer(clean, paths[CER_PNG])
  if utts is not None:
    paths.update(write_trn(utts, out_dir))
    paths["per_utt.tsv"] = fileio.join(out_dir, "per_utt.tsv")
    write_per_utt(utts, paths["per_utt.tsv"])
  return paths


def read_results(path: str) -> dict[str, Any]:
  """Reads results.json (null rates stay None)."""
  with fileio.open(path, encoding="utf-8") as f:
    return json.load(f)
