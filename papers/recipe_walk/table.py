"""The recipe-walk table: one row per run, dev CER per language and macro, the last training
loss, audio seen and wall time, read from each run's metrics.jsonl.

  python papers/recipe_walk/table.py RUNS/probe_r0 RUNS/probe_r1 ... [--out table.md]
"""
from __future__ import annotations

import argparse
import json
import os

from mlasr.evaluators import curves


def read_run(workdir: str) -> dict:
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  train = curves.train_log(workdir)
  dev = [r for r in rows if "dev_cer/macro" in r]
  if not train or not dev:
    return {}
  audio_hours = curves.progress_at(train, train[-1]["step"])["audio_hours"]
  wall = sum((r["step"] - p["step"]) / max(r.get("steps_per_second", 1e-9), 1e-9)
             for p, r in zip([{"step": 0}] + train[:-1], train))
  last = dev[-1]
  langs = {k.split("/", 1)[1]: v for k, v in last.items()
           if k.startswith("dev_cer/") and k != "dev_cer/macro"}
  return dict(step=train[-1]["step"], loss=train[-1]["loss"], macro=last["dev_cer/macro"],
              langs=langs, audio_hours=audio_hours, train_minutes=wall / 60)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("runs", nargs="+")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  runs = {os.path.basename(r.rstrip("/")): read_run(r) for r in args.runs}
  langs = sorted({l for r in runs.values() for l in r.get("langs", {})})
  lines = ["| run | steps | audio seen (h) | train min | last loss | " +
           " | ".join(langs) + " | **dev macro CER** |",
           "|---" * (6 + len(langs)) + "|"]
  for name, r in runs.items():
    if not r:
      lines.append(f"| {name} | (not finished) |")
      continue
    cells = " | ".join(f"{100 * r['langs'].get(l, float('nan')):.1f}" for l in langs)
    lines.append(f"| {name} | {r['step']} | {r['audio_hours']:.1f} | {r['train_minutes']:.1f} "
                 f"| {r['loss']:.2f} | {cells} | **{100 * r['macro']:.1f}** |")
  text = "\n".join(lines)
  print(text)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
