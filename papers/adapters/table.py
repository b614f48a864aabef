"""The papers/adapters table: per-language test CER [95% CI] of each system, trained
parameters per language, training time, LID accuracy and the cost of automatic language choice.

  python papers/adapters/table.py --runs RUNS --full HUBERT_RUNS/pretrained_1h --out table.md
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from mlasr import checkpoint, config_lib, optim
from mlasr.models import surgery

SYSTEMS = (  # (run, label)
    ("full", "full fine-tuning, shared char vocab"),
    ("shared_head", "frozen encoder, shared head (char), no adapters"),
    ("adapters_char", "frozen encoder + adapters, per-language char heads (MMS)"),
    ("adapters_spm", "frozen encoder + adapters, shared SentencePiece head + masks"),
    ("full_spm", "full fine-tuning, shared SentencePiece head + masks"),
)


LID_RUNS = ("lid", "lid_finetuned")


def train_seconds(workdir: str) -> int | None:
  """Wall time reproduce.sh recorded for the run, if it did."""
  path = os.path.join(workdir, "train_seconds")
  return int(open(path).read()) if os.path.exists(path) else None


def minutes(seconds: int | None) -> str:
  return "" if seconds is None else f"{seconds / 60:.1f} min"


def lid_description(workdir: str) -> str:
  model = config_lib.load_config(workdir).model
  layers = "weighted sum of layers" if model.layer_weights else f"layer {model.layer}"
  return (f"{'whole encoder' if model.train_encoder else 'head only (frozen encoder)'}; "
          f"{layers}, {model.pooling} pooling")


def trained_params(workdir: str, langs: list[str]) -> tuple[dict[str, int], int]:
  """({lang: parameters only that language trains}, parameters all languages share and train)."""
  config = config_lib.load_config(workdir)
  flat = surgery.flatten(checkpoint.read_params(workdir))
  rules = [tuple(r) for r in config.optim.freeze]
  frozen_for_good = [p for p, n in rules if n is None or n < 0]
  label = optim.labels_by_regex([(p, n) for p, n in rules])
  labels = surgery.flatten(label({k: 0 for k in flat}))  # flat dict: names are the keys
  trained = {k: np.size(v) for k, v in flat.items() if labels[k] not in frozen_for_good}
  own = {l: sum(n for k, n in trained.items() if f"/per_lang/{l}/" in k) for l in langs}
  shared = sum(n for k, n in trained.items() if "/per_lang/" not in k)
  return own, shared


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--runs", required=True)
  p.add_argument("--full", required=True, help="the full fine-tuning run (pretrained_1h)")
  p.add_argument("--split", default="test")
  p.add_argument("--out", default="")
  args = p.parse_args()
  dirs = {name: os.path.join(args.runs, name) for name, _ in SYSTEMS}
  dirs["full"] = args.full
  results = {}
  for name, d in dirs.items():
    path = os.path.join(d, f"eval_{args.split}", "results.json")
    if os.path.exists(path):
      results[name] = json.load(open(path))
    else:
      print(f"{name}: no {path}; left out of the table")
  langs = sorted(results["full"]["languages"])
  pct = lambda r: f"{100 * r['rate']:.1f} [{100 * r['ci'][0]:.1f}, {100 * r['ci'][1]:.1f}]"  # noqa: E731
  lines = ["| system | " + " | ".join(langs) + " | macro | trained params / language "
           "(+ shared) | train time |", "|---" * (len(langs) + 4) + "|"]
  summary = {}
  for name, label in SYSTEMS:
    if name not in results:
      lines.append(f"| {label} | " + " | ".join("not run" for _ in langs) + " | | | |")
      continue
    r = results[name]
    own, shared = trained_params(dirs[name], langs)
    seconds = train_seconds(dirs[name])
    per_lang = int(np.mean(list(own.values())))
    lines.append(f"| {label} | " + " | ".join(pct(r["languages"][l]["cer"]) for l in langs) +
                 f" | {pct(r['macro']['cer'])} | {per_lang:,} (+ {shared:,}) | "
                 f"{minutes(seconds)} |")
    summary[name] = dict(cer={l: r["languages"][l]["cer"]["rate"] for l in langs},
                         macro=r["macro"]["cer"]["rate"], params_per_lang=own,
                         params_shared=shared, train_seconds=seconds)
  auto_path = os.path.join(dirs["adapters_char"], f"eval_{args.split}_auto", "results.json")
  if os.path.exists(auto_path):
    auto = json.load(open(auto_path))
    lid_run = os.path.basename(auto["meta"].get("lid_workdir", "")) or "LID"
    lines.append(f"| adapters (MMS), language from {lid_run} | " +
                 " | ".join(pct(auto["languages"][l]["cer"]) for l in langs) +
                 f" | {pct(auto['macro']['cer'])} | | |")
    summary["auto"] = dict(macro=auto["macro"]["cer"]["rate"],
                           lid_accuracy=auto["lid"]["accuracy"])
  lines += ["", "| LID run | what trains | test accuracy | seen voices | unseen voices | "
            "train time |", "|---|---|---|---|---|---|"]
  for name in LID_RUNS:
    path = os.path.join(args.runs, name, f"eval_{args.split}", "lid.json")
    if not os.path.exists(path):
      continue
    lid = json.load(open(path))
    groups = lid.get("by_group", {})
    seconds = train_seconds(os.path.join(args.runs, name))
    lines.append(f"| {name} | {lid_description(os.path.join(args.runs, name))} | "
                 f"{100 * lid['accuracy']:.1f} % | " +
                 " | ".join(f"{100 * groups[g]['accuracy']:.1f} %" if g in groups else ""
                            for g in ("seen", "unseen")) +
                 f" | {minutes(seconds)} |")
    summary[name] = dict(accuracy=lid["accuracy"], train_seconds=seconds,
                         by_group={g: r["accuracy"] for g, r in groups.items()})
  table = "\n".join(lines) + "\n"
  print(table)
  with open(os.path.join(args.runs, "table.json"), "w") as f:
    json.dump(summary, f, indent=1)
  if args.out:
    with open(args.out, "w") as f:
      f.write(table)


if __name__ == "__main__":
  main()
