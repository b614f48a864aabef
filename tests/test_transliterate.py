"""Czech spellings the cross-lingual festival clips are read from (data_prep/transliterate.py)."""

import pytest

from data_prep import synth_audio, text_sources
from data_prep.transliterate import czech_spelling


@pytest.mark.parametrize("lang, text, czech", [
    # Russian: iotated vowels at the start and after a vowel or a sign, ě for the palatal де/те/не.
    ("ru", "Щука, ёлка, Юля съел.", "ščuka, jolka, julja sjel."),
    ("ru", "Нет, мясо хорошее!", "nět, mjaso chorošeje!"),
    ("ru", "жизнь цирк", "žizn cirk"),
    # Hindi: the last consonant loses its inherent vowel unless it closes a conjunct; anusvara is
    # n, or m before a labial; ऐ is the long open e; danda is a full stop.
    ("hi", "नमस्ते, कमल मित्र।", "namasté, kamal mitra."),
    ("hi", "पसंद संबंध है", "pasand sambandh hé"),
    ("hi", "ऑफ़िस की फ़ाइल", "ófis kí fáil"),
    ("hi", "आँकड़ा छोड़ें ख़बर", "ánkará čhórén chabar"),  # nukta letters, candrabindu
    ("mr", "महाराष्ट्र लोक मराठी बोलतात.", "maháráštra lók maráthí bólatát."),
    # Telugu keeps final vowels and its ai diphthong.
    ("te", "తెలుగు ఎంపిక", "telugu empika"),
    ("te", "చైనా", "čajná"),
])
def test_czech_spelling(lang, text, czech):
  assert czech_spelling(text, lang) == czech


def test_unknown_language_is_an_error():
  with pytest.raises(ValueError, match="no Czech spelling for language 'ta'"):
    czech_spelling("தமிழ்", "ta")


@pytest.mark.parametrize("lang", ["ru", "hi", "mr", "te"])
def test_czech_voices_can_read_nearly_every_sentence(lang):
  """The spelling leaves no letter a Czech voice cannot read in (almost) the whole text pool."""
  pool = text_sources.load_sentences(lang, min_sentences=100)
  unreadable = [s.text for s in pool
                if synth_audio.festival_text(s.text, lang, "czech_krb") is None]
  assert len(unreadable) <= 0.001 * len(pool), unreadable[:5]
  assert synth_audio.festival_text(pool[0].text, lang, "czech_krb").decode("iso-8859-2") == (
      czech_spelling(pool[0].text, lang).translate(synth_audio._ASCII_PUNCT))


def test_only_czech_voices_read_other_languages():
  with pytest.raises(ValueError, match="kal_diphone \\(en\\) cannot read hi text"):
    synth_audio.festival_text("नमस्ते", "hi", "kal_diphone")
