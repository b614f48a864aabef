"""CTC prefix beam search against greedy decoding, brute force, an LM and hotwords."""
import itertools

import numpy as np
import pytest

from mlasr import decoding, lm
from mlasr.tasks import ctc

SYMS = ["", "?", " ", "a", "b", "c", "t", "k", "h", "e", "l", "o", "u"]  # id 0 blank


def _collapse(path):
  out, prev = [], None
  for p in path:
    if p != prev and p != 0:
      out.append(p)
    prev = p
  return tuple(out)


def _text(ids):
  return " ".join("".join(SYMS[i] for i in ids).split())


def test_beam_one_without_lm_equals_greedy():
  """With a frame argmax above 0.5 (peaky posteriors, as trained CTC models give) best path
  and a one-prefix beam make the same choice at every frame."""
  rng = np.random.default_rng(0)
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  max_t = 40  # every utterance padded to one shape: one compile of greedy_decode, not 20
  for _ in range(20):
    t = int(rng.integers(5, max_t))
    logits = rng.normal(size=(t, len(SYMS)))
    logits[np.arange(t), rng.integers(0, len(SYMS), t)] += 6.0
    padded = np.pad(logits, ((0, max_t - t), (0, 0)), constant_values=-1e4)
    padded[t:, 1] = 0.0  # padding frames argmax a real token: the mask alone must drop them
    tokens, length = ctc.greedy_decode(jnp.asarray(padded[None]),
                                       jnp.asarray((np.arange(max_t) < t)[None]))
    greedy = _text(np.asarray(tokens[0, :int(length[0])]).tolist())
    beam = decoding.prefix_beam_search(decoding.log_softmax(logits), SYMS,
                                       decoding.BeamConfig(beam=1, prune_logp=-1e9))
    assert beam[0][0] == greedy


def test_wide_beam_finds_the_most_probable_labelling_brute_force():
  rng = np.random.default_rng(1)
  vocab = 4
  syms = ["", "a", "b", "c"]
  for _ in range(10):
    t = 5
    logp = decoding.log_softmax(rng.normal(size=(t, vocab)) * 2)
    totals = {}
    for path in itertools.product(range(vocab), repeat=t):
      y = _collapse(path)
      totals[y] = np.logaddexp(totals.get(y, -np.inf), sum(logp[i, p] for i, p in enumerate(path)))
    best = max(totals, key=totals.get)
    out = decoding.prefix_beam_search(logp, syms, decoding.BeamConfig(beam=200, prune_logp=-1e9),
                                      num_results=5)
    assert out[0][0] == "".join(syms[i] for i in best)
    assert out[0][2] == pytest.approx(totals[best], abs=1e-9)
    for text, _, acoustic in out:  # every returned prefix carries its exact probability
      key = tuple(syms.index(c) for c in text)
      assert acoustic == pytest.approx(totals[key], abs=1e-9)


def _frames(text_probs):
  """Posteriors from a list of {symbol: prob} per frame (rest to blank)."""
  rows = []
  for probs in text_probs:
    row = np.full(len(SYMS), 1e-4)
    for sym, p in probs.items():
      row[SYMS.index(sym)] = p
    row[0] = max(1.0 - row[1:].sum(), 1e-4)
    rows.append(np.log(row / row.sum()))
  return np.asarray(rows)


def _spell(word_probs):
  """Frames for a sequence of letters (each letter frame followed by a blank frame)."""
  frames = []
  for probs in word_probs:
    frames += [probs, {}]
  return frames


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory):
  kenlm = pytest.importorskip("kenlm")
  text = ["the cat", "a cat", "the cat ate", "that cat", "the hat", "a cat sat"] * 5
  model = lm.estimate((lm.units(t, "char") for t in text), 4)
  path = str(tmp_path_factory.mktemp("lm") / "char.arpa")
  model.write_arpa(path)
  return decoding.LMScorer(kenlm.Model(path), "char")


