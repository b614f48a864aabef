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
  """Natural-log LM scores of hypothesis texts, incrementally, through KenLM states.

  No cache: the beam search reaches each prefix once per utterance (its trie of prefixes)
  and asks for the prefix's state then."""

  def __init__(self, model, kind: str):
    import kenlm  # pylint: disable=import-outside-toplevel
    if kind not in ("char", "word"):
      raise ValueError(f"LM kind must be 'char' or 'word', got {kind!r}")
    self.model, self.kind, self._kenlm = model, kind, kenlm

  def start(self):
    """The state at the start of a sentence."""
    state = self._kenlm.State()
    self.model.BeginSentenceWrite(state)
    return state

  def _step(self, state, unit: str):
    out = self._kenlm.State()
    return self.model.BaseScore(state, unit, out) * _LN10, out

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


class _Node:
  """One prefix (a node of the trie of prefixes) with what its searches share: its text, LM
  state, and the LM score, words and hotword characters its last label added, none of which
  depends on the weights. Made once per _Trie, when a search first reaches it; each label
  sequence is one node (through `children`), so nodes are the searches' dict keys (by
  identity) and no tuple of labels is built and hashed per extension."""
  __slots__ = ("label", "text", "state", "partial", "lm", "words", "credit", "children")

  def __init__(self, label, text, state, partial, lm=0.0, words=0, credit=0):
    self.label = label            # the last label (None at the root)
    self.text = text
    self.state = state            # LM state after the completed units
    self.partial = partial        # the unfinished word
    self.lm = lm                  # natural-log LM score of the units the last label completed
    self.words = words            # words the last label completed
    self.credit = credit          # characters of `text` inside hotwords (_hot_credit)
    self.children: dict[int, _Node] = {}


class _Trie:
  """The prefixes the searches of one utterance reach, under one LM (or none) and one hotword
  list: searches of the same posteriors at other weights (lm.tune's grid) reuse its nodes
  rather than extend KenLM states again."""

  def __init__(self, id_strings: Sequence[str], scorer: LMScorer | None,
               hotwords: frozenset[str]):
    self.id_strings, self.scorer, self.hotwords = id_strings, scorer, hotwords
    self.hot_prefixes = frozenset(w[:i] for w in hotwords for i in range(1, len(w) + 1))
    self.root = _Node(None, "", scorer.start() if scorer is not None else None, "")

  def child(self, parent: _Node, label: int) -> _Node:
    """The node of `parent` + `label`, made (and scored) the first time it is reached."""
    node = parent.children.get(label)
    if node is None:
      add = self.id_strings[label]
      text = parent.text + add
      if self.scorer is not None:
        lm, state, partial, words = self.scorer.extend(parent.state, parent.partial, add)
      else:
        lm, state = 0.0, None
        words = _count_words(parent.partial, add)
        partial = (parent.partial + add).split(" ")[-1]
      credit = _hot_credit(text, self.hotwords, self.hot_prefixes) if self.hotwords else 0
      node = parent.children[label] = _Node(label, text, state, partial, lm, words, credit)
    return node


class _Beam:
  """A prefix at one frame: its node, alignment probabilities and weighted bonus."""
  __slots__ = ("node", "bonus", "hot", "p_blank", "p_label", "acoustic", "total")

  def __init__(self, node, bonus, hot):
    self.node = node
    self.bonus = bonus            # weighted LM + word bonus + hotword credit so far
    self.hot = hot                # hotword credit included in `bonus`
    self.p_blank = NEG_INF        # log P(alignments of the prefix ending in blank)
    self.p_label = NEG_INF        # ... ending in its last label
    self.acoustic = NEG_INF       # logaddexp of the two, set once the frame is done
    self.total = NEG_INF          # acoustic + bonus, what beams are ranked by


def _hot_credit(text: str, hotwords: frozenset[str], prefixes: frozenset[str]) -> int:
  """Characters of `text` inside hotwords: completed words that are hotwords, plus the
  unfinished last word where it is the prefix of one."""
  words = text.split(" ")
  done, last = words[:-1], words[-1]
  credit = sum(len(w) for w in done if w in hotwords)
  return credit + (len(last) if last and last in prefixes else 0)


def _frame_candidates(log_probs: np.ndarray, beam: int, prune_logp: float
                      ) -> list[list[tuple[int, float]]]:
  """Per frame, the (label, log-probability) pairs the search tries, in the order it tries
  them: the labels above `prune_logp` by id (the `beam` most probable, best first, where more
  pass), then the blank if it did not. Plain Python numbers: the search reads each many times."""
  out = []
  for frame in log_probs:
    cands = np.flatnonzero(frame > prune_logp)
    if len(cands) > beam:
      cands = cands[np.argsort(frame[cands])[::-1][:beam]]
    if BLANK_ID not in cands:
      cands = np.append(cands, BLANK_ID)
    out.append(list(zip(cands.tolist(), frame[cands].tolist())))
  return out


