"""Tests for mlasr.data.tokenizer: exact round trips per script, determinism, save/load, stats."""

import os

import numpy as np
import pytest

from mlasr.data import text
from mlasr.data import tokenizer as tk

RAW = {
    "en": ["The quick brown fox jumps over the lazy dog.", "It's raining cats and dogs today!",
           "Please save the document before closing the window.",
           "She sells seashells by the seashore.", "Where did you put my keys?",
           "A journey of a thousand miles begins with a single step.",
           "Click OK to confirm the changes.", "Don't count your chickens before they hatch."],
    "it": ["Dell'anno scorso ricordo poco.", "L'amico di Maria è arrivato ieri sera.",
           "Perché non vieni al cinema con noi?", "Il file non può essere aperto.",
           "Chi va piano va sano e va lontano.", "C'era una volta un re molto saggio.",
           "Salva il documento prima di chiudere.", "Un po' di pazienza, per favore."],
    "ca": ["La col·lecció de l'Ajuntament és molt gran.", "Què hi fa aquest paraigua a l'armari?",
           "No es pot obrir el fitxer.", "El cel és blau i el sol brilla.",
           "Seleccioneu una cel·la del full de càlcul.", "Avui fa un dia esplèndid a Barcelona."],
    "ru": ["Съешь же ещё этих мягких французских булок, да выпей чаю.",
           "Привет, мир!", "Ёлка стоит в углу комнаты.", "Не удалось открыть файл.",
           "Тише едешь — дальше будешь.", "Москва не сразу строилась.",
           "Сохраните документ перед закрытием.", "Щука плавает в реке."],
    "hi": ["भारत एक विशाल देश है।", "क्या आप मेरी मदद कर सकते हैं?", "यहाँ क़लम ज़्यादा है॥",
           "फ़ाइल खोली नहीं जा सकी।", "मुझे हिंदी बोलना अच्छा लगता है।",
           "कृपया दस्तावेज़ को सहेजें।", "आज मौसम बहुत सुहावना है।", "ऋषि ने ज्ञान दिया।"],
    "mr": ["माझं नाव राम आहे.", "ही फाइल उघडता आली नाही.", "मी पुण्यात राहतो.",
           "कृपया दस्तऐवज जतन करा.", "आज पाऊस पडत आहे.", "तुम्ही कसे आहात?",
           "ज्ञानेश्वरांनी ज्ञानेश्वरी लिहिली."],
    "te": ["తెలుగు ఒక ద్రావిడ భాష.", "ఇది చాలా అందమైనది!", "ఫైల్‌ను తెరవడం సాధ్యం కాలేదు.",
           "మీరు ఎలా ఉన్నారు?", "దయచేసి పత్రాన్ని భద్రపరచండి.", "నేను హైదరాబాద్‌లో ఉంటాను.",
           "క్షమించండి, మళ్ళీ ప్రయత్నించండి."],
    "cs": ["Příliš žluťoučký kůň úpěl ďábelské ódy.", "Soubor nelze otevřít.",
           "Dobrý den, jak se máte?", "Uložte dokument před zavřením.",
           "Kdo jinému jámu kopá, sám do ní padá.", "Řeřicha roste na zahrádce."],
    "fi": ["Hyvää päivää! Mitä kuuluu?", "Tiedostoa ei voitu avata.",
           "Älä unohda tallentaa asiakirjaa.", "Kesällä on valoisaa yötä myöten.",
           "Öisin järvellä on hiljaista.", "Vierivä kivi ei sammaloidu."],
    "el": ["Καλημέρα σας, τι κάνετε;", "Το αρχείο δεν μπορεί να ανοιχτεί.",
           "Η θάλασσα είναι ήρεμη σήμερα.", "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία."],
    "ar": ["مرحبا بالعالم.", "لا يمكن فتح الملف.", "كيف حالك اليوم؟", "الكتاب على الطاولة."],
    "ta": ["தமிழ் ஒரு பழமையான மொழி.", "கோப்பைத் திறக்க முடியவில்லை.",
           "நீங்கள் எப்படி இருக்கிறீர்கள்?"],
    "bn": ["আমি বাংলায় কথা বলি।", "ফাইলটি খোলা যায়নি।", "আজ আবহাওয়া খুব সুন্দর।"],
    "zh": ["你好，世界！", "无法打开文件。", "今天天气很好。"],
}
TEXTS = {lang: [text.normalize(s, lang) for s in ss] for lang, ss in RAW.items()}
# Held-out text with characters never seen in training (ґ, ў, ఋ, ञ, ő, 𝄞 ...).
HELD_OUT = {"ru": ["ґанок і ўсё"], "te": ["ఋషి ఞాన"], "hi": ["ञ ऍ ऑ"], "cs": ["őrült"]}


