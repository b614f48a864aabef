"""Tests for data_prep.text_sources: sentence filters and the per-language sentence cache."""

import collections

import pytest

from data_prep import text_sources as ts


@pytest.mark.parametrize("text,lang,reason", [
    ("The cat sat on the mat.", "en", None),
    ("Two words.", "en", "length"),
    (" ".join(["word"] * 21) + ".", "en", "length"),
    ("This has no final stop", "en", "ending"),
    ("And then it trailed off…", "en", "ending"),
    ("I have 3 cats at home.", "en", "digits"),
    ("Visit http://example.com for more.", "en", "code"),
    ("Set the value with x = y now.", "en", "code"),
    ("lower case start is rejected.", "en", "lowercase_start"),
    ("Это простое русское предложение.", "ru", None),
    ("Это очень длинное предложение про операционную систему Linux.", "ru",
     "latin_in_nonlatin"),
    ("Это sentence is mostly English words here.", "ru", "script"),
    ("यह एक हिंदी वाक्य है।", "hi", None),
    ("यह बहुत लंबी फ़ाइल अब PDF प्रारूप में उपलब्ध है।", "hi", "latin_in_nonlatin"),
    ("Click the button to open the dialog.", "it", "english"),
    ("Questa è una frase italiana.", "it", None),
    ("Tohle je česká věta o kurvě.", "cs", "crude"),
    ("ఇది ఒక తెలుగు వాక్యం.", "te", None),
])
def test_reject_reason(text, lang, reason):
  assert ts.reject_reason(text, lang) == reason


def test_italian_apostrophe_accents():
  fixed = ts.fix_italian_accents("Perche' e' sempre piu' difficile, un po' alla volta.")
  assert fixed == "Perché è sempre più difficile, un po' alla volta."
  assert ts.fix_italian_accents("Dell'amico e dell'altro.") == "Dell'amico e dell'altro."


def test_split_and_filter_counts_rejections():
  counts = collections.Counter()
  block = "Primo esempio di frase corta.  Seconda   frase\u00a0qui! Ho visto 3 gatti."
  kept = list(ts.filter_sentences([block], "it", counts))
  assert kept == ["Primo esempio di frase corta.", "Seconda frase qui!"]
  assert counts["kept"] == 2 and counts["digits"] == 1


def test_nfc_normalisation():
  decomposed = "Cafe\u0301 e\u0300 chiuso oggi."
  assert ts.split_sentences(decomposed) == ["Café è chiuso oggi."]


def test_unknown_language_raises():
  with pytest.raises(KeyError, match="languages with sources"):
    ts.extract_sentences("xx")


def test_cached_sentences_carry_source_and_license(tiny_benchmark):
  del tiny_benchmark  # the build fetched and cached the sentences of hi
  sents = ts.load_sentences("hi")
  assert len(sents) > 500
  packages = {s.package: s.license for lang in ts.SOURCES for s in ts.SOURCES[lang]}
  for s in sents[:200] + sents[-200:]:
    assert s.source in packages and s.license == packages[s.source]
    assert ts.reject_reason(s.text, "hi") is None
  assert len({s.text.casefold() for s in sents}) == len(sents)
