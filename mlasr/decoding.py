"""CTC decoding on the host: prefix beam search with an n-gram LM and hotword biasing.

Greedy (best-path) decoding runs on device with the model (`mlasr.tasks.ctc.greedy_decode`);
this module takes per-frame log-probabilities and searches over label sequences:

  score(y) = log P_ctc(y | x) + lm_weight * log P_lm(y) + word_bonus * |words(y)|
             + hotword_weight * (characters of y inside hotwords)

P_ctc(y | x) sums over every alignment of y (the CTC prefix beam search of Hannun et al.
2014, keeping for each prefix the probability of its alignments ending in blank and in a
label). The LM is a KenLM model over characters (scored as each character is added, the word
delimiter `|` included) or words (scored when a word is complete); `word_bonus` is the
insertion bonus that balances the LM's preference for short outputs. Hotwords add their bonus
per matched character while a word is a prefix of one, which is taken back if the word then
leaves it (so partial matches steer the search without leaving spurious credit), as
pyctcdecode's hotword scorer does.

The per-frame candidates are the labels with log-probability above `prune_logp` (at most
`beam` of them), as in pyctcdecode / flashlight: CTC posteriors are peaky, so one or two
labels a frame carry nearly all the mass.

A multilingual model with one shared output layer can emit any language's characters; where
the language is known (or identified), `restrict` keeps only that language's outputs
(tokenizer.output_mask), for best path and beam search alike. `LanguageIdentifier` picks the
language from the CTC posteriors themselves: the best path under each language's outputs,
scored with that language's character LM (the two scores MMS-style LID heads and
phonotactic LID systems learn separately).
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np

from mlasr import lm as lm_lib

BLANK_ID = 0
_LN10 = math.log(10.0)
NEG_INF = -float("inf")


def restrict(log_probs: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
  """[T, V] log-probabilities with the outputs not `allowed` ([V] bool) at -inf.

  Not renormalised: the mass the model put on other languages' outputs stays lost, so that
  path scores under different restrictions compare (what LanguageIdentifier needs).
  """
  if allowed is None:
    return log_probs
  return np.where(np.asarray(allowed, bool)[None, :], log_probs, NEG_INF)


def best_path(log_probs: np.ndarray, allowed: np.ndarray | None = None
              ) -> tuple[list[int], float]:
  """Best-path (greedy) CTC decoding on the host: (collapsed label ids, the path's
  log-probability), optionally over the `allowed` outputs only (the blank must be allowed)."""
  lp = restrict(np.asarray(log_probs, np.float64), allowed)
  best = lp.argmax(-1)
  score = float(lp[np.arange(len(best)), best].sum())
  keep = (best != BLANK_ID) & (best != np.concatenate([[-1], best[:-1]]))
  return best[keep].tolist(), score


@dataclasses.dataclass(frozen=True)
class BeamConfig:
  beam: int = 16                 # prefixes kept per frame
  prune_logp: float = -5.0       # labels below this log-probability in a frame are skipped
                                 # (pyctcdecode's token_min_logp)
  lm_weight: float = 0.0         # alpha (natural-log LM score scale)
  word_bonus: float = 0.0        # beta, per word of the hypothesis
  hotwords: tuple[str, ...] = ()  # words or phrases (each word of a phrase is boosted)
  hotword_weight: float = 0.0    # bonus per matched character


def _logaddexp(a: float, b: float) -> float:
  if a == NEG_INF:
    return b
  if b == NEG_INF:
    return a
  m = max(a, b)
  return m + math.log1p(math.exp(-abs(a - b)))


class LMScorer:
  """Natural-log LM scores of hypothesis texts, incrementally, through KenLM states."""

  def __init__(self, model, kind: str):
    import kenlm  # pylint: disable=import-outside-toplevel
    if kind not in ("char", "word"):
      raise ValueError(f"LM kind must be 'char' or 'word', got {kind!r}")
    self.model, self.kind, self._kenlm = model, kind, kenlm
    self._cache: dict = {}

  def start(self):
    """The state at the start of a sentence (and a fresh cache: one search at a time)."""
    self._cache = {}
    state = self._kenlm.State()
    self.model.BeginSentenceWrite(state)
    return state

  def _step(self, state, unit: str):
    key = (id(state), unit)
    hit = self._cache.get(key)
    if hit is not None and hit[0] is state:
      return hit[1], hit[2]
    out = self._kenlm.State()
    score = self.model.BaseScore(state, unit, out) * _LN10
    self._cache[key] = (state, score, out)  # keeps `state` alive so its id stays unique
    return score, out

  def extend(self, state, partial: str, text: str):
    """Adds `text` (characters, maybe spaces) after (state, partial word); returns
    (natural-log score, new state, new partial word, completed words)."""
    score, words = 0.0, 0
    for ch in text:
      if self.kind == "char":
        if ch == " " and (not partial):
          continue  # repeated/leading spaces are not in the normalised text
        s, state = self._step(state, lm_lib.SPACE if ch == " " else ch)
        score += s
        if ch == " ":
          words, partial = words + 1, ""
        else:
          partial += ch
      elif ch == " ":
        if partial:
          s, state = self._step(state, partial)
          score, words, partial = score + s, words + 1, ""
      else:
        partial += ch
    return score, state, partial, words

  def finish(self, state, partial: str):
    """Score of the end of the sentence (the last word, then </s>); (score, words)."""
    score, words = 0.0, 0
    if partial:
      words = 1
      if self.kind == "word":
        s, state = self._step(state, partial)
        score += s
    s, _ = self._step(state, lm_lib.EOS)
    return score + s, words


@dataclasses.dataclass
class _Prefix:
  p_blank: float = NEG_INF      # log P(alignments of the prefix ending in blank)
  p_label: float = NEG_INF      # ... ending in its last label
  bonus: float = 0.0            # weighted LM + word bonus + hotword credit so far
  state: object = None          # LM state after the completed units
  partial: str = ""             # the unfinished word
  text: str = ""
  hot: float = 0.0              # hotword credit included in `bonus`

  @property
  def acoustic(self) -> float:
    return _logaddexp(self.p_blank, self.p_label)

  @property
  def total(self) -> float:
    return self.acoustic + self.bonus


def _hot_credit(text: str, hotwords: frozenset[str], prefixes: frozenset[str]) -> int:
  """Characters of `text` inside hotwords: completed words that are hotwords, plus the
  unfinished last word where it is the prefix of one."""
  words = text.split(" ")
  done, last = words[:-1], words[-1]
  credit = sum(len(w) for w in done if w in hotwords)
  return credit + (len(last) if last and last in prefixes else 0)


def prefix_beam_search(log_probs: np.ndarray, id_strings: Sequence[str], cfg: BeamConfig,
                       scorer: LMScorer | None = None, num_results: int = 1):
  """Best hypotheses of one utterance: [(text, total score, acoustic log-probability)].

  Args:
    log_probs: [T, V] log-softmax outputs over real frames only.
    id_strings: the text each id adds (tokenizer.id_strings(lang)); id 0 is the blank.
    cfg: beam width, pruning, LM weight and word bonus, hotwords.
    scorer: LM scorer (None: no LM, lm_weight ignored).
  """
  use_lm = scorer is not None and cfg.lm_weight != 0.0
  hotwords = frozenset(w for phrase in cfg.hotwords for w in phrase.split())
  hot_prefixes = frozenset(w[:i] for w in hotwords for i in range(1, len(w) + 1))
  use_hot = bool(hotwords) and cfg.hotword_weight != 0.0
  root = _Prefix(p_blank=0.0, state=scorer.start() if use_lm else None)
  beams: dict[tuple[int, ...], _Prefix] = {(): root}
  t_frames, vocab = log_probs.shape
  for t in range(t_frames):
    frame = log_probs[t]
    cands = np.flatnonzero(frame > cfg.prune_logp)
    if len(cands) > cfg.beam:
      cands = cands[np.argsort(frame[cands])[::-1][:cfg.beam]]
    if BLANK_ID not in cands:
      cands = np.append(cands, BLANK_ID)
    if len(cands) == 1:  # only the blank survives pruning (most frames): no new prefixes
      lp = float(frame[BLANK_ID])
      for prefix in beams.values():
        prefix.p_blank, prefix.p_label = prefix.acoustic + lp, NEG_INF
      continue
    nxt: dict[tuple[int, ...], _Prefix] = {}

    def get(key, parent, label):
      p = nxt.get(key)
      if p is None:
        if label is None:  # same prefix
          p = _Prefix(bonus=parent.bonus, state=parent.state, partial=parent.partial,
                      text=parent.text, hot=parent.hot)
        else:
          add = id_strings[label]
          text = parent.text + add
          bonus, state, partial = parent.bonus, parent.state, parent.partial
          if use_lm or cfg.word_bonus:
            if use_lm:
              s, state, partial, words = scorer.extend(state, partial, add)
              bonus += cfg.lm_weight * s
            else:
              words = _count_words(partial, add)
              partial = (partial + add).split(" ")[-1]
            bonus += cfg.word_bonus * words
          hot = parent.hot
          if use_hot:
            new_hot = cfg.hotword_weight * _hot_credit(text, hotwords, hot_prefixes)
            bonus, hot = bonus + new_hot - parent.hot, new_hot
          p = _Prefix(bonus=bonus, state=state, partial=partial, text=text, hot=hot)
        nxt[key] = p
      return p

    for key, prefix in beams.items():
      last = key[-1] if key else None
      for c in cands:
        c = int(c)
        lp = float(frame[c])
        if c == BLANK_ID:
          same = get(key, prefix, None)
          same.p_blank = _logaddexp(same.p_blank, prefix.acoustic + lp)
        elif c == last:
          same = get(key, prefix, None)  # repeat without a blank: the same prefix
          same.p_label = _logaddexp(same.p_label, prefix.p_label + lp)
          ext = get(key + (c,), prefix, c)  # repeat after a blank: a new label
          ext.p_label = _logaddexp(ext.p_label, prefix.p_blank + lp)
        else:
          ext = get(key + (c,), prefix, c)
          ext.p_label = _logaddexp(ext.p_label, prefix.acoustic + lp)
    beams = dict(sorted(nxt.items(), key=lambda kv: -kv[1].total)[:cfg.beam])

  results = []
  for prefix in beams.values():
    final = prefix.total
    if use_lm:
      s, words = scorer.finish(prefix.state, prefix.partial)
      final += cfg.lm_weight * s + cfg.word_bonus * words
    elif cfg.word_bonus and prefix.partial:
      final += cfg.word_bonus
    if use_hot:  # the last word is complete now: a partial match that is no hotword ends here
      final += cfg.hotword_weight * _hot_credit(prefix.text + " ", hotwords, hot_prefixes) - \
          prefix.hot
    text = " ".join(prefix.text.split())
    results.append((text, final, prefix.acoustic))
  results.sort(key=lambda r: -r[1])
  return results[:num_results]


def _count_words(partial: str, add: str) -> int:
  """Words completed by appending `add` to the unfinished word `partial`."""
  words = 0
  for ch in add:
    if ch == " ":
      words += bool(partial)
      partial = ""
    else:
      partial += ch
  return words


def log_softmax(logits: np.ndarray) -> np.ndarray:
  logits = np.asarray(logits, np.float64)
  m = logits.max(-1, keepdims=True)
  return logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))


def char_lm_log_prob(model, text: str) -> float:
  """Natural-log probability of a whole sentence (<s> ... </s>) under a KenLM character LM."""
  chars = " ".join(lm_lib.units(" ".join(text.split()), "char"))
  return model.score(chars, bos=True, eos=True) * _LN10


class LanguageIdentifier:
  """Spoken language identification from a multilingual CTC model's own posteriors.

  For each candidate language l:
    score(l) = log P(best path restricted to l's outputs | x) + lm_weight * log P_l(its text)
  and the language with the highest score wins. The path term carries the script (a Hindi
  utterance loses most of its probability under Latin outputs); the LM term separates
  languages that share a script, where a superset alphabet alone would always win. It is
  the phonotactic approach of "phone recognition followed by language modelling" (Zissman,
  IEEE Trans. Speech Audio Process. 4(1), 1996) with characters for phones and the
  multilingual CTC model as the recogniser.
  """

  def __init__(self, langs: Sequence[str], masks: np.ndarray, id_strings: Sequence[Sequence[str]],
               char_lms: Sequence, lm_weight: float = 1.0):
    if not len(langs) == len(masks) == len(id_strings) == len(char_lms):
      raise ValueError("LanguageIdentifier: one output mask, id table and char LM per language")
    self.langs, self.masks = list(langs), np.asarray(masks, bool)
    self.id_strings, self.char_lms, self.lm_weight = id_strings, char_lms, lm_weight

  @classmethod
  def for_model(cls, model, tokenizer, langs: Sequence[str], lm_dir: str,
                lm_weight: float = 1.0):
    """The identifier of a CTC model (mlasr.models.ctc) with the character LMs of
    `python -m mlasr.lm` (<lm_dir>/<lang>/char.arpa)."""
    if any(getattr(model, part, None) is not None for part in ("adapters", "heads",
                                                                "output_mask")):
      raise ValueError("This model's posteriors depend on the language (adapters, per-language "
                       "heads or output masks), so they cannot identify it: use a trained LID "
                       "run (--lid_workdir, experiments/lid.py)")
    missing = [l for l in langs if not os.path.exists(os.path.join(lm_dir, l, "char.arpa"))]
    if missing:
      raise FileNotFoundError(f"Language identification needs a character LM per language; "
                              f"{lm_dir} has none for {missing} (run python -m mlasr.lm "
                              "--workdir RUN first)")
    return cls(langs, tokenizer.output_mask(langs), [tokenizer.id_strings(l) for l in langs],
               [lm_lib.load_kenlm(os.path.join(lm_dir, l, "char.arpa")) for l in langs],
               lm_weight)

  def hypotheses(self, log_probs: np.ndarray) -> list[tuple[str, float, float]]:
    """Per language: (best-path text, path log-probability, char-LM log-probability)."""
    out = []
    for mask, strings, model in zip(self.masks, self.id_strings, self.char_lms):
      ids, path = best_path(log_probs, mask)
      text = " ".join("".join(strings[i] for i in ids).split())
      out.append((text, path, char_lm_log_prob(model, text)))
    return out

  @staticmethod
  def combine(hypotheses, lm_weight: float) -> np.ndarray:
    """Per-language scores of `hypotheses` (from .hypotheses) at one LM weight."""
    return np.array([path + lm_weight * lm for _, path, lm in hypotheses])

  def scores(self, log_probs: np.ndarray, lm_weight: float | None = None) -> np.ndarray:
    return self.combine(self.hypotheses(log_probs),
                        self.lm_weight if lm_weight is None else lm_weight)

  def __call__(self, log_probs: np.ndarray) -> int:
    """Index (into `langs`) of the identified language."""
    return int(np.argmax(self.scores(log_probs)))
