"""Per-language CER of pretrained vs from-scratch fine-tuning, with a paired bootstrap.

  python papers/hubert_lowres/compare.py --runs RUNS_DIR --split test --out README_table.md

Reads `<RUNS_DIR>/<init>_<track>/eval_<split>/per_utt.tsv` for init in {pretrained, scratch}
and track in {10min, 1h}, re-scores the same utterances (mlasr.metrics, so CER conventions
match the evaluator) and writes a Markdown table and `comparison.json`: per language and
track, CER with 95% bootstrap CI for both systems and the paired bootstrap (Bisani & Ney 2004)
probability that pretraining is better.
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import os

from mlasr import metrics

TRACKS = ("10min", "1h")


def read_per_utt(path: str) -> dict[str, dict[str, tuple[str, str]]]:
  """lang -> utt_id -> (ref, hyp)."""
  out = collections.defaultdict(dict)
  with open(path, encoding="utf-8") as f:
    for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
      out[row["lang"]][row["utt_id"]] = (row["ref"], row["hyp"])
  return out


def compare(runs: str, split: str, n_boot: int = 1000) -> dict:
  results = {}
  for track in TRACKS:
    paths = {init: os.path.join(runs, f"{init}_{track}", f"eval_{split}", "per_utt.tsv")
             for init in ("pretrained", "scratch")}
    if missing := [p for p in paths.values() if not os.path.exists(p)]:
      print(f"track {track}: not compared, missing {missing}")
      continue
    systems = {init: read_per_utt(path) for init, path in paths.items()}
    for lang in sorted(systems["pretrained"]):
      ids = sorted(systems["pretrained"][lang])
      refs = [systems["pretrained"][lang][u][0] for u in ids]
      counts = {init: metrics.char_edits(refs, [systems[init][lang][u][1] for u in ids])
                for init in systems}
      paired = metrics.paired_bootstrap(counts["pretrained"], counts["scratch"], n_boot=n_boot)
      results.setdefault(track, {})[lang] = dict(
          utts=len(ids), paired=paired,
          **{init: dict(cer=metrics.corpus_error_rate(c),
                        ci=list(metrics.bootstrap_ci(c, n_boot=n_boot)))
             for init, c in counts.items()})
  return results


def to_markdown(results: dict) -> str:
  lines = ["| track | lang | utts | scratch CER % [95% CI] | pretrained CER % [95% CI] | "
           "Δ (pre − scratch) [95% CI] | P(pretrained better) |",
           "|---|---|---:|---|---|---|---:|"]
  pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
  for track, langs in results.items():
    for lang, r in langs.items():
      s, p, d = r["scratch"], r["pretrained"], r["paired"]
      lines.append(f"| {track} | {lang} | {r['utts']} | {pct(s['cer'])} [{pct(s['ci'][0])}, "
                   f"{pct(s['ci'][1])}] | {pct(p['cer'])} [{pct(p['ci'][0])}, {pct(p['ci'][1])}] "
                   f"| {pct(d['diff'])} [{pct(d['ci_low'])}, {pct(d['ci_high'])}] | "
                   f"{d['prob_a_better']:.3f} |")
    macro = {init: sum(r[init]["cer"] for r in langs.values()) / len(langs)
             for init in ("scratch", "pretrained")}
    lines.append(f"| {track} | **macro** | | **{pct(macro['scratch'])}** | "
                 f"**{pct(macro['pretrained'])}** | | |")
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--runs", required=True)
  parser.add_argument("--split", default="test")
  parser.add_argument("--n_boot", type=int, default=1000)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  results = compare(args.runs, args.split, args.n_boot)
  table = to_markdown(results)
  print(table)
  with open(os.path.join(args.runs, "comparison.json"), "w") as f:
    json.dump(results, f, indent=2)
  if args.out:
    with open(args.out, "w") as f:
      f.write(table)


if __name__ == "__main__":
  main()
