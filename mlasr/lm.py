"""N-gram language models for CTC decoding: estimation, ARPA files, KenLM queries.

KenLM's estimator (`lmplz`) needs Boost and is not in the `kenlm` pip package, which only
queries models; so models are estimated here, with the method `lmplz` uses: interpolated
modified Kneser-Ney smoothing (Chen & Goodman 1998) with discounts from count-of-counts,
continuation counts for lower orders and raw counts for n-grams that start with <s>. They are
written as ARPA files and queried with `kenlm.Model` (tests check KenLM's scores against a
direct evaluation of the formulas and that every history's distribution sums to one).

Two kinds per language (a unit is a "word" of the ARPA file):
  - "char": characters, the space written as `|` (the wav2vec 2.0 word delimiter);
  - "word": whitespace-separated words.

Training text is the normalised training transcripts plus any extra text (e.g. the
benchmark's `lm_text/<lang>.txt`), minus every sentence of the evaluation splits.

  python -m mlasr.lm --workdir RUN [--extra_text DIR] [--char_order 6 --word_order 3]
writes RUN/lm/<lang>/{char,word}.arpa and RUN/lm/meta.json;
  python -m mlasr.lm --workdir RUN --tune
chooses LM weight and word bonus per language on dev (RUN/lm/tuned.json), which
`mlasr.evaluate --decoder beam_lm` then uses, and the character-LM weight of the CTC
language identifier (decoding.LanguageIdentifier) by its dev accuracy (RUN/lm/lid.json), which
`--adapter_lang auto` and `mlasr.transcribe --lang auto` use.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import math
import multiprocessing
import os
from collections.abc import Iterable, Sequence

import numpy as np

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
# Processes for the pure-Python work on LMs: estimating them (build_lms) and beam search with
# them (evaluators.asr.beam_grid). Two, what `make demo`'s machine has, or fewer cores there;
# and only for this much training text, below which starting them (each imports mlasr:
# seconds) costs more than it saves.
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)
POOL_MIN_CHARS = 200_000
SPACE = "|"
LOG10_ZERO = -99.0  # ARPA's "impossible" (KenLM writes -99 for <s>)


def units(text: str, kind: str) -> list[str]:
  """The LM's units of a normalised text: characters (space -> '|') or words."""
  if kind == "char":
    return [SPACE if c == " " else c for c in text]
  if kind == "word":
    return text.split()
  raise ValueError(f"LM kind must be 'char' or 'word', got {kind!r}")


