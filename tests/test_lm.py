"""N-gram estimation against KenLM's own scoring, normalisation and held-out text."""

import pytest

from mlasr import lm

kenlm = pytest.importorskip("kenlm")

TEXT = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog",
        "the cat ate the rat", "on the mat the cat sat", "a rat sat on a log",
        "the dog ate", "a cat sat", "the mat", "dogs and cats and rats"]


@pytest.fixture(scope="module", params=[("word", 3), ("char", 5), ("char", 2), ("word", 2)],
                ids=lambda p: f"{p[0]}{p[1]}")
def model_and_arpa(request, tmp_path_factory):
  kind, order = request.param
  model = lm.estimate((lm.units(t, kind) for t in TEXT), order)
  path = str(tmp_path_factory.mktemp("lm") / f"{kind}{order}.arpa")
  model.write_arpa(path)
  return kind, model, kenlm.Model(path)


def test_kenlm_scores_equal_the_formulas(model_and_arpa):
  kind, model, ken = model_and_arpa
  for text in TEXT[:4] + ["the rat sat on the dog", "a zebra sat"]:
    toks = lm.units(text, kind)
    history, ours = [lm.BOS], 0.0
    for w in toks + [lm.EOS]:
      ours += model.log10_prob(w if (w,) in model.grams[0] else lm.UNK, history)
      history.append(w)
    assert ken.score(" ".join(toks), bos=True, eos=True) == pytest.approx(ours, abs=1e-4)


def test_every_history_sums_to_one(model_and_arpa):
  kind, model, ken = model_and_arpa
  vocab = [g[0] for g in model.grams[0] if g[0] != lm.BOS]
  histories = {()}
  for text in TEXT[:3]:
    toks = [lm.BOS] + lm.units(text, kind)
    for i in range(1, len(toks) + 1):
      histories.add(tuple(toks[max(0, i - model.order + 1):i]))
  histories.add(("zebra",) if kind == "word" else ("z",))  # unseen history
  for h in histories:
    state = kenlm.State()
    if h and h[0] == lm.BOS:
      ken.BeginSentenceWrite(state)
      h = h[1:]
    else:
      ken.NullContextWrite(state)
    for w in h:
      nxt = kenlm.State()
      ken.BaseScore(state, w, nxt)
      state = nxt
    total = sum(10 ** ken.BaseScore(state, w, kenlm.State()) for w in vocab)
    assert total == pytest.approx(1.0, abs=1e-4), h


def test_kneser_ney_prefers_versatile_words():
  """Continuation counts: a word frequent in one context only gets a small unigram share."""
  text = ["san francisco"] * 20 + ["the cat", "a cat", "my cat", "one cat", "big cat"]
  model = lm.estimate((t.split() for t in text), 2)
  uni = {g[0]: 10 ** p for g, (p, _) in model.grams[0].items() if g[0] != lm.BOS}
  assert uni["francisco"] < uni["cat"]  # 20 raw counts vs 5, but one left context vs five


def test_training_text_excludes_eval_sentences():
  train = {"en": ["a b c", "d e f"], "hi": ["x y"]}
  extra = {"en": ["g h", "held out", "a b c"], "hi": ["dev sentence", "z"]}
  texts, counts = lm.training_text(train, extra, {"en": {"held out"}, "hi": {"dev sentence"}})
  assert "held out" not in texts["en"] and "dev sentence" not in texts["hi"]
  assert counts["en"] == dict(train=2, extra=3, removed_eval_sentences=1, kept=4)
  assert counts["hi"]["removed_eval_sentences"] == 1


def test_units_round_trip():
  assert lm.units("ab c", "char") == ["a", "b", "|", "c"]
  assert lm.units("ab  c", "word") == ["ab", "c"]
  with pytest.raises(ValueError, match="char' or 'word"):
    lm.units("x", "phone")
