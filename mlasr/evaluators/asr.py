"""ASR evaluation: decode every utterance of an eval set, then score CER/WER.

    utts = transcribe(predict_fn, eval_data, tokenizer)          # greedy, on device
    utts = beam_transcribe(utterance_log_probs(log_probs_fn, eval_data), tokenizer, settings,
                           lm_dir, "char")                       # prefix beam search (+ LM)
    results = score(utts, n_boot=1000, meta=...)                 # mlasr.evaluators.report

Utterance records are the plain dicts of mlasr.evaluators.report (utt_id, lang, corpus,
speaker, ref, hyp, seconds). `dev_metrics` is what the CTC task reports on dev during training
(per-language and macro CER, macro WER); mlasr.evaluate is the command line around the rest.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from mlasr import decoding
from mlasr import lm as lm_lib
from mlasr.evaluators import report
from mlasr.features import SAMPLE_RATE


def transcribe(predict_fn, eval_data, tokenizer) -> list[dict]:
  """Runs `predict_fn(host batch) -> (tokens, lengths)` over `eval_data`; a dict per utterance."""
  utts = []
  for batch in eval_data.batches():
    tokens, lengths = jax.device_get(predict_fn(batch))
    for i in np.flatnonzero(batch["example_mask"]):
      lang = str(batch["lang"][i])
      utts.append(dict(
          utt_id=str(batch["utt_id"][i]), lang=lang, corpus=str(batch["corpus"][i]),
          speaker=str(batch["speaker"][i]), ref=str(batch["text_norm"][i]),
          hyp=tokenizer.decode(tokens[i, :lengths[i]].tolist(), lang),
          seconds=float(batch["audio_mask"][i].sum()) / SAMPLE_RATE))
  return utts


def utterance_log_probs(log_probs_fn, eval_data) -> list[dict]:
  """Runs `log_probs_fn(host batch) -> (log_probs, frame_mask)` over `eval_data`; per
  utterance its metadata and the [frames, V] log-posteriors of its real frames."""
  utts = []
  for batch in eval_data.batches():
    logp, frame_mask = jax.device_get(log_probs_fn(batch))
    for i in np.flatnonzero(batch["example_mask"]):
      utts.append(dict(
          utt_id=str(batch["utt_id"][i]), lang=str(batch["lang"][i]),
          corpus=str(batch["corpus"][i]), speaker=str(batch["speaker"][i]),
          ref=str(batch["text_norm"][i]),
          seconds=float(batch["audio_mask"][i].sum()) / SAMPLE_RATE,
          log_probs=np.asarray(logp[i][np.asarray(frame_mask[i]) > 0], np.float64)))
  return utts


def beam_transcribe(utts: list[dict], tokenizer, settings: dict[str, dict], lm_dir: str = "",
                    lm_kind: str = "", hotwords: tuple[str, ...] = (), hotword_weight: float = 0.0,
                    beam: int = 16) -> list[dict]:
  """Prefix beam search for each utterance (from utterance_log_probs), in place: sets "hyp".

  settings: per language {lm_weight, word_bonus}; lm_kind "" decodes without an LM.
  """
  scorers = {}
  for u in utts:
    lang = u["lang"]
    if lm_kind and lang not in scorers:
      scorers[lang] = decoding.LMScorer(
          lm_lib.load_kenlm(os.path.join(lm_dir, lang, f"{lm_kind}.arpa")), lm_kind)
    s = settings.get(lang, {})
    cfg = decoding.BeamConfig(beam=beam, lm_weight=s.get("lm_weight", 0.0) if lm_kind else 0.0,
                              word_bonus=s.get("word_bonus", 0.0) if lm_kind else 0.0,
                              hotwords=hotwords, hotword_weight=hotword_weight)
    u["hyp"] = decoding.prefix_beam_search(u["log_probs"], tokenizer.id_strings(lang), cfg,
                                           scorers.get(lang))[0][0]
  return utts


def score(utts: list[dict], n_boot: int = 1000, meta: dict | None = None) -> dict:
  """Results structure of mlasr.evaluators.report (languages, groups, macro, all)."""
  return report.build_results(utts, n_boot=n_boot, seed=0, meta=meta or {})


def dev_metrics(predict_fn, eval_data, tokenizer) -> dict:
  """Dev metrics: greedy-decode every utterance, per-language and macro CER/WER."""
  scores = score(transcribe(predict_fn, eval_data, tokenizer), n_boot=0)
  summary = {f"dev_cer/{k}": v["cer"]["rate"] for k, v in scores["languages"].items()}
  summary["dev_cer/macro"] = scores["macro"]["cer"]["rate"]
  summary["dev_wer/macro"] = scores["macro"]["wer"]["rate"]
  return summary
