"""Error analysis of a scored test set: where the errors are, and which characters they are.

`analyze(utts)` takes the utterance records of mlasr.evaluators.report (ref, hyp, lang,
seconds, group) plus, where the corpus states them, `u["attributes"]`: {name: value} such as
gender, age and accent (Common Voice / VoxPopuli TSV columns, mlasr.data.corpora), noise and
snr_db (the synthetic benchmark's clips.tsv) or any extra manifest column. It returns a
JSON-ready dict:

  {"breakdowns": {attribute: {value: Row}},   # language, speaker group, gender, age, accent,
                                              # noise, SNR band, length band, ...
   "characters": {lang: {"substitutions": [[ref_char, hyp_char, count], ...],
                         "deletions": [[char, count], ...], "insertions": [[char, count], ...],
                         "sub", "del", "ins": totals}},
   "worst": [{utt_id, lang, char_errors, chars, cer, ref, hyp}, ...],
   "unknown_chars": {lang: {"count", "chars": {char: count}, "ref_chars"}}  (when given)}
  Row = {"utts", "hours", "cer": {"rate", "sub", "del", "ins", "n"}, "wer": {...}}

Every utterance falls in exactly one value of each attribute (missing values are "(not
given)"), so each breakdown's S/D/I/N add up to the corpus totals. Common Voice's newer gender
values male_masculine / female_feminine are pooled with male / female. Character statistics read
the alignment the CER is counted on (jiwer.process_characters via metrics.char_alignment):
a substitution chunk of k characters is k pairs, aligned position by position.

`write(analysis, out_dir)` writes errors.json, errors.md and the plots cer_by_snr.png (when
the set has SNR bands) and cer_by_length.png.
"""
from __future__ import annotations

import collections
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlasr import fileio, metrics
from mlasr.evaluators import report

ERRORS_JSON = "errors.json"
ERRORS_MD = "errors.md"
SNR_PNG = "cer_by_snr.png"
LENGTH_PNG = "cer_by_length.png"
NOT_GIVEN = "(not given)"
CLEAN = "clean"
# Upper band edges; a value on an edge goes to the lower band (the benchmark's 5/10/15/20 dB
# land in "<= 5", "5-10", ...).
SNR_EDGES_DB = (5.0, 10.0, 15.0, 20.0)
LENGTH_EDGES_S = (2.0, 4.0, 8.0, 16.0)
# The space shows as a visible symbol in tables (a substitution "a -> ' '" reads badly).
SPACE = "␣"
# Common Voice writes male_masculine / female_feminine since 2023 (male / female before, and
# VoxPopuli): one row each, so a set pooling releases or corpora is not split in two.
_GENDER_ALIASES = {"male_masculine": "male", "female_feminine": "female"}


def _band(value: float, edges: Sequence[float], unit: str) -> str:
  lo = None
  for hi in edges:
    if value <= hi:
      return f"≤ {hi:g} {unit}" if lo is None else f"{lo:g}–{hi:g} {unit}"
    lo = hi
  return f"> {edges[-1]:g} {unit}"


def _band_order(edges: Sequence[float], unit: str) -> list[str]:
  """Band labels low to high (for tables and plots), as _band names them."""
  names = [f"≤ {edges[0]:g} {unit}"]
  names += [f"{lo:g}–{hi:g} {unit}" for lo, hi in zip(edges, edges[1:])]
  return names + [f"> {edges[-1]:g} {unit}"]


def snr_band(attributes: Mapping[str, Any]) -> str | None:
  """"clean", an SNR band, or None when the corpus says nothing about noise."""
  noise, snr = attributes.get("noise"), attributes.get("snr_db")
  if snr not in (None, ""):
    return _band(float(snr), SNR_EDGES_DB, "dB")
  if noise is None:
    return None
  return CLEAN if str(noise) in ("none", "", CLEAN) else NOT_GIVEN


def length_band(seconds: float) -> str:
  return _band(float(seconds), LENGTH_EDGES_S, "s")