def test_lm_fixes_an_acoustic_confusion(char_lm):
  # The acoustics prefer "k" over "c" (0.55 vs 0.4): "the kat". The LM knows "the cat".
  frames = _frames(_spell([{"t": .9}, {"h": .9}, {"e": .9}, {" ": .9}, {"k": .55, "c": .4},
                           {"a": .9}, {"t": .9}]))
  plain = decoding.prefix_beam_search(frames, SYMS, decoding.BeamConfig(beam=8))
  assert plain[0][0] == "the kat"
  fixed = decoding.prefix_beam_search(frames, SYMS, decoding.BeamConfig(beam=8, lm_weight=0.5),
                                      char_lm)
  assert fixed[0][0] == "the cat"


def test_word_lm_scores_complete_words(tmp_path):
  kenlm = pytest.importorskip("kenlm")
  text = ["the cat", "a cat", "the cat ate", "the hat"] * 5
  model = lm.estimate((lm.units(t, "word") for t in text), 2)
  model.write_arpa(str(tmp_path / "word.arpa"))
  scorer = decoding.LMScorer(kenlm.Model(str(tmp_path / "word.arpa")), "word")
  frames = _frames(_spell([{"t": .9}, {"h": .9}, {"e": .9}, {" ": .9}, {"k": .55, "c": .4},
                           {"a": .9}, {"t": .9}]))
  out = decoding.prefix_beam_search(frames, SYMS, decoding.BeamConfig(beam=8, lm_weight=1.0),
                                    scorer)
  assert out[0][0] == "the cat"


def test_hotword_recovers_a_rare_word():
  # "lalu" is a name the acoustics get slightly wrong ("lalo"); only biasing recovers it.
  frames = _frames(_spell([{"h": .9}, {"e": .9}, {"l": .9}, {"l": .9}, {"o": .9}, {" ": .9},
                           {"l": .9}, {"a": .9}, {"l": .9}, {"o": .5, "u": .45}]))
  assert decoding.prefix_beam_search(frames, SYMS, decoding.BeamConfig(beam=8))[0][0] == \
      "hello lalo"
  biased = decoding.BeamConfig(beam=8, hotwords=("lalu",), hotword_weight=1.0)
  assert decoding.prefix_beam_search(frames, SYMS, biased)[0][0] == "hello lalu"
  # A partial match that leaves the hotword gets no lasting credit.
  other = decoding.BeamConfig(beam=8, hotwords=("lalx",), hotword_weight=1.0)
  text, score, acoustic = decoding.prefix_beam_search(frames, SYMS, other)[0]
  assert text == "hello lalo" and score == pytest.approx(acoustic)


def test_word_bonus_counts_words():
  frames = _frames(_spell([{"a": .9}, {" ": .9}, {"b": .9}]))
  base = decoding.prefix_beam_search(frames, SYMS, decoding.BeamConfig(beam=4))[0]
  bonus = decoding.prefix_beam_search(frames, SYMS, decoding.BeamConfig(beam=4, word_bonus=2.0))[0]
  assert base[0] == bonus[0] == "a b"
  assert bonus[1] - base[1] == pytest.approx(4.0)