def _assert_round_trip(tok):
  for lang, sentences in TEXTS.items():
    for s in sentences:
      ids = tok.encode(s, lang)
      assert ids and 0 not in ids and tk.UNK_ID not in ids, (lang, s, ids)
      assert max(ids) < tok.vocab_size
      assert tok.decode(ids, lang) == s, (lang, s)


@pytest.mark.parametrize("per_language", [False, True])
def test_char_round_trip_every_script(per_language):
  tok = tk.CharTokenizer.build(TEXTS, per_language=per_language)
  assert tok.blank_id == 0
  _assert_round_trip(tok)
  # Decoding drops blanks/padding but keeps repeats (no CTC collapse here).
  ids = tok.encode("aa b", "en")
  assert tok.decode([0] + ids + [0, 0], "en") == "aa b"


def test_char_per_language_tables_and_save_load(tmp_path):
  tok = tk.CharTokenizer.build(TEXTS, per_language=True)
  assert tok.lang_vocab_size("zh") == 3 + len(set("".join(TEXTS["zh"])) - {" "})
  assert tok.vocab_size == max(tok.lang_vocab_size(l) for l in TEXTS)
  with pytest.raises(KeyError, match="xx"):
    tok.encode("a", "xx")
  tok.save(str(tmp_path))
  loaded = tk.load_tokenizer(str(tmp_path))
  assert isinstance(loaded, tk.CharTokenizer) and loaded.per_language
  for lang, sentences in TEXTS.items():
    assert [loaded.encode(s, lang) for s in sentences] == [tok.encode(s, lang) for s in sentences]


def test_char_unknown_and_stats():
  tok = tk.CharTokenizer.build(TEXTS)
  ids = tok.encode("ґ", "ru")
  assert ids == [tk.UNK_ID] and tok.decode(ids, "ru") == tk.UNK_SURFACE
  stats = tok.stats(HELD_OUT)
  for lang, s in stats.items():
    assert 0 < s["unk_rate"] < 1 and s["tokens_per_char"] == 1.0
  seen_chars = set("".join(s for ss in TEXTS.values() for s in ss))
  for lang, sentences in HELD_OUT.items():
    assert stats[lang]["unk_chars"] == sum(c not in seen_chars for s in sentences for c in s)
  assert stats["ru"]["unk_chars"] == 3  # ґ, і, ў
  seen = tok.stats(TEXTS)
  assert all(s["unk_rate"] == 0 for s in seen.values())


@pytest.fixture(scope="module")
def spm_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("spm"))
  tk.SentencePieceTokenizer.train(TEXTS, alpha=0.5, vocab_size=400, out_dir=out)
  return out


def test_spm_round_trip_every_script(spm_dir):
  tok = tk.load_tokenizer(spm_dir)
  assert isinstance(tok, tk.SentencePieceTokenizer)
  assert tok.blank_id == 0 and tok.unk_id == 1 and 2 < tok.vocab_size <= 400
  _assert_round_trip(tok)
  # Pieces are multi-character on average for the languages with the most text.
  assert tok.stats({"en": TEXTS["en"]})["en"]["tokens_per_char"] < 0.9


def test_spm_determinism(spm_dir, tmp_path):
  again = tk.SentencePieceTokenizer.train(TEXTS, alpha=0.5, vocab_size=400, out_dir=str(tmp_path))
  with open(os.path.join(spm_dir, tk.SPM_FILE), "rb") as f:
    assert f.read() == again.model_proto
  other_seed = tk.SentencePieceTokenizer.train(TEXTS, alpha=0.5, vocab_size=400,
                                               out_dir=str(tmp_path / "s1"), seed=1)
  assert other_seed.vocab_size > 2  # still trains; bytes may differ


def test_spm_temperature_sampling(tmp_path):
  texts = {"en": TEXTS["en"] * 25, "te": TEXTS["te"]}  # 200 vs 7 sentences
  natural = tk.SentencePieceTokenizer.train(texts, 1.0, 300, str(tmp_path / "a1"))
  uniform = tk.SentencePieceTokenizer.train(texts, 0.0, 300, str(tmp_path / "a0"))
  n = natural.config["sampled_sentences_per_language"]
  u = uniform.config["sampled_sentences_per_language"]
  assert n == {"en": 200, "te": 7}
  # alpha=0: equal shares of the same total; p_l ∝ n_l^alpha.
  assert abs(u["en"] - u["te"]) <= 1 and abs(sum(u.values()) - 207) <= 1
  half = tk.SentencePieceTokenizer.train(texts, 0.5, 300, str(tmp_path / "a5"))
  h = half.config["sampled_sentences_per_language"]
  expected_te = 207 * 7**0.5 / (7**0.5 + 200**0.5)
  assert abs(h["te"] - expected_te) <= 1
  # Upweighting Telugu makes Telugu pieces longer (fewer tokens per character).
  tpc = lambda tok: tok.stats({"te": TEXTS["te"]})["te"]["tokens_per_char"]
  assert tpc(uniform) <= tpc(natural)