def utterance_attributes(u: Mapping[str, Any]) -> dict[str, str | None]:
  """{attribute: value} of one utterance; None where this utterance states nothing."""
  attrs = dict(u.get("attributes") or {})
  out = {"language": u["lang"], "speaker group": u.get("group") or None}
  for name, value in attrs.items():
    if name == "snr_db":
      continue  # shown as its band
    out[name] = None if value in (None, "") else str(value)
  if out.get("gender"):
    out["gender"] = _GENDER_ALIASES.get(out["gender"], out["gender"])
  out["SNR band"] = snr_band(attrs)
  out["length"] = length_band(u["seconds"]) if u.get("seconds") else None
  return out


def _rate_row(char: metrics.EditCounts, word: metrics.EditCounts, seconds: float) -> dict:
  def counts(c: metrics.EditCounts) -> dict:
    return {"rate": metrics.corpus_error_rate(c), "sub": int(c.sub.sum()),
            "del": int(c.dele.sum()), "ins": int(c.ins.sum()), "n": int(c.ref_len.sum())}
  return {"utts": len(char), "hours": seconds / 3600.0, "cer": counts(char),
          "wer": counts(word)}


def _value_order(attribute: str, values: Sequence[str]) -> list[str]:
  """Bands in their natural order, other values alphabetically; "(not given)" last."""
  if attribute == "SNR band":
    order = [CLEAN] + _band_order(SNR_EDGES_DB, "dB")
  elif attribute == "length":
    order = _band_order(LENGTH_EDGES_S, "s")
  else:
    order = sorted(v for v in values if v != NOT_GIVEN)
  return [v for v in order if v in values] + ([NOT_GIVEN] if NOT_GIVEN in values else [])


def breakdowns(utts: Sequence[Mapping[str, Any]], char: metrics.EditCounts,
               word: metrics.EditCounts) -> dict[str, dict[str, dict]]:
  """{attribute: {value: Row}} for every attribute at least one utterance states."""
  per_utt = [utterance_attributes(u) for u in utts]
  names = list(dict.fromkeys(n for a in per_utt for n, v in a.items() if v is not None))
  seconds = np.array([float(u.get("seconds") or 0.0) for u in utts])
  out = {}
  for name in names:
    index = collections.defaultdict(list)
    for i, a in enumerate(per_utt):
      index[a.get(name) or NOT_GIVEN].append(i)
    out[name] = {v: _rate_row(char.subset(index[v]), word.subset(index[v]),
                              float(seconds[index[v]].sum()))
                 for v in _value_order(name, list(index))}
  return out


def _show(ch: str) -> str:
  return SPACE if ch == " " else ch


def character_errors(utts: Sequence[Mapping[str, Any]], top_k: int = 10) -> dict[str, dict]:
  """Per language: the most frequent substitution pairs, deleted and inserted characters."""
  by_lang = collections.defaultdict(list)
  for u in utts:
    by_lang[u["lang"]].append(u)
  out = {}
  for lang in sorted(by_lang):
    group = by_lang[lang]
    aligned = metrics.char_alignment([u["ref"] for u in group], [u["hyp"] for u in group])
    subs, dels, ins = collections.Counter(), collections.Counter(), collections.Counter()
    for ref, hyp, chunks in zip(aligned.references, aligned.hypotheses, aligned.alignments):
      for c in chunks:
        if c.type == "substitute":
          subs.update(zip(ref[c.ref_start_idx:c.ref_end_idx], hyp[c.hyp_start_idx:c.hyp_end_idx]))
        elif c.type == "delete":
          dels.update(ref[c.ref_start_idx:c.ref_end_idx])
        elif c.type == "insert":
          ins.update(hyp[c.hyp_start_idx:c.hyp_end_idx])
    out[lang] = {
        "substitutions": [[r, h, n] for (r, h), n in subs.most_common(top_k)],
        "deletions": [[ch, n] for ch, n in dels.most_common(top_k)],
        "insertions": [[ch, n] for ch, n in ins.most_common(top_k)],
        "sub": sum(subs.values()), "del": sum(dels.values()), "ins": sum(ins.values())}
  return out


def worst_utterances(utts: Sequence[Mapping[str, Any]], char: metrics.EditCounts,
                     k: int = 10) -> list[dict]:
  """The `k` utterances with the most character errors (what moves the corpus CER most);
  ties broken by the higher per-utterance CER, then by id for a stable order."""
  def cer(i: int) -> float:
    return char.errors[i] / char.ref_len[i] if char.ref_len[i] else math.inf
  order = sorted(range(len(utts)), key=lambda i: (-char.errors[i], -cer(i), utts[i]["utt_id"]))
  return [{"utt_id": utts[i]["utt_id"], "lang": utts[i]["lang"],
           "char_errors": int(char.errors[i]), "chars": int(char.ref_len[i]), "cer": cer(i),
           "ref": utts[i]["ref"], "hyp": utts[i]["hyp"]}
          for i in order[:k] if char.errors[i] > 0]


