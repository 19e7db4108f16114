"""PS3.15 Annex E Table E.1-1 applied to a pydicom data set: the attribute -> action table and its actions.

The table (some 650 attributes, growing with each edition) comes from the maintained ``dicom-anonymizer`` package;
the actions are applied here, because its ``anonymize_dataset`` does not look inside sequences, keeps one
process-wide UID map (linking separate uploads, growing without bound) and prints.

How each action is applied, at every nesting level (inside every kept sequence item):

- ``X`` remove; ``Z`` keep with an empty value (a sequence with no items); ``D`` a dummy value of the element's VR
  (a sequence keeps its items with every value in them replaced by a dummy); ``U`` a new UID, the same new UID for
  the same old one everywhere in the file (and nowhere else: the map lives for one file).
- Combined actions take the choice that keeps any IOD conformant, as the library does: ``Z/D``, ``X/D`` and
  ``X/Z/D`` -> ``D``; ``X/Z`` -> ``Z``. ``X/Z/U*`` (Referenced/Source Image Sequence) keeps its items, whose instance
  UIDs are replaced (``U``) and whose other attributes go through the profile like any other item.
- Beyond the table: private groups and overlay (60xx) and curve (50xx) groups are removed whole, and so is any
  element DICOM does not define or that is written as another VR than DICOM gives it; any person name, date or time
  the table does not list is emptied; a code string holding free text is emptied (see :mod:`.code_strings`); any
  UID it does not list, or that is not a UID (digits and dots), is replaced unless it is a class,
  transfer syntax or other UID defined by the standard (``1.2.840.10008.*``), which identifies no one; the file meta
  is written anew.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from .code_strings import clean_element, is_multi

#: The dicom-anonymizer database used: the newest edition of Table E.1-1 that dicom-anonymizer 2.1.0 ships.
TABLE_EDITION = "dicomfields_2026c"
#: The library's categories -> the action code of Table E.1-1.
_CATEGORIES = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D", "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*",
}
#: What each action of the table does here (see the module docstring).
APPLIED = {"D": "D", "Z": "Z", "X": "X", "U": "U", "Z/D": "D", "X/Z": "Z", "X/D": "D", "X/Z/D": "D", "X/Z/U*": "U*"}

_STANDARD_UID_ROOT = "1.2.840.10008."
_KEEP_UID_KEYWORDS = frozenset({"TransferSyntaxUID", "ImplementationClassUID", "CodingSchemeUID",
                                "ContextGroupExtensionCreatorUID", "PrivateInformationCreatorUID"})
_TEXT_DUMMY = "ANONYMIZED"
_DUMMY_BY_VR: dict[str, Any] = {
    "AE": _TEXT_DUMMY, "CS": _TEXT_DUMMY, "LO": _TEXT_DUMMY, "LT": _TEXT_DUMMY, "PN": _TEXT_DUMMY, "SH": _TEXT_DUMMY,
    "ST": _TEXT_DUMMY, "UC": _TEXT_DUMMY, "UT": _TEXT_DUMMY, "AS": "000Y", "UR": "http://anonymized.invalid",
    "DA": "00010101", "DT": "00010101000000", "TM": "000000", "DS": "0", "IS": "0",
    "FD": 0.0, "FL": 0.0, "SS": 0, "US": 0, "SL": 0, "UL": 0, "SV": 0, "UV": 0, "AT": 0,
}
_BYTES_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})


@functools.lru_cache(maxsize=1)
def profile_table() -> tuple[dict[int, str], tuple[tuple[int, int, int, int, str], ...]]:
    """(tag -> action, repeating-group masks) of Table E.1-1, from dicom-anonymizer's database."""
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    db = dicom_anonymization_database_selector(TABLE_EDITION)
    tags: dict[int, str] = {}
    masks: list[tuple[int, int, int, int, str]] = []
    for category, action in _CATEGORIES.items():  # the library's order: a later category wins, as in the library
        for entry in db[category]:
            if len(entry) == 4:  # (group, element, group mask, element mask): 50xx curve, 60xx overlay
                masks.append((entry[0], entry[1], entry[2], entry[3], action))
            else:
                tags[(entry[0] << 16) | entry[1]] = action
    return tags, tuple(masks)


def action_for(tag: int) -> str | None:
    """The Table E.1-1 action of a tag (``None``: not listed, kept)."""
    tags, masks = profile_table()
    found = tags.get(int(tag))
    if found is not None:
        return found
    group, element = int(tag) >> 16, int(tag) & 0xFFFF
    for g, e, gmask, emask, action in masks:
        if group & gmask == g & gmask and element & emask == e & emask:
            return action
    return None


def uid_syntax(value: Any) -> bool:
    """Whether a value is a UID as PS3.5 9.1 writes one: digits and dots, at most 64 characters."""
    text = str(value).strip("\x00 ")
    return len(text) <= 64 and re.fullmatch(r"[0-9]+(\.[0-9]+)*", text) is not None


#: VRs that hold binary numbers only: an element written as one of them carries no text, whatever DICOM gives it.
_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT"})


