"""Target languages by ISO code.

The table holds ISO 639-1 codes (ISO 639-2/3 where a language has no
two-letter code, plus region subtags for Chinese) with English names; the names
go into the Ollama translation prompt. It covers what Google Translate accepts,
written with the standard codes (``he``, ``jv``) where Google uses legacy ones
(``iw``, ``jw``): the Google backend maps those itself.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Final

from ai_local_core.errors import UnsupportedLanguage

AUTO: Final = "auto"

LANGUAGES: Final = MappingProxyType(
    {
        "af": "Afrikaans",
        "ak": "Twi",
        "am": "Amharic",
        "ar": "Arabic",
        "as": "Assamese",
        "ay": "Aymara",
        "az": "Azerbaijani",
        "be": "Belarusian",
        "bg": "Bulgarian",
        "bho": "Bhojpuri",
        "bm": "Bambara",
        "bn": "Bengali",
        "bs": "Bosnian",
        "ca": "Catalan",
        "ceb": "Cebuano",
        "ckb": "Kurdish (Sorani)",
        "co": "Corsican",
        "cs": "Czech",
        "cy": "Welsh",
        "da": "Danish",
        "de": "German",
        "doi": "Dogri",
        "dv": "Dhivehi",
        "ee": "Ewe",
        "el": "Greek",
        "en": "English",
        "eo": "Esperanto",
        "es": "Spanish",
        "et": "Estonian",
        "eu": "Basque",
        "fa": "Persian",
        "fi": "Finnish",
        "fr": "French",
        "fy": "Frisian",
        "ga": "Irish",
        "gd": "Scots Gaelic",
        "gl": "Galician",
        "gn": "Guarani",
        "gom": "Konkani",
        "gu": "Gujarati",
        "ha": "Hausa",
        "haw": "Hawaiian",
        "he": "Hebrew",
        "hi": "Hindi",
        "hmn": "Hmong",
        "hr": "Croatian",
        "ht": "Haitian Creole",
        "hu": "Hungarian",
        "hy": "Armenian",
        "id": "Indonesian",
        "ig": "Igbo",
        "ilo": "Ilocano",
        "is": "Icelandic",
        "it": "Italian",
        "ja": "Japanese",
        "jv": "Javanese",
        "ka": "Georgian",
        "kk": "Kazakh",
        "km": "Khmer",
        "kn": "Kannada",
        "ko": "Korean",
        "kri": "Krio",
        "ku": "Kurdish (Kurmanji)",
        "ky": "Kyrgyz",
        "la": "Latin",
        "lb": "Luxembourgish",
        "lg": "Luganda",
        "ln": "Lingala",
        "lo": "Lao",
        "lt": "Lithuanian",
        "lus": "Mizo",
        "lv": "Latvian",
        "mai": "Maithili",
        "mg": "Malagasy",
        "mi": "Maori",
        "mk": "Macedonian",
        "ml": "Malayalam",
        "mn": "Mongolian",
        "mni-Mtei": "Meiteilon (Manipuri)",
        "mr": "Marathi",
        "ms": "Malay",
        "mt": "Maltese",
        "my": "Myanmar",
        "ne": "Nepali",
        "nl": "Dutch",
        "no": "Norwegian",
        "nso": "Sepedi",
        "ny": "Chichewa",
        "om": "Oromo",
        "or": "Odia (Oriya)",
        "pa": "Punjabi",
        "pl": "Polish",
        "ps": "Pashto",
        "pt": "Portuguese",
        "qu": "Quechua",
        "ro": "Romanian",
        "ru": "Russian",
        "rw": "Kinyarwanda",
        "sa": "Sanskrit",
        "sd": "Sindhi",
        "si": "Sinhala",
        "sk": "Slovak",
        "sl": "Slovenian",
        "sm": "Samoan",
        "sn": "Shona",
        "so": "Somali",
        "sq": "Albanian",
        "sr": "Serbian",
        "st": "Sesotho",
        "su": "Sundanese",
        "sv": "Swedish",
        "sw": "Swahili",
        "ta": "Tamil",
        "te": "Telugu",
        "tg": "Tajik",
        "th": "Thai",
        "ti": "Tigrinya",
        "tk": "Turkmen",
        "tl": "Filipino",
        "tr": "Turkish",
        "ts": "Tsonga",
        "tt": "Tatar",
        "ug": "Uyghur",
        "uk": "Ukrainian",
        "ur": "Urdu",
        "uz": "Uzbek",
        "vi": "Vietnamese",
        "xh": "Xhosa",
        "yi": "Yiddish",
        "yo": "Yoruba",
        "zh": "Chinese (Simplified)",
        "zh-CN": "Chinese (Simplified)",
        "zh-TW": "Chinese (Traditional)",
        "zu": "Zulu",
    }
)

_CODE_SHAPE: Final = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,4})?$")
_BY_LOWER: Final = {code.lower(): code for code in LANGUAGES}


def normalize_language(code: str) -> str:
    """Return the canonical code for ``code`` (case-insensitive, ``_`` accepted for ``-``).

    Raises :class:`UnsupportedLanguage` for anything not in :data:`LANGUAGES`.
    """
    candidate = code.strip().replace("_", "-")
    if not _CODE_SHAPE.match(candidate):
        raise UnsupportedLanguage(
            f"{code!r} is not a language code: use an ISO code such as 'pl', 'en' or 'de'"
        )
    canonical = _BY_LOWER.get(candidate.lower())
    if canonical is None:
        raise UnsupportedLanguage(f"unsupported language code {code!r}")
    return canonical


def language_name(code: str) -> str:
    """English name of a canonical code."""
    return LANGUAGES[code]