def analyze(utts: Sequence[Mapping[str, Any]], top_k: int = 10, worst_k: int = 10,
            unknown_chars: Mapping[str, Any] | None = None,
            meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """The analysis structure of the module docstring."""
  utts = list(utts)
  refs, hyps = [u["ref"] for u in utts], [u["hyp"] for u in utts]
  char, word = metrics.char_edits(refs, hyps), metrics.word_edits(refs, hyps)
  seconds = sum(float(u.get("seconds") or 0.0) for u in utts)
  out = {"meta": dict(meta or {}), "all": _rate_row(char, word, seconds),
         "breakdowns": breakdowns(utts, char, word),
         "characters": character_errors(utts, top_k), "worst": worst_utterances(utts, char,
                                                                                 worst_k)}
  if unknown_chars:
    out["unknown_chars"] = dict(unknown_chars)
  return out


# ------------------------------------------------------------------------------ writers


def _pct(x: Any) -> str:
  return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else \
      f"{100 * x:.2f}"


def _cell(text: str) -> str:
  """Text safe inside a Markdown table cell."""
  return text.replace("|", "\\|") if text else "∅"


def to_markdown(analysis: Mapping[str, Any]) -> str:
  lines = ["# Error analysis", ""]
  title = analysis.get("meta", {}).get("test_set")
  if title:
    lines += [f"Test set: `{title}`.", ""]
  a = analysis["all"]
  lines += [f"{a['utts']} utterances, {a['hours']:.2f} h: CER {_pct(a['cer']['rate'])} % "
            f"(S/D/I/N {a['cer']['sub']}/{a['cer']['del']}/{a['cer']['ins']}/"
            f"{a['cer']['n']}), WER {_pct(a['wer']['rate'])} %.", ""]
  for name, rows in analysis["breakdowns"].items():
    lines += [f"## By {name}", "", "| " + name + " | utts | hours | CER % | chars S/D/I/N | "
              "WER % |", "|---|---:|---:|---:|---|---:|"]
    for value, r in rows.items():
      c = r["cer"]
      lines.append(f"| {_cell(value)} | {r['utts']} | {r['hours']:.2f} | {_pct(c['rate'])} | "
                   f"{c['sub']}/{c['del']}/{c['ins']}/{c['n']} | {_pct(r['wer']['rate'])} |")
    lines.append("")
  for lang, ce in analysis["characters"].items():
    lines += [f"## Character errors: {lang}", "",
              f"{ce['sub']} substitutions, {ce['del']} deletions, {ce['ins']} insertions "
              f"({SPACE} is the space between words).", "",
              "| substitution ref → hyp | count | deleted | count | inserted | count |",
              "|---|---:|---|---:|---|---:|"]
    subs, dels, ins = ce["substitutions"], ce["deletions"], ce["insertions"]
    for k in range(max(len(subs), len(dels), len(ins))):
      s = (f"{_cell(_show(subs[k][0]))} → {_cell(_show(subs[k][1]))} | {subs[k][2]}"
           if k < len(subs) else " | ")
      d = f"{_cell(_show(dels[k][0]))} | {dels[k][1]}" if k < len(dels) else " | "
      i = f"{_cell(_show(ins[k][0]))} | {ins[k][1]}" if k < len(ins) else " | "
      lines.append(f"| {s} | {d} | {i} |")
    lines.append("")
  unknown = analysis.get("unknown_chars") or {}
  if any(u["count"] for u in unknown.values()):
    lines += ["## Characters the tokenizer does not know", "",
              "The model can never output these; each costs at least one error.", "",
              "| lang | unknown / reference chars | most frequent |", "|---|---|---|"]
    for lang, u in unknown.items():
      top = ", ".join(f"{_cell(_show(ch))} ×{n}" for ch, n in
                      sorted(u["chars"].items(), key=lambda x: -x[1])[:10])
      lines.append(f"| {lang} | {u['count']} / {u['ref_chars']} | {top} |")
    lines.append("")
  if analysis["worst"]:
    lines += ["## Worst utterances (most character errors)", "",
              "| utt_id | lang | errors / chars | reference | hypothesis |",
              "|---|---|---|---|---|"]
    for w in analysis["worst"]:
      lines.append(f"| {_cell(w['utt_id'])} | {w['lang']} | {w['char_errors']} / {w['chars']} "
                   f"| {_cell(w['ref'])} | {_cell(w['hyp'])} |")
    lines.append("")
  return "\n".join(lines)


def plot_breakdown(rows: Mapping[str, Mapping[str, Any]], path: str, title: str,
                   xlabel: str) -> None:
  """Bar chart of CER (%) per value of one breakdown, with utterance counts on the bars."""
  # Figure + Agg canvas as report.plot_cer: no pyplot state, no backend switch for the caller.
  from matplotlib.backends import backend_agg  # pylint: disable=import-outside-toplevel
  from matplotlib import figure  # pylint: disable=import-outside-toplevel
  names = list(rows)
  # An undefined rate (no reference characters) draws as an empty bar.
  rates = [100 * r if r is not None and math.isfinite(r) else 0.0
           for r in (rows[n]["cer"]["rate"] for n in names)]
  fig = figure.Figure(figsize=(max(4.0, 0.9 * len(names) + 1.5), 3.5), dpi=120)
  backend_agg.FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  x = np.arange(len(names))
  bars = ax.bar(x, rates, color="tab:blue")
  for bar, n in zip(bars, names):
    ax.annotate(f"n={rows[n]['utts']}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center", va="bottom", fontsize=7)
  ax.set_xticks(x, names)
  ax.set_xlabel(xlabel)
  ax.set_ylabel("CER %")
  ax.set_title(title)
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  with fileio.open(path, "wb") as f:  # a file object: `path` may be gs:// (matplotlib: local)
    fig.savefig(f, format="png")


def write(analysis: Mapping[str, Any], out_dir: str) -> dict[str, str]:
  """Writes errors.json, errors.md, cer_by_length.png and (with SNR bands) cer_by_snr.png."""
  fileio.makedirs(out_dir)
  paths = {ERRORS_JSON: fileio.join(out_dir, ERRORS_JSON),
           ERRORS_MD: fileio.join(out_dir, ERRORS_MD)}
  with fileio.open(paths[ERRORS_JSON], "w", encoding="utf-8") as f:
    json.dump(report.jsonable(analysis), f, ensure_ascii=False, indent=1, allow_nan=False)
    f.write("\n")
  with fileio.open(paths[ERRORS_MD], "w", encoding="utf-8") as f:
    f.write(to_markdown(analysis))
  b = analysis["breakdowns"]
  # A plot needs a real spread: one band alone (all clean, all short) is just the total.
  if len(b.get("SNR band", {})) > 1:
    paths[SNR_PNG] = fileio.join(out_dir, SNR_PNG)
    plot_breakdown(b["SNR band"], paths[SNR_PNG], "CER by SNR band", "added noise (SNR)")
  if b.get("length"):
    paths[LENGTH_PNG] = fileio.join(out_dir, LENGTH_PNG)
    plot_breakdown(b["length"], paths[LENGTH_PNG], "CER by utterance length", "duration")
  return paths


def count_unknown_chars(utts: Sequence[Mapping[str, Any]], tokenizer) -> dict[str, dict]:
  """Per language, the reference characters `tokenizer` maps to <unk> (never decodable)."""
  out = {}
  memo: dict[tuple[str, str], bool] = {}
  for u in utts:
    lang = u["lang"]
    entry = out.setdefault(lang, {"count": 0, "chars": collections.Counter(), "ref_chars": 0})
    entry["ref_chars"] += len(u["ref"])
    for ch in u["ref"]:
      if ch == " ":
        continue  # the word separator is never unknown
      key = (lang, ch)
      if key not in memo:
        memo[key] = tokenizer.unknown_chars(ch, lang) > 0
      if memo[key]:
        entry["count"] += 1
        entry["chars"][ch] += 1
  for entry in out.values():
    entry["chars"] = dict(entry["chars"].most_common())
  return out
