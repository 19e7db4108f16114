"""The patient's identifiers echoed in attributes the de-identification profile keeps.

PS3.15's Basic Profile keeps Manufacturer, Manufacturer's Model Name, Body Part Examined, Patient Position, Image Type
and other descriptive attributes, and a code string holding a name written as codes ("SMITHJOHN") cannot be told
from a code by its form (:mod:`.code_strings`). But the file says whose it is: the patient's name, IDs, accession
number and birth date are read before the profile removes them, and any text value left afterwards, at any nesting
level, whose letters and digits hold one of them is written empty. A hostile file carried "SMITH^JOHN" in five kept
attributes of a copy marked ``PatientIdentityRemoved=YES`` (a radiologist's review, thirty-seventh session).

A name part shorter than three letters, or an ID shorter than four characters, is not looked for: "LI" or "12" would
empty real codes. A kept value that merely contains a longer name part ("HEAD" for a patient named Head) is emptied
too: the copy loses a descriptor, never an identifier.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

#: Person names whose parts are looked for (the patient's, under each name it is recorded by).
_NAMES = ("PatientName", "PatientBirthName", "OtherPatientNames", "PatientMotherBirthName")
#: Identifiers looked for whole (their letters and digits), and for their longest run of digits.
_IDS = ("PatientID", "OtherPatientIDs", "AccessionNumber", "PatientBirthDate", "MedicalRecordLocator")
#: Text VRs whose values are searched (numbers, dates and UIDs are handled by the profile itself).
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})


def _plain(value: Any) -> str:
    """Letters and digits only, accents dropped, case folded ("Müller-Lüdenscheidt" -> "mullerludenscheidt"), in any
    alphabet ("山田")."""
    text = unicodedata.normalize("NFKD", str(value))
    return "".join(c for c in text if c.isalnum() and not unicodedata.combining(c)).casefold()


def _long_enough(token: str, ascii_min: int) -> bool:
    """A token worth looking for: ``ascii_min`` characters in the Latin alphabet or digits, two in others (a
    two-character kanji name part is a name; "LI" would empty real codes)."""
    return len(token) >= (ascii_min if token.isascii() else 2)


def _values(elem: Any) -> list[Any]:
    value = elem.value
    return list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]


def identifiers(ds: Any) -> frozenset[str]:
    """What identifies the patient in ``ds`` (:func:`_plain`), read before the profile runs: each name part of three
    letters or more (two in other alphabets than the Latin one), each ID of four characters or more and its longest
    run of five or more digits."""
    found: set[str] = set()
    for item in _items(ds):
        for keyword in _NAMES:
            for value in _values(item.data_element(keyword)) if keyword in item else ():
                found.update(p for p in (_plain(part) for part in re.split(r"[\^=,\s]+", str(value)))
                             if _long_enough(p, 3))
        for keyword in _IDS:
            for value in _values(item.data_element(keyword)) if keyword in item else ():
                whole = _plain(value)
                if _long_enough(whole, 4):
                    found.add(whole)
                digits = max(re.findall(r"\d+", whole), key=len, default="")
                if len(digits) >= 5:
                    found.add(digits)
    return frozenset(found)


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


def empty_echoes(ds: Any, found: frozenset[str]) -> int:
    """Write empty every text value, at any level, whose letters and digits hold one of ``found``; how many."""
    if not found:
        return 0
    emptied = 0
    for item in _items(ds):
        for elem in item:
            if elem.VR in _TEXT_VRS and elem.value not in (None, "") and any(
                    token in _plain(v) for v in _values(elem) for token in found):
                elem.value = ""
                emptied += 1
    return emptied
