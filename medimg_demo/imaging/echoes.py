"""The patient's identifiers echoed in attributes the de-identification profile keeps.

PS3.15's Basic Profile keeps Manufacturer, Manufacturer's Model Name, Body Part Examined, Patient Position, Image Type
and other descriptive attributes, and a code string holding a name written as codes ("SMITHJOHN") cannot be told
from a code by its form (:mod:`.code_strings`). But the file says whose it is: the patient's names, IDs, accession
number and birth date are read before the profile removes them, and a value left afterwards, at any nesting level,
that holds one of them is written empty. A hostile file carried "SMITH^JOHN" in five kept attributes of a copy marked
``PatientIdentityRemoved=YES`` (a radiologist's review, thirty-seventh session).

How a value is matched (a hostile review of the first version found names split by hyphens, ASCII spellings of
accented names, two-letter names and reformatted IDs surviving, and common names emptying real codes):

- Names, by whole words: each name part (split at anything but letters and digits: "SMITH-JONES" gives SMITH and
  JONES) and the name run together in either order ("SMITHJOHN", "JOHNSMITH", "WULI"), with accents dropped
  and the usual ASCII spellings ("Müller" is MULLER and MUELLER, "Sørensen" SORENSEN, "Łukasz" LUKASZ), and as
  drawn (Unicode's confusable skeleton: "SMІTH" with a Cyrillic І is SMITH; a homoglyph in a name part had let it
  through, hostile review, thirty-seventh session), equal to a word of the value or to the whole value run
  together. So "Mary" does not empty PRIMARY, nor "Rome" MONOCHROME2, nor "Phil" Philips. A part of one or two letters is looked for only as part of the whole name.
- IDs, accession number and birth date, as runs of characters anywhere in the value: the ID whole (four characters
  or more), its longest run of digits (five or more; leading zeros dropped too), the birth date as YYYYMMDD,
  DDMMYYYY and MMDDYYYY.
- Text values (AE, CS, LO, LT, PN, SH, ST, UC, UR, UT) and whole numbers and decimals (IS, DS: an ID as a series
  number); never the character set or the photometric interpretation, which say how the rest is read.
- At most :data:`MAX_WORDS` name words and :data:`MAX_IDS` ID runs are looked for, each value is reduced once, and
  words are looked up in a set: an 800 KB name of 100,000 parts had taken 7 s a copy.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from ..confusable import drawn
from .code_strings import is_multi

#: Person names whose parts are looked for (the patient's, under each name it is recorded by).
_NAMES = ("PatientName", "PatientBirthName", "OtherPatientNames", "PatientMotherBirthName")
#: Identifiers looked for as runs of characters (their letters and digits), and for their longest run of digits.
_IDS = ("PatientID", "OtherPatientIDs", "AccessionNumber", "MedicalRecordLocator")
#: Values searched: text, and numbers written as text.
_SEARCHED_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT", "IS", "DS"})
#: Attributes that say how the data set is read: never emptied.
_STRUCTURAL = frozenset({"SpecificCharacterSet", "PhotometricInterpretation"})
MAX_WORDS = 256
MAX_IDS = 64
#: Letters NFKD does not take apart, and the German spelling of the umlauts (a second form).
_FOLD = str.maketrans({"ø": "o", "ł": "l", "æ": "ae", "œ": "oe", "ß": "ss", "ı": "i", "đ": "d", "ð": "d", "þ": "th",
                       "ħ": "h", "ŧ": "t", "ŀ": "l", "ĸ": "k"})
_UMLAUTS = {"ä": "ae", "ö": "oe", "ü": "ue"}


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


def _plain(word: str) -> set[str]:
    """A word's plain forms: case folded, accents dropped, in its own alphabet; with the German umlauts spelt out too."""
    word = word.casefold()
    out = set()
    for spelt in {word, "".join(_UMLAUTS.get(c, c) for c in word)}:
        bare = unicodedata.normalize("NFKD", spelt.translate(_FOLD))
        out.add("".join(c for c in bare if c.isalnum() and not unicodedata.combining(c)))
    return {f for f in out if f}


