"""Tests for mlasr.data.text.normalize on real sentences in several scripts."""

import random
import unicodedata

import pytest

from mlasr.data import text

# (lang, raw, expected). Expected strings are typed by hand; NFC only makes their code points
# canonical (e.g. Devanagari nukta letters, which Unicode keeps decomposed).
CASES = [
    ("en", "It's a “test” — isn't it? Well-known: 42% of people!",
     "it's a test isn't it well known 42 of people"),
    ("en", "The U.S.A. (1776) & 'quoted' words…", "the u s a 1776 quoted words"),
    ("it", "Dell'anno scorso, l’amico disse: «Sì, un po' di più».",
     "dell'anno scorso l'amico disse sì un po di più"),
    ("it", "Perché l'ho fatto? Perché all'epoca c'era l'occasione!",
     "perché l'ho fatto perché all'epoca c'era l'occasione"),
    ("ca", "La col·lecció de l'Ajuntament és gran; l'any 2020 va ser difícil.",
     "la col·lecció de l'ajuntament és gran l'any 2020 va ser difícil"),
    ("ca", "Què hi fa, aquest paraigua, a l'armari?", "què hi fa aquest paraigua a l'armari"),
    ("ru", "Привет, мир! Ёлка — это «дерево».", "привет мир ёлка это дерево"),
    ("ru", "Съешь же ещё этих мягких французских булок, да выпей чаю.",
     "съешь же ещё этих мягких французских булок да выпей чаю"),
    ("hi", "भारत एक विशाल देश है। यहाँ क़लम ज़्यादा है॥",
     "भारत एक विशाल देश है यहाँ क़लम ज़्यादा है"),
    ("hi", "क्या आप मेरी मदद कर सकते हैं?", "क्या आप मेरी मदद कर सकते हैं"),
    ("mr", "माझं नाव राम आहे, आणि मी पुण्यात राहतो.", "माझं नाव राम आहे आणि मी पुण्यात राहतो"),
    ("mr", "ही फाइल उघडता आली नाही।", "ही फाइल उघडता आली नाही"),
    ("te", "తెలుగు ఒక ద్రావిడ భాష. ఇది చాలా అందమైనది!", "తెలుగు ఒక ద్రావిడ భాష ఇది చాలా అందమైనది"),
    ("te", "ఫైల్‌ను తెరవడం సాధ్యం కాలేదు.", "ఫైల్ను తెరవడం సాధ్యం కాలేదు"),
    ("cs", "Příliš žluťoučký kůň úpěl ďábelské ódy.", "příliš žluťoučký kůň úpěl ďábelské ódy"),
    ("cs", "Co-to? „Ano,“ řekl.", "co to ano řekl"),
    ("fi", "Hyvää päivää! Mitä kuuluu?", "hyvää päivää mitä kuuluu"),
    ("fi", "Älä unohda: tiedosto ”raportti.txt” on työpöydällä.",
     "älä unohda tiedosto raportti txt on työpöydällä"),
    ("tr", "İSTANBUL'da IŞIK yandı.", "istanbul'da ışık yandı"),
    ("de", "Die Straße ist ﬁne, ＡＢＣ²!", "die strasse ist fine abc2"),
]


@pytest.mark.parametrize("lang,raw,expected", CASES)
def test_normalize_real_sentences(lang, raw, expected):
  assert text.normalize(raw, lang) == unicodedata.normalize("NFC", expected)


@pytest.mark.parametrize("lang,raw,expected", CASES)
def test_idempotent_and_clean(lang, raw, expected):
  once = text.normalize(raw, lang)
  assert text.normalize(once, lang) == once
  cats = {unicodedata.category(ch)[0] for ch in once.replace("'", "").replace("·", "")}
  assert cats <= {"L", "M", "N", "Z"}, cats
  assert "  " not in once and once == once.strip()


@pytest.mark.parametrize("lang,raw", [(l, r) for l, r, _ in CASES if l in ("hi", "mr", "te")])
def test_indic_combining_marks_kept(lang, raw):
  def marks(s):
    return [c for c in unicodedata.normalize("NFKC", s) if unicodedata.category(c)[0] == "M"]

  assert marks(text.normalize(raw, lang)) == marks(raw)


def test_danda_and_virama():
  assert text.normalize("नमस्ते। धन्यवाद॥", "hi") == "नमस्ते धन्यवाद"
  assert "\u094d" in text.normalize("नमस्ते", "hi")  # virama survives


def test_apostrophes():
  assert text.normalize("it’s l'amico dellʼanno", "it") == "it's l'amico dell'anno"
  # Quotes and edge apostrophes are not in-word: they separate.
  assert text.normalize("'hello' 'tis rock'n'roll", "en") == "hello tis rock'n'roll"
  assert text.normalize("a''b", "en") == "a b"


def test_turkish_dotted_i_only_for_tr_az():
  assert text.normalize("IĞDIR İzmir", "az") == "ığdır izmir"
  assert text.normalize("Istanbul", "en") == "istanbul"


def test_format_chars_and_digits():
  # ZWNJ/ZWJ/soft hyphen deleted inside words; digits in any script kept.
  assert text.normalize("ab\u00adc d\u200de", "en") == "abc de"
  assert text.normalize("१२३ 456", "hi") == "१२३ 456"
  assert text.normalize("", "en") == ""
  assert text.normalize(" .,!?।   ", "hi") == ""


def test_idempotent_fuzz():
  pool = list("aAé'’ʼ·.-,!? \t\n\u200b\u200c\u200dİIıiß।॥क्षि़ा´¨ﬁ①²ςΣ") + [
      "\u0301", "\u0300", "\u0903", "\u0c4d", "\U0001f600", "\u0958", "\u00b7"]
  rng = random.Random(0)
  for _ in range(3000):
    raw = "".join(rng.choice(pool) for _ in range(rng.randint(0, 12)))
    for lang in ("en", "tr", "hi"):
      once = text.normalize(raw, lang)
      assert text.normalize(once, lang) == once, (raw, lang)


def test_chars_counts_code_points_with_spaces():
  assert text.chars("ab cd") == ["a", "b", " ", "c", "d"]
  assert len(text.chars(text.normalize("नमस्ते", "hi"))) == 6
