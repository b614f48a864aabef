"""ASR evaluation: decode every utterance of an eval set, then score CER/WER.

    utts = greedy_transcribe(log_probs_fn, eval_data, tokenizer)   # best path
    utts = beam_transcribe(utterance_log_probs(log_probs_fn, eval_data), tokenizer, settings,
                           lm_dir, "char")                         # prefix beam search (+ LM)
    hyps = beam_grid(utts, tokenizer, [settings, ...], lm_dir, "char")  # at several weights
    results = score(utts, n_boot=1000, meta=...)                   # mlasr.evaluators.report

Both decoders search only the outputs of the utterance's language (`restrict`): a Hindi clip
cannot come out in Cyrillic. The language is the utterance's own (oracle), the one a batch
carries in "decode_lang" (a forced language or a trained LID model's choice, set by
mlasr.evaluate), or the one `identify(log_probs)` returns (decoding.LanguageIdentifier).

Utterance records are the plain dicts of mlasr.evaluators.report (utt_id, lang, corpus,
speaker, ref, hyp, seconds), plus "decoded_lang", the language the hypothesis was decoded in.
`dev_metrics` is what the CTC task reports on dev during training (per-language and macro
CER, macro WER); mlasr.evaluate is the command line around the rest.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from typing import Callable, Iterator

import jax
import numpy as np

from mlasr import decoding
from mlasr import lm as lm_lib
from mlasr.evaluators import report
from mlasr.features import SAMPLE_RATE


class OutputMasks:
  """Per language, the outputs its hypotheses may use (tokenizer.output_mask), built once."""

  def __init__(self, tokenizer, enabled: bool = True):
    self.tokenizer, self.enabled, self._masks = tokenizer, enabled, {}

  def __call__(self, lang: str) -> np.ndarray | None:
    if not self.enabled:
      return None
    if lang not in self._masks:
      self._masks[lang] = self.tokenizer.output_mask([lang])[0]
    return self._masks[lang]


def iter_log_probs(log_probs_fn, eval_data) -> Iterator[tuple[dict, np.ndarray]]:
  """Runs `log_probs_fn(host batch) -> (log_probs, frame_mask)` over `eval_data`; yields per
  utterance its metadata and the [frames, V] log-posteriors of its real frames."""
  for batch in eval_data.batches():
    logp, frame_mask = jax.device_get(log_probs_fn(batch))
    decode_lang = batch.get("decode_lang", batch["lang"])
    for i in np.flatnonzero(batch["example_mask"]):
      meta = dict(
          utt_id=str(batch["utt_id"][i]), lang=str(batch["lang"][i]),
          corpus=str(batch["corpus"][i]), speaker=str(batch["speaker"][i]),
          ref=str(batch["text_norm"][i]),
          seconds=float(batch["audio_mask"][i].sum()) / SAMPLE_RATE,
          decoded_lang=str(decode_lang[i]))
      yield meta, np.asarray(logp[i][np.asarray(frame_mask[i]) > 0], np.float64)


def utterance_log_probs(log_probs_fn, eval_data) -> list[dict]:
  """Every utterance of `eval_data` with its log-posteriors ("log_probs"), for beam search."""
  return [dict(meta, log_probs=lp) for meta, lp in iter_log_probs(log_probs_fn, eval_data)]


def greedy_transcribe(log_probs_fn, eval_data, tokenizer, restrict: bool = True,
                      identify: Callable[[np.ndarray], str] | None = None) -> list[dict]:
  """Best-path decoding of every utterance of `eval_data`, one dict per utterance.

  restrict: over the outputs of the utterance's language only (module docstring).
  identify: log_probs -> language, for utterances of unknown language; its choice is the
    decoding language (and "decoded_lang").
  """
  masks = OutputMasks(tokenizer, restrict)
  utts = []
  for u, lp in iter_log_probs(log_probs_fn, eval_data):
    if identify is not None:
      u["decoded_lang"] = identify(lp)
    ids, _ = decoding.best_path(lp, masks(u["decoded_lang"]))
    u["hyp"] = tokenizer.decode(ids, u["decoded_lang"])
    utts.append(u)
  return utts


# Beam search is pure Python, one core per process, so a pool of processes decodes utterances
# in parallel: lm.DEFAULT_WORKERS (two) where there are at least this many frames times grid
# points to search (about 15 s on one core). Below that, starting the workers (about 4 s: each
# imports mlasr and loads its LMs) eats most of what they save.
POOL_MIN_FRAMES = 200_000


def beam_transcribe(utts: list[dict], tokenizer, settings: dict[str, dict], lm_dir: str = "",
                    lm_kind: str = "", hotwords: tuple[str, ...] = (), hotword_weight: float = 0.0,
                    beam: int = 16, restrict: bool = True,
                    workers: int | None = None) -> list[dict]:
  """Prefix beam search for each utterance (from utterance_log_probs), in place: sets "hyp".

  Each is decoded in its "decoded_lang" (its own language unless set otherwise): over that
  language's outputs (restrict) and with that language's LM.
  settings: per language {lm_weight, word_bonus}; lm_kind "" decodes without an LM.
  workers: processes decoding in parallel (1: this one; None: as POOL_MIN_FRAMES says); the
    hypotheses are the same whatever the number.
  """
  hyps = beam_grid(utts, tokenizer, [settings], lm_dir, lm_kind, hotwords, hotword_weight,
                   beam, restrict, workers)
  for u, (hyp,) in zip(utts, hyps):
    u["hyp"] = hyp
  return utts


def beam_grid(utts: list[dict], tokenizer, grid: list[dict[str, dict]], lm_dir: str = "",
              lm_kind: str = "", hotwords: tuple[str, ...] = (), hotword_weight: float = 0.0,
              beam: int = 16, restrict: bool = True,
              workers: int | None = None) -> list[list[str]]:
  """beam_transcribe at each settings of `grid` (lm.tune's weights): hyps[utterance][point].

  One job per utterance decodes it at every point, so its posteriors go to a worker once and
  its searches share their LM scores (decoding.prefix_beam_searches).
  """
  masks = OutputMasks(tokenizer, restrict)
  langs = sorted({u.get("decoded_lang", u["lang"]) for u in utts})
  lm_paths = {l: os.path.join(lm_dir, l, f"{lm_kind}.arpa") for l in langs} if lm_kind else {}
  init_args = ({l: tokenizer.id_strings(l) for l in langs}, lm_paths, lm_kind)
  jobs = []
  for u in utts:
    lang = u.get("decoded_lang", u["lang"])
    cfgs = []
    for settings in grid:
      s = settings.get(lang, {})
      cfgs.append(decoding.BeamConfig(
          beam=beam, lm_weight=s.get("lm_weight", 0.0) if lm_kind else 0.0,
          word_bonus=s.get("word_bonus", 0.0) if lm_kind else 0.0, hotwords=hotwords,
          hotword_weight=hotword_weight))
    jobs.append((lang, decoding.restrict(u["log_probs"], masks(lang)), cfgs))
  if workers is None:
    frames = sum(len(u["log_probs"]) for u in utts) * len(grid)
    workers = lm_lib.DEFAULT_WORKERS if frames >= POOL_MIN_FRAMES else 1
  workers = min(workers, len(jobs))
  if workers <= 1:
    _init_worker(*init_args)
    try:
      return [_decode_job(job) for job in jobs]
    finally:
      _WORKER.clear()
  # 'spawn': fresh interpreters (forking a process that has started JAX is unsafe). Each
  # loads the LMs itself, by path (KenLM models do not pickle); map keeps the input order.
  # An executor rather than a multiprocessing.Pool: a worker that cannot start (a script
  # without `if __name__ == "__main__"`) breaks it with an error instead of being restarted
  # forever.
  with concurrent.futures.ProcessPoolExecutor(
      workers, multiprocessing.get_context("spawn"), _init_worker, init_args) as pool:
    return list(pool.map(_decode_job, jobs))


_WORKER: dict = {}  # what _init_worker set up in this process: id tables and LM scorers


def _init_worker(id_strings: dict[str, list[str]], lm_paths: dict[str, str], lm_kind: str):
  _WORKER["id_strings"] = id_strings
  _WORKER["scorers"] = {l: decoding.LMScorer(lm_lib.load_kenlm(path), lm_kind)
                        for l, path in lm_paths.items()}


def _decode_job(job) -> list[str]:
  """One utterance at every point of the grid: the best hypothesis of each."""
  lang, log_probs, cfgs = job
  results = decoding.prefix_beam_searches(log_probs, _WORKER["id_strings"][lang], cfgs,
                                          _WORKER["scorers"].get(lang))
  return [r[0][0] for r in results]


def score(utts: list[dict], n_boot: int = 1000, meta: dict | None = None) -> dict:
  """Results structure of mlasr.evaluators.report (languages, groups, macro, all)."""
  return report.build_results(utts, n_boot=n_boot, seed=0, meta=meta or {})


def dev_metrics(log_probs_fn, eval_data, tokenizer) -> dict:
  """Dev metrics: best-path decoding of every utterance over its language's outputs (as
  mlasr.evaluate scores test), per-language and macro CER/WER."""
  scores = score(greedy_transcribe(log_probs_fn, eval_data, tokenizer), n_boot=0)
  summary = {f"dev_cer/{k}": v["cer"]["rate"] for k, v in scores["languages"].items()}
  summary["dev_cer/macro"] = scores["macro"]["cer"]["rate"]
  summary["dev_wer/macro"] = scores["macro"]["wer"]["rate"]
  return summary