def prefix_beam_search(log_probs: np.ndarray, id_strings: Sequence[str], cfg: BeamConfig,
                       scorer: LMScorer | None = None, num_results: int = 1):
  """Best hypotheses of one utterance: [(text, total score, acoustic log-probability)].

  Args:
    log_probs: [T, V] log-softmax outputs over real frames only.
    id_strings: the text each id adds (tokenizer.id_strings(lang)); id 0 is the blank.
    cfg: beam width, pruning, LM weight and word bonus, hotwords.
    scorer: LM scorer (None: no LM, lm_weight ignored).
  """
  return prefix_beam_searches(log_probs, id_strings, [cfg], scorer, num_results)[0]


def prefix_beam_searches(log_probs: np.ndarray, id_strings: Sequence[str],
                         cfgs: Sequence[BeamConfig], scorer: LMScorer | None = None,
                         num_results: int = 1) -> list[list[tuple[str, float, float]]]:
  """prefix_beam_search of one utterance under each of `cfgs` (a grid of weights): the same
  results, with the frame candidates and the prefixes' LM scores computed once for all."""
  tries, candidates, out = {}, {}, []
  for cfg in cfgs:
    use_lm = scorer is not None and cfg.lm_weight != 0.0
    hotwords = frozenset(w for phrase in cfg.hotwords for w in phrase.split())
    use_hot = bool(hotwords) and cfg.hotword_weight != 0.0
    key = (use_lm, hotwords if use_hot else frozenset())
    if key not in tries:
      tries[key] = _Trie(id_strings, scorer if use_lm else None, key[1])
    if (cfg.beam, cfg.prune_logp) not in candidates:
      candidates[cfg.beam, cfg.prune_logp] = _frame_candidates(log_probs, cfg.beam,
                                                               cfg.prune_logp)
    out.append(_search(candidates[cfg.beam, cfg.prune_logp], tries[key], cfg, use_lm, use_hot,
                       num_results))
  return out


def _search(frames: list[list[tuple[int, float]]], trie: _Trie, cfg: BeamConfig, use_lm: bool,
            use_hot: bool, num_results: int) -> list[tuple[str, float, float]]:
  """The search itself (Hannun et al.'s prefix beam search, module docstring)."""
  use_words = use_lm or cfg.word_bonus
  lm_weight, word_bonus, hotword_weight = cfg.lm_weight, cfg.word_bonus, cfg.hotword_weight
  lae = _logaddexp

  def extend(b: _Beam, node: _Node) -> _Beam:
    """The beam of `node`, a child of b.node, with its bonus."""
    bonus, hot = b.bonus, b.hot
    if use_words:
      if use_lm:
        bonus += lm_weight * node.lm
      bonus += word_bonus * node.words
    if use_hot:
      new_hot = hotword_weight * node.credit
      bonus, hot = bonus + new_hot - b.hot, new_hot
    return _Beam(node, bonus, hot)

  root = _Beam(trie.root, 0.0, 0.0)
  root.p_blank = root.acoustic = root.total = 0.0
  beams = [root]
  for cands in frames:
    if len(cands) == 1:  # only the blank survives pruning: no new prefixes
      lp = cands[0][1]
      for b in beams:  # p_label becomes -inf, so the acoustic score is p_blank
        b.p_blank = b.acoustic = b.acoustic + lp
        b.p_label = NEG_INF
        b.total = b.acoustic + b.bonus
      continue
    nxt: dict[_Node, _Beam] = {}  # insertion order breaks ties in the ranking below
    for b in beams:
      node, acoustic = b.node, b.acoustic
      for c, lp in cands:
        if c == BLANK_ID or c == node.label:
          same = nxt.get(node)
          if same is None:
            same = nxt[node] = _Beam(node, b.bonus, b.hot)
          if c == BLANK_ID:
            same.p_blank = lae(same.p_blank, acoustic + lp)
            continue
          same.p_label = lae(same.p_label, b.p_label + lp)  # a repeat without a blank
          p = b.p_blank  # after a blank, the repeat is a new label
        else:
          p = acoustic
        kid = node.children.get(c) or trie.child(node, c)  # (the call: a new node)
        ext = nxt.get(kid)
        if ext is None:
          ext = nxt[kid] = extend(b, kid)
          ext.p_label = p + lp  # = logaddexp(-inf, p + lp)
        else:
          ext.p_label = lae(ext.p_label, p + lp)
    for b in nxt.values():
      b.acoustic = lae(b.p_blank, b.p_label)
      b.total = b.acoustic + b.bonus
    beams = sorted(nxt.values(), key=lambda b: -b.total)[:cfg.beam]

  results = []
  for b in beams:
    node, final = b.node, b.total
    if use_lm:
      s, words = trie.scorer.finish(node.state, node.partial)
      final += cfg.lm_weight * s + cfg.word_bonus * words
    elif cfg.word_bonus and node.partial:
      final += cfg.word_bonus
    if use_hot:  # the last word is complete now: a partial match that is no hotword ends here
      final += cfg.hotword_weight * _hot_credit(node.text + " ", trie.hotwords,
                                                trie.hot_prefixes) - b.hot
    text = " ".join(node.text.split())
    results.append((text, final, b.acoustic))
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
