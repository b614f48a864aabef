"""Registry of the languages mlasr knows: names, scripts and the speech engines that speak them."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Language:
  code: str                   # ISO 639-1 code used in corpus paths (Common Voice / VoxPopuli)
  name: str
  script: str                 # 'Latin', 'Cyrillic', 'Devanagari', 'Telugu', ...
  espeak_voice: str           # espeak-ng voice name (`espeak-ng --voices`)
  festival_voice: str | None = None   # Debian festvox voices that speak this language
  more_festival_voices: tuple[str, ...] = ()

  @property
  def festival_voices(self) -> tuple[str, ...]:
    return ((self.festival_voice,) if self.festival_voice else ()) + self.more_festival_voices


def _lang(code, name, script, espeak, *festival) -> Language:
  return Language(code, name, script, espeak, festival[0] if festival else None,
                  tuple(festival[1:]))


LANGUAGES: dict[str, Language] = {l.code: l for l in [
    _lang("en", "English", "Latin", "en", "kal_diphone", "ked_diphone",
          "cmu_us_slt_arctic_hts"),
    _lang("de", "German", "Latin", "de"),
    _lang("fr", "French", "Latin", "fr-fr"),
    _lang("es", "Spanish", "Latin", "es"),
    _lang("it", "Italian", "Latin", "it", "lp_diphone", "pc_diphone"),
    _lang("pt", "Portuguese", "Latin", "pt-br"),
    _lang("ca", "Catalan", "Latin", "ca", "upc_ca_ona_hts"),
    _lang("fi", "Finnish", "Latin", "fi", "hy_fi_mv_diphone", "suo_fi_lj_diphone"),
    _lang("cs", "Czech", "Latin", "cs", "czech_dita", "czech_ph", "czech_krb",
          "czech_machac"),
    _lang("pl", "Polish", "Latin", "pl"),
    _lang("ru", "Russian", "Cyrillic", "ru", "msu_ru_nsh_clunits"),
    _lang("uk", "Ukrainian", "Cyrillic", "uk"),
    _lang("bg", "Bulgarian", "Cyrillic", "bg"),
    _lang("hi", "Hindi", "Devanagari", "hi", "hindi_NSK_diphone"),
    _lang("mr", "Marathi", "Devanagari", "mr", "marathi_NSK_diphone"),
    _lang("ne", "Nepali", "Devanagari", "ne"),
    _lang("te", "Telugu", "Telugu", "te", "telugu_NSK_diphone"),
    _lang("ta", "Tamil", "Tamil", "ta"),
    _lang("bn", "Bengali", "Bengali", "bn"),
    _lang("gu", "Gujarati", "Gujarati", "gu"),
    _lang("kn", "Kannada", "Kannada", "kn"),
    _lang("ml", "Malayalam", "Malayalam", "ml"),
    _lang("pa", "Punjabi", "Gurmukhi", "pa"),
]}


def get(code: str) -> Language:
  """Returns the Language for `code`; raises KeyError listing the known codes otherwise."""
  try:
    return LANGUAGES[code]
  except KeyError:
    raise KeyError(f"unknown language code {code!r}; known codes: "
                   f"{', '.join(sorted(LANGUAGES))}") from None


def script_of(code: str) -> str:
  """Writing system of language `code`, e.g. script_of('hi') == 'Devanagari'."""
  return get(code).script