@dataclasses.dataclass
class NgramModel:
  """An estimated model: for each order n, {ngram tuple: (log10 prob, log10 backoff)}."""
  order: int
  grams: list[dict[tuple[str, ...], tuple[float, float]]]
  discounts: list[tuple[float, float, float]]

  def write_arpa(self, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.write("\n\\data\\\n")
      for n in range(1, self.order + 1):
        f.write(f"ngram {n}={len(self.grams[n - 1])}\n")
      for n in range(1, self.order + 1):
        f.write(f"\n\\{n}-grams:\n")
        grams = self.grams[n - 1]
        for gram in sorted(grams):  # keys, not (key, value) pairs: same order, less to compare
          prob, backoff = grams[gram]
          line = f"{prob:.7f}\t{' '.join(gram)}"
          if n < self.order and backoff != 0.0:
            line += f"\t{backoff:.7f}"
          f.write(line + "\n")
      f.write("\n\\end\\\n")
    os.replace(tmp, path)

  def log10_prob(self, word: str, history: Sequence[str]) -> float:
    """log10 p(word | history) by ARPA back-off semantics (what KenLM computes)."""
    history = tuple(history)[-(self.order - 1):] if self.order > 1 else ()
    backoff = 0.0
    for start in range(len(history) + 1):
      h = history[start:]
      gram = h + (word,)
      entry = self.grams[len(gram) - 1].get(gram)
      if entry is not None:
        return backoff + entry[0]
      ctx = self.grams[len(h) - 1].get(h) if h else None
      backoff += ctx[1] if ctx else 0.0
    return backoff + self.grams[0][(UNK,)][0]


def _discounts(adjusted: dict, max_count: int = 4) -> tuple[float, float, float]:
  """Modified KN discounts D1, D2, D3+ from the count-of-counts of one order."""
  t = collections.Counter(min(c, max_count) for c in adjusted.values())
  t1, t2, t3, t4 = (t.get(k, 0) for k in (1, 2, 3, 4))
  if t1 == 0 or t2 == 0:  # tiny or unusual text: fall back to one absolute discount
    return (0.5, 1.0, 1.5)
  y = t1 / (t1 + 2 * t2)
  d = [1 - 2 * y * t2 / t1, 2 - 3 * y * t3 / t2 if t2 else 1.0,
       3 - 4 * y * t4 / t3 if t3 else 1.5]
  # lmplz refuses discounts outside (0, k]; small vocabularies (characters) can get there.
  return tuple(min(max(dk, 0.05 * (k + 1)), float(k + 1)) for k, dk in enumerate(d))


def estimate(sentences: Iterable[Sequence[str]], order: int) -> NgramModel:
  """Interpolated modified Kneser-Ney model of `order` from unit sequences."""
  if order < 2:
    raise ValueError(f"order must be >= 2 (KenLM reads bigram models and up), got {order}")
  raw = [collections.Counter() for _ in range(order)]
  vocab = set()
  for sent in sentences:
    toks = [BOS] + list(sent) + [EOS]
    vocab.update(sent)
    raw[0].update(zip(toks[1:]))  # unigrams: <s> is never predicted
    for n in range(2, order + 1):  # zip of shifted copies: every n-gram, left to right
      raw[n - 1].update(zip(*(toks[k:] for k in range(n))))
  if not raw[0]:
    raise ValueError("no training text for the language model")
  # Adjusted counts: raw for the highest order and for n-grams starting with <s>; otherwise
  # the number of distinct words seen before the n-gram (continuation counts).
  adjusted = [dict() for _ in range(order)]
  adjusted[order - 1] = dict(raw[order - 1])
  for n in range(order - 1, 0, -1):
    cont = collections.Counter()
    for gram in raw[n]:  # n-grams of order n + 1
      cont[gram[1:]] += 1
    for gram, c in raw[n - 1].items():
      adjusted[n - 1][gram] = c if gram[0] == BOS else cont.get(gram, c)
    for gram, c in cont.items():  # lower n-grams seen only as suffixes of longer ones
      adjusted[n - 1].setdefault(gram, c)
  discounts = [_discounts(a) for a in adjusted]

  # discount_of[n - 1][min(c, 3)]: the discount of an n-gram of adjusted count c.
  discount_of = [(0.0,) + d for d in discounts]

  # Per history: total adjusted count and the backoff mass (sum of discounts).
  totals, gammas = [], []
  for n in range(1, order + 1):
    total, mass = collections.Counter(), collections.Counter()
    d = discount_of[n - 1]
    for gram, c in adjusted[n - 1].items():
      h = gram[:-1]
      total[h] += c
      mass[h] += d[min(c, 3)]
    totals.append(total)
    gammas.append({h: mass[h] / total[h] for h in total})

  words = sorted(vocab | {EOS})
  uniform = 1.0 / (len(words) + 1)  # + <unk>
  probs: list[dict] = [dict() for _ in range(order)]
  # Unigrams: interpolated with the uniform distribution over the vocabulary and <unk>.
  g0 = gammas[0].get((), 0.0)
  for gram, c in adjusted[0].items():
    probs[0][gram] = (c - discount_of[0][min(c, 3)]) / totals[0][()] + g0 * uniform
  probs[0][(UNK,)] = g0 * uniform
  for n in range(2, order + 1):
    # p(w | h): discounted count, plus the backoff mass times the lower order's p(w | h[1:])
    # (always listed: every suffix of a seen n-gram is seen).
    d, total, gamma, lower, out = (discount_of[n - 1], totals[n - 1], gammas[n - 1],
                                   probs[n - 2], probs[n - 1])
    for gram, c in adjusted[n - 1].items():
      h = gram[:-1]
      out[gram] = (c - d[min(c, 3)]) / total[h] + gamma[h] * lower[gram[1:]]
  grams = [dict() for _ in range(order)]
  for n in range(1, order + 1):
    for gram, p in probs[n - 1].items():
      bo = gammas[n][gram] if n < order and gram in gammas[n] else 1.0
      grams[n - 1][gram] = (math.log10(p), math.log10(bo) if bo > 0 else LOG10_ZERO)
  # <s> is a history only: never predicted.
  bos_bo = gammas[1].get((BOS,), 1.0) if order > 1 else 1.0
  grams[0][(BOS,)] = (LOG10_ZERO, math.log10(bos_bo) if order > 1 else 0.0)
  return NgramModel(order, grams, discounts)


# ---------------------------------------------------------------------------------------------
# Building a run's LMs.
# ---------------------------------------------------------------------------------------------
def training_text(train_texts: dict[str, list[str]], extra: dict[str, list[str]],
                  held_out: dict[str, set[str]]) -> tuple[dict[str, list[str]], dict]:
  """Per language: train transcripts + extra text, minus every held-out (dev/test) sentence.

  Returns (texts, counts); the counts say how many sentences each source gave and how many
  were removed because an evaluation split holds them.
  """
  out, counts = {}, {}
  for lang in sorted(set(train_texts) | set(extra)):
    banned = held_out.get(lang, set())
    kept, removed = [], 0
    for text in list(train_texts.get(lang, [])) + list(extra.get(lang, [])):
      if not text:
        continue
      if text in banned:
        removed += 1
        continue
      kept.append(text)
    out[lang] = kept
    counts[lang] = dict(train=len(train_texts.get(lang, [])), extra=len(extra.get(lang, [])),
                        removed_eval_sentences=removed, kept=len(kept))
  return out, counts


def build_lms(texts: dict[str, list[str]], out_dir: str, char_order: int = 6,
              word_order: int = 3, workers: int | None = None) -> dict:
  """Writes <out_dir>/<lang>/{char,word}.arpa for each language; returns their description.

  workers: processes estimating models in parallel (None: DEFAULT_WORKERS for at least
  POOL_MIN_CHARS of text, else this one); each model is estimated alone, so the files are the
  same whatever the number.
  """
  jobs = [(lang, kind, order, sents, os.path.join(out_dir, lang, f"{kind}.arpa"))
          for lang, sents in sorted(texts.items())
          for kind, order in (("char", char_order), ("word", word_order))]
  if workers is None:
    chars = sum(len(s) for sents in texts.values() for s in sents)
    workers = DEFAULT_WORKERS if chars >= POOL_MIN_CHARS else 1
  workers = min(workers, len(jobs))
  if workers <= 1:
    described = [_build_one(job) for job in jobs]
  else:
    # Largest text first, so that no worker is left with a big model at the end. 'spawn':
    # forking a process that has imported JAX (mlasr does) is unsafe.
    biggest_first = sorted(range(len(jobs)), key=lambda i: -sum(map(len, jobs[i][3])))
    with concurrent.futures.ProcessPoolExecutor(
        workers, multiprocessing.get_context("spawn")) as pool:
      done = list(pool.map(_build_one, [jobs[i] for i in biggest_first]))
    described = [None] * len(jobs)
    for i, d in zip(biggest_first, done):
      described[i] = d
  meta: dict = {}
  for (lang, kind, order, _, path), (ngrams, discounts) in zip(jobs, described):
    meta.setdefault(lang, {})[kind] = dict(path=os.path.relpath(path, out_dir), order=order,
                                           ngrams=ngrams, discounts=discounts)
  return meta


def _build_one(job) -> tuple[list[int], list[list[float]]]:
  """Estimates and writes one model of build_lms; (n-grams per order, discounts)."""
  _, kind, order, sents, path = job
  model = estimate((units(s, kind) for s in sents), order)
  model.write_arpa(path)
  return [len(g) for g in model.grams], [list(d) for d in model.discounts]


def load_kenlm(path: str):
  """A kenlm.Model (ARPA or binary), with a clear error where the package is missing."""
  try:
    import kenlm  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("LM decoding needs the kenlm package: pip install kenlm (builds with "
                      "cmake and a C++ compiler; `make install` does it)") from e
  return kenlm.Model(path)


LM_WEIGHTS = (0.0, 0.2, 0.4, 0.7, 1.0)
LID_LM_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)
LID_FILE = "lid.json"
DEFAULT_LID_LM_WEIGHT = 0.5