def test_spm_unknown_rate_on_held_out(spm_dir):
  tok = tk.load_tokenizer(spm_dir)
  stats = tok.stats(HELD_OUT)
  for lang, s in stats.items():
    assert 0 < s["unk_rate"] < 1, (lang, s)
    assert s["unk_tokens"] >= 1
  # Unknown characters count per character, matching the char tokenizer's count.
  char = tk.CharTokenizer.build(TEXTS)
  assert {l: s["unk_chars"] for l, s in stats.items()} == {
      l: s["unk_chars"] for l, s in char.stats(HELD_OUT).items()}
  assert all(s["unk_rate"] == 0 for s in tok.stats(TEXTS).values())


def test_errors_are_clear(tmp_path):
  with pytest.raises(ValueError, match="vocab_size"):
    tk.SentencePieceTokenizer.train(TEXTS, 0.5, 20, str(tmp_path))
  with pytest.raises(FileNotFoundError, match="tokenizer.json"):
    tk.load_tokenizer(str(tmp_path / "missing"))


@pytest.mark.parametrize("kind", ["char", "sentencepiece"])
def test_build_tokenizer_factory(kind, tmp_path):
  tok = tk.build_tokenizer(kind, TEXTS, str(tmp_path), vocab_size=400)
  loaded = tk.load_tokenizer(str(tmp_path))
  assert type(loaded) is type(tok) and loaded.vocab_size == tok.vocab_size
  _assert_round_trip(loaded)
  with pytest.raises(ValueError, match="bpe-ish"):
    tk.build_tokenizer("bpe-ish", TEXTS, str(tmp_path))


def _script_ok(tok, lang, ids):
  return all(set(tok.decode([i], lang).replace(" ", "")) <= set("".join(TEXTS[lang]))
             for i in ids)


@pytest.mark.parametrize("kind,per_language", [("char", False), ("char", True),
                                               ("sentencepiece", False)])
def test_output_mask_allows_exactly_what_a_language_can_spell(kind, per_language, tmp_path):
  tok = tk.build_tokenizer(kind, TEXTS, str(tmp_path), per_language=per_language,
                           vocab_size=400)
  langs = ["en", "ru", "hi", "te"]
  mask = tk.load_tokenizer(str(tmp_path)).output_mask(langs)
  assert mask.shape == (4, tok.vocab_size) and mask[:, :2].all()  # blank and unk always
  for row, lang in enumerate(langs):
    allowed = np.flatnonzero(mask[row])
    # Every id the language's own text encodes to is allowed ...
    used = {i for s in TEXTS[lang] for i in tok.encode(s, lang)}
    assert used <= set(allowed.tolist()), lang
    # ... and every allowed id spells only that language's characters.
    assert _script_ok(tok, lang, allowed[2:]), lang
  if not per_language:  # Cyrillic and Devanagari share no outputs but blank/unk/word breaks
    shared = np.flatnonzero(mask[1] & mask[2])
    assert shared[:2].tolist() == [0, 1]
    assert all(tok.decode([i], "ru").strip() == "" for i in shared[2:])


def test_extended_with_adds_a_language_and_keeps_every_id(tmp_path):
  base = {l: TEXTS[l] for l in ("en", "ru", "hi")}
  for per_language in (False, True):
    tok = tk.CharTokenizer.build(base, per_language=per_language)
    before = {l: [tok.encode(s, l) for s in TEXTS[l]] for l in base}
    tok.extended_with({"it": TEXTS["it"]})
    assert {l: [tok.encode(s, l) for s in TEXTS[l]] for l in base} == before
    assert tok.output_mask(["it"]).shape == (1, tok.vocab_size)
    if per_language:
      assert tok.decode(tok.encode(TEXTS["it"][0], "it"), "it") == TEXTS["it"][0]
  with pytest.raises(KeyError, match="(no character set|No character vocabulary) for language 'xx'"):
    tok.output_mask(["xx"])
  big = tk.CharTokenizer.build({"en": TEXTS["en"]}, per_language=True)
  with pytest.raises(ValueError, match="needs .* symbols"):
    big.extended_with({"zh": TEXTS["zh"] + TEXTS["hi"]})