def test_best_path_matches_device_greedy_and_restricted_brute_force():
  """Host best path = the jnp greedy decoder; restricted to some outputs, its ids stay inside
  them and its score is the best over every allowed frame path (brute force)."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(2)
  for _ in range(10):
    t = int(rng.integers(5, 30))
    logp = decoding.log_softmax(rng.normal(size=(t, len(SYMS))) * 3)
    tokens, length = ctc.greedy_decode(jnp.asarray(logp[None]), jnp.ones((1, t)))
    ids, score = decoding.best_path(logp)
    assert ids == np.asarray(tokens[0, :int(length[0])]).tolist()
    assert score == pytest.approx(logp.max(-1).sum())
  allowed = np.array([True, True, False, True])
  for _ in range(5):
    logp = decoding.log_softmax(rng.normal(size=(5, 4)) * 2)
    best = max(itertools.product([0, 1, 3], repeat=5),
               key=lambda path: sum(logp[i, p] for i, p in enumerate(path)))
    ids, score = decoding.best_path(logp, allowed)
    assert 2 not in ids and tuple(ids) == _collapse(best)
    assert score == pytest.approx(sum(logp[i, p] for i, p in enumerate(best)))
    assert np.isneginf(decoding.restrict(logp, allowed)[:, 2]).all()


def _lm_file(tmp_path, name, text):
  model = lm.estimate((lm.units(t, "char") for t in text), 4)
  path = str(tmp_path / f"{name}.arpa")
  model.write_arpa(path)
  return path


def test_language_identifier_script_and_lm(tmp_path):
  kenlm = pytest.importorskip("kenlm")
  # "xx" writes with {t h e c a}; "yy" with a superset that adds {k o l u}.
  x_chars, y_chars = set("thecas "), set("thecaskolu ")
  masks = np.array([[i < 2 or s in chars for i, s in enumerate(SYMS)]
                    for chars in (x_chars, y_chars)])
  lms = [kenlm.Model(_lm_file(tmp_path, "xx", ["the cat", "a cat", "the cat ate", "that cat"] * 5)),
         kenlm.Model(_lm_file(tmp_path, "yy", ["kolu lok", "lulu kok", "ulk kolo"] * 5))]
  ident = decoding.LanguageIdentifier(["xx", "yy"], masks, [SYMS, SYMS], lms, lm_weight=1.0)
  # Script: letters only "yy" has win whatever the LM weight.
  yy = _frames(_spell([{"k": .9}, {"o": .9}, {"l": .9}, {"u": .9}]))
  assert ident(yy) == 1 and int(np.argmax(ident.scores(yy, lm_weight=0.0))) == 1
  # Shared letters: the acoustics slightly prefer "k" (only "yy" has it), so the superset
  # alphabet wins on the path alone; the LM term hands it back to "xx".
  xx = _frames(_spell([{"t": .9}, {"h": .9}, {"e": .9}, {" ": .9}, {"k": .5, "c": .45},
                       {"a": .9}, {"t": .9}]))
  hyps = ident.hypotheses(xx)
  assert [h[0] for h in hyps] == ["the cat", "the kat"]
  assert hyps[1][1] > hyps[0][1]
  assert int(np.argmax(ident.scores(xx, lm_weight=0.0))) == 1
  assert ident(xx) == 0
  # The sentence score is KenLM's own, summed unit by unit through the incremental scorer.
  scorer = decoding.LMScorer(lms[0], "char")
  s, state, partial, _ = scorer.extend(scorer.start(), "", "the cat")
  end, _ = scorer.finish(state, partial)
  assert decoding.char_lm_log_prob(lms[0], "the  cat ") == pytest.approx(s + end)


def test_lid_weight_tuned_by_accuracy(tmp_path):
  """lm.tune_lid picks the smallest weight of the best accuracy; weight 0 (path only) loses
  the shared-alphabet utterance to the superset alphabet."""
  kenlm = pytest.importorskip("kenlm")
  masks = np.array([[i < 2 or s in chars for i, s in enumerate(SYMS)]
                    for chars in (set("thecas "), set("thecaskolu "))])
  lms = [kenlm.Model(_lm_file(tmp_path, "xx", ["the cat", "a cat", "the cat ate"] * 5)),
         kenlm.Model(_lm_file(tmp_path, "yy", ["kolu lok", "lulu kok", "ulk kolo"] * 5))]
  ident = decoding.LanguageIdentifier(["xx", "yy"], masks, [SYMS, SYMS], lms)
  utts = [dict(lang="xx", log_probs=_frames(_spell([{"t": .9}, {"h": .9}, {"e": .9}, {" ": .9},
                                                    {"k": .5, "c": .45}, {"a": .9}]))),
          dict(lang="yy", log_probs=_frames(_spell([{"k": .9}, {"o": .9}, {"l": .9}])))]
  out = lm.tune_lid(utts, ident, weights=(0.0, 0.5, 1.0))
  assert out["grid"] == {"0.0": 0.5, "0.5": 1.0, "1.0": 1.0}
  assert out["lm_weight"] == 0.5 and out["accuracy"] == 1.0 and out["langs"] == ["xx", "yy"]