def tune_lid(utts: Sequence[dict], identifier, weights: Sequence[float] = LID_LM_WEIGHTS,
             split: str = "dev") -> dict:
  """The char-LM weight of `identifier` (decoding.LanguageIdentifier) with the highest
  language-identification accuracy over `utts` (each with "lang" and "log_probs");
  ties go to the smaller weight."""
  langs = list(identifier.langs)
  true = [langs.index(u["lang"]) for u in utts]
  hyps = [identifier.hypotheses(u["log_probs"]) for u in utts]
  grid = {}
  for w in weights:
    pred = [int(np.argmax(identifier.combine(h, w))) for h in hyps]
    grid[str(float(w))] = sum(p == t for p, t in zip(pred, true)) / max(len(true), 1)
  best = max(grid, key=lambda k: (grid[k], -float(k)))
  return dict(lm_weight=float(best), accuracy=grid[best], grid=grid, split=split,
              num_utterances=len(utts), langs=langs)


def lid_lm_weight(lm_dir: str) -> float:
  """The tuned weight of <lm_dir>/lid.json, or the default where it was never tuned."""
  path = os.path.join(lm_dir, LID_FILE)
  if not os.path.exists(path):
    return DEFAULT_LID_LM_WEIGHT
  with open(path, encoding="utf-8") as fh:
    return float(json.load(fh)["lm_weight"])