def _as_defined(tag: Any, vr: Any) -> bool:
    """Whether a (public) element is one DICOM defines, written as the VR DICOM gives it (an ambiguous one, such as
    "US or SS", as either) or as binary numbers (old files write Rows as SS: kept, it carries no text). Anything
    else is not kept: its value could be any text, whatever the tag says."""
    from pydicom.datadict import get_entry

    try:
        defined = set(get_entry(int(tag))[0].split(" or "))
    except KeyError:
        return False
    written = set(str(vr).split(" or "))
    return written <= defined or written <= _NUMBER_VRS


def _removed_group(tag: Any) -> bool:
    """Private groups, overlay planes (60xx) and curves (50xx) go whole."""
    group = tag.group
    return bool(tag.is_private) or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF


class Scrubber:
    """One file's pass: the UID map lives exactly as long as this object."""

    def __init__(self) -> None:
        from pydicom.uid import generate_uid

        self._generate = generate_uid
        self.uid_map: dict[str, str] = {}

    def new_uid(self, old: Any) -> str:
        key = str(old).strip("\x00 ")
        if key not in self.uid_map:
            self.uid_map[key] = str(self._generate(prefix=None))  # 2.25.<random 128-bit>: derived from nothing
        return self.uid_map[key]

    def _replace_uids(self, elem: Any) -> None:
        if elem.value not in (None, ""):
            multi = is_multi(elem.value)
            elem.value = [self.new_uid(v) for v in elem.value] if multi else self.new_uid(elem.value)

    def _keep_uid(self, elem: Any) -> bool:
        kw = elem.keyword or ""
        values = list(elem.value) if is_multi(elem.value) else [elem.value]
        if not all(uid_syntax(v) for v in values if v):
            return False  # not a UID (free text where a class UID goes): replaced like an instance UID
        standard = all(str(v).startswith(_STANDARD_UID_ROOT) for v in values if v)
        return standard or kw.endswith("ClassUID") or kw in _KEEP_UID_KEYWORDS

    @staticmethod
    def _vr(elem: Any) -> str:
        return str(elem.VR).split(" or ")[0]  # ambiguous VRs ("US or SS", "OB or OW") -> the first

    def empty(self, elem: Any) -> None:
        """Z: a zero-length value (a sequence with no items)."""
        vr = self._vr(elem)
        if vr == "SQ":
            elem.value = []
        elif vr in _BYTES_VRS:
            elem.value = b""
        elif vr in _DUMMY_BY_VR and not isinstance(_DUMMY_BY_VR[vr], str):
            elem.value = None  # binary numbers: zero length
        else:
            elem.value = ""

    def dummy(self, elem: Any) -> None:
        """D: a non-empty dummy of the element's VR; a sequence keeps its items, every value in them a dummy."""
        vr = self._vr(elem)
        if vr == "SQ":
            for item in elem.value:
                for tag in list(item.keys()):
                    if _removed_group(tag):
                        del item[tag]
                    else:
                        self.dummy(item[tag])
        elif vr == "UI":
            if elem.value in (None, "") or not self._keep_uid(elem):
                elem.value = self.new_uid(elem.value if elem.value not in (None, "") else f"dummy:{elem.tag}")
        elif vr in _BYTES_VRS:
            elem.value = b"\x00" * 8
        else:
            elem.value = _DUMMY_BY_VR.get(vr, _TEXT_DUMMY)

    def scrub(self, ds: Any) -> None:
        """Apply the profile to every element of ``ds`` and, recursively, of every item of every kept sequence."""
        for tag in list(ds.keys()):
            if _removed_group(tag):
                del ds[tag]  # by tag: a private element is never even parsed
                continue
            action = action_for(tag)
            applied = APPLIED[action] if action is not None else None
            if applied == "X":
                del ds[tag]  # before parsing it: a large removed value is never read
                continue
            elem = ds[tag]
            if not _as_defined(tag, elem.VR):
                del ds[tag]  # unknown, or written as another VR than DICOM's (a Modality as LO text, a sequence as OB)
                continue
            vr = self._vr(elem)
            if applied == "Z":
                self.empty(elem)
            elif applied == "D":
                self.dummy(elem)
            elif applied == "U":
                self._replace_uids(elem) if vr == "UI" else self.dummy(elem)
            elif applied is None:  # not in the table: names, dates and instance UIDs still go
                if vr in ("PN", "DA", "DT", "TM"):
                    self.empty(elem)
                elif vr == "UI" and not self._keep_uid(elem):
                    self._replace_uids(elem)
                elif vr == "CS":  # no free text in a code: see .code_strings
                    clean_element(elem)
            if vr == "SQ" and applied in (None, "U*"):
                for item in elem.value:
                    self.scrub(item)


def new_file_meta(meta: Any, ds: Any, scrubber: Scrubber) -> Any:
    """File meta of the copy: SOP class, the new SOP instance UID and the transfer syntax, nothing else."""
    from pydicom.dataset import FileMetaDataset

    fresh = FileMetaDataset()
    for keyword in ("MediaStorageSOPClassUID", "TransferSyntaxUID"):
        if keyword in meta and uid_syntax(meta[keyword].value):  # free text there is not copied
            setattr(fresh, keyword, meta[keyword].value)
    if ds.get("SOPInstanceUID"):
        fresh.MediaStorageSOPInstanceUID = ds.SOPInstanceUID  # already the new UID
    elif meta.get("MediaStorageSOPInstanceUID"):
        fresh.MediaStorageSOPInstanceUID = scrubber.new_uid(meta.MediaStorageSOPInstanceUID)
    return fresh
