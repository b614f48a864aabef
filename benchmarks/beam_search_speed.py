"""Host-side beam search with a char LM, A/B in one run on a run's posteriors (what
`python -m mlasr.lm --tune` and `mlasr.evaluate --decoder beam_lm` spend their time on):

  grid:    the tune grid (no LM + every lm_weight x word_bonus) as one search per point
           (decoding.prefix_beam_search) against one call for all points of an utterance
           (decoding.prefix_beam_searches, which shares the prefixes' LM scores); CPU time,
           the two alternating utterance by utterance;
  workers: asr.beam_grid in this process (workers=1) against a pool of --workers; wall time,
           in the order 1, N, N, 1 (the machine's speed drifts: the mean of each pair).

Both sides of each pair must give the same hypotheses (checked); the ratios are of times
measured here, on the same utterances.

  python -m benchmarks.beam_search_speed --workdir RUN [--split dev] [--beam 8] \
      [--lm_weights 0.2,0.4,0.6] [--word_bonuses 0,1,2] [--workers 2] [--every 1] [--out F.json]

The run needs its char LMs (`python -m mlasr.lm --workdir RUN`).
"""
from __future__ import annotations

import argparse
import json
import os
import time

from mlasr import decoding, evaluate
from mlasr import lm as lm_lib
from mlasr.data import inputs
from mlasr.evaluators import asr


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", required=True)
  p.add_argument("--split", default="dev")
  p.add_argument("--beam", type=int, default=8)
  p.add_argument("--lm_weights", default="0.2,0.4,0.6")
  p.add_argument("--word_bonuses", default="0,1,2")
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--every", type=int, default=1, help="Every n-th utterance only.")
  p.add_argument("--out")
  args = p.parse_args()
  if args.workers < 2:
    p.error("--workers: 2 or more (the pool against one process)")
  config, tok, model, _ = evaluate.restore_model(args.workdir)
  utts = asr.utterance_log_probs(evaluate.jitted_log_probs(config, model),
                                 inputs.eval_data(config, args.split))[::args.every]
  lm_dir = os.path.join(args.workdir, "lm")
  langs = sorted({u["lang"] for u in utts})
  points = [(a, b) for a in map(float, args.lm_weights.split(","))
            for b in map(float, args.word_bonuses.split(","))]
  cfgs = [decoding.BeamConfig(beam=args.beam)] + [
      decoding.BeamConfig(beam=args.beam, lm_weight=a, word_bonus=b) for a, b in points]
  grid = [{}] + [{l: dict(lm_weight=a, word_bonus=b) for l in langs} for a, b in points]
  scorers = {l: decoding.LMScorer(lm_lib.load_kenlm(os.path.join(lm_dir, l, "char.arpa")),
                                  "char") for l in langs}
  masks = asr.OutputMasks(tok)

  per_point_s = shared_s = 0.0
  for u in utts:
    lp = decoding.restrict(u["log_probs"], masks(u["lang"]))
    ids, scorer = tok.id_strings(u["lang"]), scorers[u["lang"]]
    t0 = time.process_time()
    per_point = [decoding.prefix_beam_search(lp, ids, c, scorer) for c in cfgs]
    t1 = time.process_time()
    shared = decoding.prefix_beam_searches(lp, ids, cfgs, scorer)
    t2 = time.process_time()
    if per_point != shared:
      raise SystemExit(f"{u['utt_id']}: prefix_beam_searches differs from prefix_beam_search")
    per_point_s, shared_s = per_point_s + t1 - t0, shared_s + t2 - t1

  wall, hyps = {1: 0.0, args.workers: 0.0}, []
  for workers in (1, args.workers, args.workers, 1):
    t0 = time.perf_counter()
    hyps.append(asr.beam_grid(utts, tok, grid, lm_dir, "char", beam=args.beam, workers=workers))
    wall[workers] += (time.perf_counter() - t0) / 2
  if any(h != hyps[0] for h in hyps):
    raise SystemExit("beam_grid's hypotheses depend on the number of workers")

  rows = [dict(what="one search per grid point (CPU s)", seconds=per_point_s),
          dict(what="prefix_beam_searches, shared (CPU s)", seconds=shared_s),
          dict(what="beam_grid, workers=1 (wall s)", seconds=wall[1]),
          dict(what=f"beam_grid, workers={args.workers} (wall s)", seconds=wall[args.workers])]
  print(f"{len(utts)} {args.split} utterances x {len(cfgs)} grid points, beam {args.beam}; "
        f"{os.cpu_count()} cores")
  for r in rows:
    r["seconds"] = round(r["seconds"], 2)
    print(f"  {r['what']:>42}: {r['seconds']:7.1f}")
  ratios = dict(shared_vs_per_point=round(per_point_s / shared_s, 2),
                pool_vs_one_process=round(wall[1] / wall[args.workers], 2))
  print(f"  speed-up: shared LM scores x{ratios['shared_vs_per_point']}, "
        f"{args.workers} workers x{ratios['pool_vs_one_process']}")
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(dict(workdir=args.workdir, split=args.split, every=args.every, beam=args.beam,
                     utterances=len(utts), grid_points=len(cfgs), cores=os.cpu_count(),
                     rows=rows, ratios=ratios), f, indent=1)


if __name__ == "__main__":
  main()
