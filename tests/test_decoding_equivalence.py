"""The fast prefix beam search (trie of prefixes, searches of a weight grid sharing it, a pool
of processes) gives exactly what the plain search gives: same texts, same float scores."""
import dataclasses
import math
import os

import numpy as np
import pytest

from mlasr import decoding, lm
from mlasr.evaluators import asr

kenlm = pytest.importorskip("kenlm")

# id 0 blank; pieces of several characters and spaces inside ids, as subword tokenizers have.
SYMS = ["", "?", " ", "a", "b", "c", "t", "h", "e", "th", " a", "at ", "s"]
TEXT = ["the cat", "a cat", "the cat ate", "that cat", "the hat", "a cat sat", "as the bat",
        "the bats", "a bat sat at the hat"]


# ---------------------------------------------------------------------------------------------
# The plain search, as mlasr.decoding had it before the trie: one dict entry per label tuple,
# every extension scored through the LM as it is made. The reference the fast one must equal.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Prefix:
  p_blank: float = decoding.NEG_INF
  p_label: float = decoding.NEG_INF
  bonus: float = 0.0
  state: object = None
  partial: str = ""
  text: str = ""
  hot: float = 0.0

  @property
  def acoustic(self):
    return decoding._logaddexp(self.p_blank, self.p_label)  # pylint: disable=protected-access

  @property
  def total(self):
    return self.acoustic + self.bonus


def _reference_search(log_probs, id_strings, cfg, scorer=None, num_results=1):
  # pylint: disable=protected-access
  lae, hot_credit = decoding._logaddexp, decoding._hot_credit
  use_lm = scorer is not None and cfg.lm_weight != 0.0
  hotwords = frozenset(w for phrase in cfg.hotwords for w in phrase.split())
  hot_prefixes = frozenset(w[:i] for w in hotwords for i in range(1, len(w) + 1))
  use_hot = bool(hotwords) and cfg.hotword_weight != 0.0
  beams = {(): _Prefix(p_blank=0.0, state=scorer.start() if use_lm else None)}
  for frame in log_probs:
    cands = np.flatnonzero(frame > cfg.prune_logp)
    if len(cands) > cfg.beam:
      cands = cands[np.argsort(frame[cands])[::-1][:cfg.beam]]
    if 0 not in cands:
      cands = np.append(cands, 0)
    if len(cands) == 1:
      for prefix in beams.values():
        prefix.p_blank, prefix.p_label = prefix.acoustic + float(frame[0]), decoding.NEG_INF
      continue
    nxt = {}

    def get(key, parent, label):
      p = nxt.get(key)  # pylint: disable=cell-var-from-loop
      if p is None:
        if label is None:
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
              words = decoding._count_words(partial, add)
              partial = (partial + add).split(" ")[-1]
            bonus += cfg.word_bonus * words
          hot = parent.hot
          if use_hot:
            new_hot = cfg.hotword_weight * hot_credit(text, hotwords, hot_prefixes)
            bonus, hot = bonus + new_hot - parent.hot, new_hot
          p = _Prefix(bonus=bonus, state=state, partial=partial, text=text, hot=hot)
        nxt[key] = p  # pylint: disable=cell-var-from-loop
      return p

    for key, prefix in beams.items():
      last = key[-1] if key else None
      for c in cands:
        c, lp = int(c), float(frame[c])
        if c == 0:
          same = get(key, prefix, None)
          same.p_blank = lae(same.p_blank, prefix.acoustic + lp)
        elif c == last:
          same = get(key, prefix, None)
          same.p_label = lae(same.p_label, prefix.p_label + lp)
          ext = get(key + (c,), prefix, c)
          ext.p_label = lae(ext.p_label, prefix.p_blank + lp)
        else:
          ext = get(key + (c,), prefix, c)
          ext.p_label = lae(ext.p_label, prefix.acoustic + lp)
    beams = dict(sorted(nxt.items(), key=lambda kv: -kv[1].total)[:cfg.beam])
  results = []
  for prefix in beams.values():
    final = prefix.total
    if use_lm:
      s, words = scorer.finish(prefix.state, prefix.partial)
      final += cfg.lm_weight * s + cfg.word_bonus * words
    elif cfg.word_bonus and prefix.partial:
      final += cfg.word_bonus
    if use_hot:
      final += cfg.hotword_weight * hot_credit(prefix.text + " ", hotwords, hot_prefixes) - \
          prefix.hot
    results.append((" ".join(prefix.text.split()), final, prefix.acoustic))
  results.sort(key=lambda r: -r[1])
  return results[:num_results]


