"""Text normalization shared by training targets and scoring.

`normalize(text, lang)` is the single definition of "the text" in mlasr: tokenizers are trained
on it, CTC labels are built from it, and references/hypotheses are scored on it. Rules, in order:

1. Unicode NFKC (compatibility forms folded: full-width letters, ligatures, superscripts).
2. Apostrophe look-alikes (U+2019 ’, U+02BC ʼ) become U+0027 '.
3. Case folding (`str.casefold`, so ß -> ss, final sigma -> σ). Turkish/Azeri (tr, az) map
   I -> ı and İ -> i first. Scripts without case are unchanged by it.
4. Per character, by Unicode general category:
   - letters (L*), marks (M*: Devanagari virama/matras/nukta, Telugu vowel signs, ...) and
     numbers (N*: digits are kept, not verbalised) are kept;
   - punctuation (P*) and symbols (S*) become a space (they separate words), including the
     Devanagari danda । and double danda ॥;
   - format characters (Cf: ZWJ, ZWNJ, soft hyphen, bidi marks, BOM) are deleted: they are
     invisible and transcribers use them inconsistently;
   - separators (Z*) and controls (Cc) become a space.
   Exceptions: an apostrophe (or the Catalan middle dot ·, as in col·lecció) with a word
   character (L/M/N) on both sides stays (it's, dell'anno, l'amico); elsewhere it is a quote and
   becomes a space. A combining mark left without a base (first in a word) is dropped.
5. NFKC again (deleting a format character can bring a base and a mark together), whitespace
   collapsed to single spaces, stripped.

The result is idempotent: normalize(normalize(t, l), l) == normalize(t, l).
"""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'"})
# Characters kept only between two word characters.
_IN_WORD_JOINERS = frozenset("'\u00b7")
_DOTTED_I_LANGS = frozenset({"tr", "az"})
_SPACES = re.compile(r"\s+")


def _is_word_char(ch: str) -> bool:
  return unicodedata.category(ch)[0] in "LMN"


def _fold_case(text: str, lang: str) -> str:
  if lang.split("-")[0].split("_")[0].lower() in _DOTTED_I_LANGS:
    # casefold() knows no locale: it would map I -> i and İ -> i + U+0307.
    text = text.replace("I", "ı").replace("\u0130", "i")
  return text.casefold()


def _map_chars(text: str) -> str:
  out = []
  for ch in text:
    cat = unicodedata.category(ch)
    if ch in _IN_WORD_JOINERS:
      out.append(ch)  # decided below, once the neighbours are final
    elif cat[0] in "PSZ" or cat == "Cc":
      out.append(" ")
    elif cat == "Cf":
      continue
    else:
      out.append(ch)
  # Second pass: joiners between word characters survive, orphan marks go.
  kept = []
  for i, ch in enumerate(out):
    if ch in _IN_WORD_JOINERS:
      prev = kept[-1] if kept else " "
      nxt = out[i + 1] if i + 1 < len(out) else " "
      kept.append(ch if _is_word_char(prev) and _is_word_char(nxt) else " ")
    elif unicodedata.category(ch)[0] == "M" and (not kept or kept[-1] == " "):
      continue
    else:
      kept.append(ch)
  return "".join(kept)


def normalize(text: str, lang: str) -> str:
  """Returns the normalized form of `text` used for training targets and scoring.

  Args:
    text: raw transcript.
    lang: ISO 639-1 code (e.g. "hi", "tr"); only changes case folding for tr/az.

  Returns:
    Casefolded NFKC text with punctuation/symbols removed, words separated by single spaces.
  """
  text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
  text = unicodedata.normalize("NFKC", _fold_case(text, lang))
  text = unicodedata.normalize("NFKC", _map_chars(text))
  return _SPACES.sub(" ", text).strip()


def chars(text: str) -> list[str]:
  """The units CER counts: Unicode code points of normalized text, spaces included."""
  return list(text)