WORD_BONUSES = (0.0, 1.0, 2.0)


def tune(workdir: str, lm_dir: str, beam: int = 16, split: str = "dev",
         kinds: tuple[str, ...] = ("char", "word"),
         lm_weights: tuple[float, ...] = LM_WEIGHTS,
         word_bonuses: tuple[float, ...] = WORD_BONUSES, workers: int | None = None) -> dict:
  """Per language and LM kind, the (lm_weight, word_bonus) of the grid with the lowest CER
  on `split`; written to <lm_dir>/tuned.json beside the models with every grid point's CER.
  workers: beam-search processes (None: asr.beam_grid's default)."""
  from mlasr import evaluate, metrics  # pylint: disable=import-outside-toplevel
  from mlasr.data import inputs  # pylint: disable=import-outside-toplevel
  from mlasr.evaluators import asr  # pylint: disable=import-outside-toplevel
  config, tokenizer, model, _ = evaluate.restore_model(workdir)
  utts = asr.utterance_log_probs(evaluate.jitted_log_probs(config, model),
                                 inputs.eval_data(config, split))
  by_lang: dict[str, list[int]] = collections.defaultdict(list)
  for i, u in enumerate(utts):
    by_lang[u["lang"]].append(i)
  # Every utterance at every grid point in one pass (asr.beam_grid: in parallel, each
  # utterance's searches sharing their LM scores). Point 0, no LM weight, is the plain beam.
  points = [(alpha, beta) for alpha in lm_weights
            for beta in (word_bonuses if alpha > 0 else (0.0,))]
  grid_settings = [{}] + [{lang: dict(lm_weight=alpha, word_bonus=beta) for lang in by_lang}
                          for alpha, beta in points]
  hyps = {kind: asr.beam_grid(utts, tokenizer, grid_settings, lm_dir, kind, beam=beam,
                              workers=workers) for kind in kinds}
  tuned = {}
  for lang, idx in sorted(by_lang.items()):
    tuned[lang] = {}
    refs = [utts[i]["ref"] for i in idx]
    cers = {kind: [metrics.corpus_error_rate(metrics.char_edits(
        refs, [hyps[kind][i][p] for i in idx])) for p in range(len(grid_settings))]
            for kind in kinds}
    no_lm = cers[kinds[0]][0] if kinds else None
    for kind in kinds:
      grid = {f"{alpha},{beta}": cers[kind][p + 1] for p, (alpha, beta) in enumerate(points)}
      best = min(grid, key=grid.get)
      alpha, beta = map(float, best.split(","))
      tuned[lang][kind] = dict(lm_weight=alpha, word_bonus=beta, cer=grid[best],
                               cer_without_lm=no_lm, grid=grid, split=split, beam=beam)
      print(f"{lang} {kind} LM: weight {alpha}, bonus {beta}: {split} CER "
            f"{100 * grid[best]:.1f} (beam without LM {100 * no_lm:.1f})")
  with open(os.path.join(lm_dir, "tuned.json"), "w", encoding="utf-8") as fh:
    json.dump(tuned, fh, indent=1)
  from mlasr import decoding  # pylint: disable=import-outside-toplevel
  langs = list(inputs.languages(config.data))
  lid = tune_lid(utts, decoding.LanguageIdentifier.for_model(model, tokenizer, langs, lm_dir),
                 split=split)
  with open(os.path.join(lm_dir, LID_FILE), "w", encoding="utf-8") as fh:
    json.dump(lid, fh, indent=1)
  print(f"language identification: char-LM weight {lid['lm_weight']}, {split} accuracy "
        f"{100 * lid['accuracy']:.1f} % over {len(langs)} languages")
  return tuned


