"""Decoding speed of a trained CTC run: utterances per second for greedy (on device), prefix
beam search without an LM, and beam search with the character and word LMs, on one split,
in one run, with each decoder's CER beside it.

  python -m benchmarks.decoding_speed --workdir RUN [--split dev] [--beam 16] [--out F.json]

The run needs its LMs (`python -m mlasr.lm --workdir RUN [--tune]`); without tuned weights
the LM rows use lm_weight 0.5 and word_bonus 1.0.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from mlasr import evaluate, metrics
from mlasr.data import inputs
from mlasr.evaluators import asr


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", required=True)
  p.add_argument("--split", default="dev")
  p.add_argument("--beam", type=int, default=16)
  p.add_argument("--out")
  args = p.parse_args()
  config, tok, model, _ = evaluate.restore_model(args.workdir)
  data = inputs.eval_data(config, args.split)
  log_probs_fn = evaluate.jitted_log_probs(config, model)
  asr.greedy_transcribe(log_probs_fn, data, tok)  # compile every shape first
  t0 = time.perf_counter()
  greedy = asr.greedy_transcribe(log_probs_fn, data, tok)
  rows = [dict(decoder="greedy", seconds=time.perf_counter() - t0, hyps=greedy)]
  utts = asr.utterance_log_probs(log_probs_fn, data)
  lm_dir = os.path.join(args.workdir, "lm")
  for name, kind in (("beam", ""), ("beam_lm char", "char"), ("beam_lm word", "word")):
    settings = {}
    if kind:
      try:
        settings = evaluate.tuned_lm_settings(lm_dir, kind)
      except FileNotFoundError:
        settings = {u["lang"]: dict(lm_weight=0.5, word_bonus=1.0) for u in utts}
    t0 = time.perf_counter()
    asr.beam_transcribe(utts, tok, settings, lm_dir, kind, beam=args.beam)
    rows.append(dict(decoder=name, seconds=time.perf_counter() - t0,
                     hyps=[dict(ref=u["ref"], hyp=u["hyp"]) for u in utts]))
  out = []
  print(f"{'decoder':>14} {'utt/s':>8} {'x greedy time':>14} {'CER %':>6}")
  for r in rows:
    cer = metrics.corpus_error_rate(metrics.char_edits([h["ref"] for h in r["hyps"]],
                                                       [h["hyp"] for h in r["hyps"]]))
    ups = len(r["hyps"]) / r["seconds"]
    out.append(dict(decoder=r["decoder"], utterances=len(r["hyps"]), utt_per_s=round(ups, 2),
                    time_ratio_to_greedy=round(r["seconds"] / rows[0]["seconds"], 2),
                    cer=round(cer, 4)))
    print(f"{r['decoder']:>14} {ups:>8.1f} {r['seconds'] / rows[0]['seconds']:>14.1f} "
          f"{100 * cer:>6.1f}")
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(dict(workdir=args.workdir, split=args.split, beam=args.beam, rows=out), f,
                indent=1)


if __name__ == "__main__":
  main()