def _drawn(plain: set[str]) -> set[str]:
    """Plain forms as they are drawn: their confusable skeletons, also in capitals, so that "SMІTH" with a Cyrillic І
    (or "SMlTH" with a small L) is SMITH as a reader sees it."""
    seen = {"".join(c for c in drawn(g).casefold() if c.isalnum() and not unicodedata.combining(c))
            for f in plain for g in (f, f.upper())}  # in capitals too: a small L passes for an I only there
    return {d for d in seen if d}


def _forms(word: str) -> set[str]:
    """A name word's plain forms and as drawn (:func:`_drawn`). IDs are matched by their plain forms only (the
    skeleton draws a 1 as an l and a 0 as an O)."""
    plain = _plain(word)
    return plain | _drawn(plain)


def _words(value: Any) -> list[str]:
    return [w for w in re.split(r"[\W_]+", _text(value)) if w]


def _values(elem: Any) -> list[Any]:
    return list(elem.value) if is_multi(elem.value) else [elem.value]


def _items(ds: Any) -> list[Any]:
    """``ds`` and every data set nested in its sequences (the Other Patient IDs Sequence holds IDs too)."""
    out, stack = [], [ds]
    while stack:
        current = stack.pop()
        out.append(current)
        for elem in current:
            if elem.VR == "SQ":
                stack.extend(elem.value)
    return out


def _found_in(item: Any, keywords: tuple[str, ...]) -> list[Any]:
    return [v for k in keywords if k in item for v in _values(item.data_element(k)) if v not in (None, "", b"")]


def identifiers(ds: Any) -> tuple[frozenset[str], frozenset[str]]:
    """(name words, ID runs) that identify the patient in ``ds``, read before the profile runs (see the module)."""
    words: set[str] = set()
    runs: set[str] = set()
    for item in _items(ds):
        for name in _found_in(item, _NAMES):
            parts = _words(name)[:MAX_WORDS]
            for part in parts:
                words.update(f for f in _forms(part) if len(f) >= 3 or (f and not f.isascii()))
            if len(parts) >= 2:  # run together, in either order ("SMITHJOHN", "JOHNSMITH", "WULI"), also without
                for joined in ("".join(parts), "".join(parts[1:] + parts[:1]),  # a middle name
                               parts[0] + parts[1], parts[1] + parts[0]):
                    words.update(f for f in _forms(joined) if len(f) >= 4)
        for ident in _found_in(item, _IDS):
            whole = min(_plain(_text(ident)), key=len, default="")
            if len(whole) >= 4:
                runs.add(whole)
            digits = max(re.findall(r"\d+", whole), key=len, default="")
            runs.update(d for d in (digits, digits.lstrip("0")) if len(d) >= 5)
        for born in _found_in(item, ("PatientBirthDate",)):
            date = re.sub(r"\D", "", _text(born))
            if len(date) == 8:
                runs.update((date, date[6:] + date[4:6] + date[:4], date[4:6] + date[6:] + date[:4]))
    return frozenset(sorted(words, key=len, reverse=True)[:MAX_WORDS * 4]), frozenset(sorted(runs)[:MAX_IDS])


def _holds(value: Any, words: frozenset[str], runs: frozenset[str], number: bool = False) -> bool:
    """Whether a value holds a name word (as written, or as drawn where the value's word has a letter: drawn, 100 is
    "loo" and 101 "lol", and a patient named Loo had emptied kVp 100 and series 100) or an ID run. ``number``: an IS
    or DS value, compared plainly only."""
    parts = _words(value)
    together = "".join(parts)
    plain_of = {w: _plain(w) for w in [*parts, together]}
    plain = set().union(*plain_of.values())
    if words and (plain & words or (not number and any(
            _drawn(forms) & words for w, forms in plain_of.items() if any(c.isalpha() for c in w)))):
        return True
    return any(run in f for f in plain for run in runs)


def empty_echoes(ds: Any, found: tuple[frozenset[str], frozenset[str]]) -> int:
    """Write empty every searched value, at any level, that holds one of ``found`` (see the module); how many."""
    words, runs = found
    if not words and not runs:
        return 0
    emptied = 0
    for item in _items(ds):
        for elem in item:
            if (elem.VR in _SEARCHED_VRS and elem.keyword not in _STRUCTURAL and elem.value not in (None, "")
                    and any(_holds(v, words, runs, elem.VR in ("IS", "DS")) for v in _values(elem))):
                elem.value = "" if elem.VR not in ("IS", "DS") else None
                emptied += 1
    return emptied