def main(argv):
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  from mlasr import config_lib, fileio  # pylint: disable=import-outside-toplevel
  from mlasr.data import inputs, tfds_builder  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  if fileio.is_remote(f.workdir):  # build_lms and KenLM write and read local files
    raise ValueError(f"--workdir={f.workdir}: mlasr.lm builds and reads KenLM files on a local "
                     "disk; copy the run (gsutil cp -r), run mlasr.lm on the copy, and pass "
                     "its lm/ folder to mlasr.evaluate as --lm_dir")
  if f.tune:
    tune(f.workdir, os.path.join(f.workdir, "lm"), f.beam, kinds=tuple(f.tune_kinds),
         lm_weights=tuple(map(float, f.lm_weights)),
         word_bonuses=tuple(map(float, f.word_bonuses)), workers=f.workers)
    return
  config = config_lib.load_config(f.workdir)
  data_dir = inputs.data_dir(config.data)
  train, held_out, extra = {}, {}, {}
  for corpus, lang in inputs.datasets(config.data):
    index = tfds_builder.load_index(data_dir, corpus, lang)
    train.setdefault(lang, []).extend(index[config.data.train_split]["text_norm"])
    for split in ("dev", "test"):
      if split in index:
        held_out.setdefault(lang, set()).update(index[split]["text_norm"])
  extra_dir = f.extra_text or os.path.join(os.path.expanduser(config.data.root), "lm_text")
  if os.path.isdir(extra_dir):
    from mlasr.data import text as text_lib  # pylint: disable=import-outside-toplevel
    for lang in train:
      path = os.path.join(extra_dir, f"{lang}.txt")
      if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
          extra[lang] = [text_lib.normalize(l.strip(), lang) for l in fh if l.strip()]
  texts, counts = training_text(train, extra, held_out)
  out_dir = os.path.join(f.workdir, "lm")
  meta = build_lms(texts, out_dir, f.char_order, f.word_order, f.workers)
  with open(os.path.join(out_dir, "meta.json"), "w", encoding="utf-8") as fh:
    json.dump(dict(models=meta, text=counts, extra_text=extra_dir if extra else ""), fh, indent=1)
  for lang, c in counts.items():
    print(f"{lang}: {c['kept']} sentences ({c['train']} train + {c['extra']} extra, "
          f"{c['removed_eval_sentences']} dev/test sentences removed)")
  print(f"LMs written to {out_dir}")


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "Training run whose data and tokenizer the LMs serve.")
  flags.DEFINE_string("extra_text", "", "Directory of <lang>.txt extra LM text (default: "
                      "<data root>/lm_text when it exists).")
  flags.DEFINE_integer("char_order", 6, "Order of the character LMs.")
  flags.DEFINE_integer("word_order", 3, "Order of the word LMs.")
  flags.DEFINE_bool("tune", False, "Tune LM weight and word bonus per language on dev "
                    "(after the LMs are built) and write lm/tuned.json.")
  flags.DEFINE_integer("beam", 16, "Beam width for --tune.")
  flags.DEFINE_list("tune_kinds", ["char", "word"], "LM kinds --tune tunes (char, word).")
  flags.DEFINE_list("lm_weights", [str(w) for w in LM_WEIGHTS], "--tune grid: LM weights.")
  flags.DEFINE_list("word_bonuses", [str(b) for b in WORD_BONUSES],
                    "--tune grid: word-insertion bonuses.")
  flags.DEFINE_integer("workers", None, "Processes estimating the LMs, or beam searching "
                       "with --tune (default: 2, or fewer where there are fewer cores).")
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