def _utterances(seed, n):
  """Random posteriors, peaky (a trained model's) or flat (many candidates per frame)."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    t = int(rng.integers(3, 40))
    logits = rng.normal(size=(t, len(SYMS))) * (1.0 if i % 3 == 0 else 2.0)
    logits[np.arange(t), rng.integers(0, len(SYMS), t)] += 0.0 if i % 3 == 0 else 4.0
    logits[rng.random(t) < 0.4, 0] += 6.0  # blank-only frames
    out.append(decoding.log_softmax(logits))
  return out


def _arpa(tmp_path, name, kind, order, text=TEXT):
  path = tmp_path / name
  path.parent.mkdir(parents=True, exist_ok=True)
  lm.estimate((lm.units(t, kind) for t in text), order).write_arpa(str(path))
  return str(path)


GRID = [decoding.BeamConfig(beam=8)] + [
    decoding.BeamConfig(beam=8, lm_weight=a, word_bonus=b)
    for a in (0.2, 0.5, 1.0) for b in (0.0, 1.5)]
OTHERS = [decoding.BeamConfig(beam=3, prune_logp=-2.0, lm_weight=0.7, word_bonus=0.5),
          decoding.BeamConfig(beam=16, prune_logp=-1e9, word_bonus=1.0),  # bonus without LM
          decoding.BeamConfig(beam=6, lm_weight=0.4, hotwords=("bat sat", "hats"),
                              hotword_weight=1.5),
          decoding.BeamConfig(beam=6, hotwords=("cat",), hotword_weight=2.0)]


@pytest.mark.parametrize("kind,order", [("char", 4), ("word", 2)])
def test_fast_search_equals_the_plain_one(tmp_path, kind, order):
  scorer = decoding.LMScorer(kenlm.Model(_arpa(tmp_path, f"{kind}.arpa", kind, order)), kind)
  for log_probs in _utterances(0, 12):
    for cfg in GRID + OTHERS:
      assert decoding.prefix_beam_search(log_probs, SYMS, cfg, scorer, num_results=5) == \
          _reference_search(log_probs, SYMS, cfg, scorer, num_results=5)
    # A grid decoded at once (sharing the trie and the frame candidates): the same results.
    assert decoding.prefix_beam_searches(log_probs, SYMS, GRID + OTHERS, scorer, 5) == \
        [_reference_search(log_probs, SYMS, cfg, scorer, 5) for cfg in GRID + OTHERS]


class _Tokenizer:
  """What beam_grid asks a tokenizer: one id table for both languages, no restriction."""

  def id_strings(self, lang):
    del lang
    return SYMS

  def output_mask(self, langs):
    return np.ones([len(langs), len(SYMS)], bool)


@pytest.mark.parametrize("workers", [1, 2])
def test_beam_grid_equals_one_search_at_a_time(tmp_path, workers):
  """asr.beam_grid, in this process or a pool, = the plain search per utterance and point,
  each utterance with its own language's LM, in input order."""
  _arpa(tmp_path, "xx/char.arpa", "char", 4)
  _arpa(tmp_path, "yy/char.arpa", "char", 3, ["bab cab", "hats at bats", "ab ba"] * 3)
  lms = {l: decoding.LMScorer(kenlm.Model(str(tmp_path / l / "char.arpa")), "char")
         for l in ("xx", "yy")}
  utts = [dict(lang="xy"[i % 2] * 2, log_probs=lp) for i, lp in enumerate(_utterances(1, 12))]
  grid = [{}, {"xx": dict(lm_weight=0.5, word_bonus=1.0)},
          {"xx": dict(lm_weight=1.0, word_bonus=0.0), "yy": dict(lm_weight=0.3, word_bonus=2.0)}]
  hyps = asr.beam_grid(utts, _Tokenizer(), grid, str(tmp_path), "char", beam=6, workers=workers)
  for u, row in zip(utts, hyps):
    want = []
    for settings in grid:
      s = settings.get(u["lang"], {})
      cfg = decoding.BeamConfig(beam=6, lm_weight=s.get("lm_weight", 0.0),
                                word_bonus=s.get("word_bonus", 0.0))
      want.append(_reference_search(u["log_probs"], SYMS, cfg, lms[u["lang"]])[0][0])
    assert row == want
  one = asr.beam_transcribe([dict(u) for u in utts], _Tokenizer(), grid[2], str(tmp_path),
                            "char", beam=6, workers=workers)
  assert [u["hyp"] for u in one] == [row[2] for row in hyps]


def test_build_lms_in_parallel_writes_the_same_files(tmp_path):
  texts = {"xx": TEXT * 3, "yy": ["bab cab", "hats at bats", "ab ba"] * 4, "zz": TEXT[::-1]}
  metas = {}
  for workers in (1, 2):
    metas[workers] = lm.build_lms(texts, str(tmp_path / str(workers)), 4, 2, workers=workers)
  assert metas[1] == metas[2] and list(metas[1]) == ["xx", "yy", "zz"]
  for lang in texts:
    for kind in ("char", "word"):
      files = [(tmp_path / str(w) / lang / f"{kind}.arpa").read_bytes() for w in (1, 2)]
      assert files[0] == files[1]
  # KenLM reads them (the sentence score of a training sentence is a probability).
  model = kenlm.Model(os.path.join(tmp_path, "2", "xx", "char.arpa"))
  assert -math.inf < decoding.char_lm_log_prob(model, "the cat") < 0.0
