"""Code String (CS) values: which ones are read, shown and written, so free text never rides in one.

A CS value is at most 16 capitals, digits, spaces or underscores (PS3.5 6.2). A forged or careless file can put
anything there ("Scan of DOE JANE PID998877" as its Modality). Three rules, used when a file is read for display and
when a de-identified copy is written (:mod:`.annex_e`), so both agree:

- Modality must be a term of DICOM's own list (CID 33, from pydicom's copy of PS3.16, with the retired terms and
  "SC" that real files still carry), or a common alias of one ("PET" is PT, "MRI" is MR); anything else, even one
  word (a name such as "SMITHJOHN" is one), is not shown and is written empty, as if absent (not "OT": the app reads its working copy, and would refuse the image as "Modality OT" where
  the original file, read by the command line, has none), and the copy does not claim the identity removed
  (``deid``).
- Body Part Examined keeps what real files use beyond the rule ("L-SPINE", "ABDOMEN/PELVIS", one long word cut
  to 16); anything else (spaces past 16 characters, "^", line breaks) is not shown and is written empty.
- Any other CS value the profile keeps must be a code string (hyphen, slash and dot allowed): written upper-cased,
  else empty.

A name written as valid codes ("DOE JANE" as a Patient Position, or as one value of a multi-valued code such as Image
Type) cannot be told from them; nothing here claims otherwise. Elements written as another VR than DICOM gives them
(a Modality written as LO text) are removed before these rules apply (:mod:`.annex_e`).
"""

from __future__ import annotations

import functools
import re
from typing import Any

#: Retired Modality terms (PS3.3 C.7.3.1.1.1) and "SC", still seen in archives.
_OLD_MODALITIES = frozenset({"AS", "CD", "CF", "CP", "CS", "DD", "DF", "DM", "DS", "EC", "FA", "FS", "LP", "MA",
                             "MS", "OPR", "SC", "ST", "VF"})
#: Words real files write for a Modality term: read as that term.
_MODALITY_ALIASES = {"PET": "PT", "MRI": "MR"}


@functools.lru_cache(maxsize=1)
def modality_terms() -> frozenset[str]:
    """The Modality terms DICOM defines: CID 33 as pydicom ships it, and the retired ones."""
    from pydicom.sr.codedict import codes

    return frozenset(code.value for code in codes.CID33.concepts.values()) | _OLD_MODALITIES


def code_string(value: Any, extra: str = "") -> str | None:
    """A value as the CS rule allows it (upper-cased; ``extra`` characters allowed too), else None."""
    text = str(value if value is not None else "").strip().upper()
    return text if re.fullmatch(rf"[A-Z0-9_ {re.escape(extra)}]{{1,16}}", text) else None


def modality(value: Any) -> str | None:
    """A Modality DICOM defines (upper-cased; "PET" and "MRI" as PT and MR), else None: any other word could be a
    name, and the value reaches the page, refusals, the JSON, reports, batch output and the feedback store."""
    text = code_string(value)
    text = _MODALITY_ALIASES.get(text or "", text)
    return text if text is not None and text in modality_terms() else None


def body_part(value: Any) -> str | None:
    """A Body Part Examined value as real files write it: a code string with "-" and "/", or one long word (no
    spaces) cut to 16; else None."""
    text = str(value if value is not None else "").strip().upper()
    if len(text) > 16 and re.fullmatch(r"[A-Z0-9_\-/]+", text):
        text = text[:16]
    return code_string(text, extra="-/")


def is_multi(value: Any) -> bool:
    """Whether an element's value holds several values (a list, or pydicom's MultiValue)."""
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


def _components(value: Any) -> list[Any]:
    return list(value) if is_multi(value) else [value]


def clean_element(elem: Any) -> None:
    """A kept CS element of a copy being de-identified: written only as the rules above allow (in place)."""
    keyword = elem.keyword or ""
    if keyword == "Modality":
        elem.value = modality(elem.value) or ""
    elif keyword == "BodyPartExamined":
        elem.value = body_part(elem.value) or ""
    elif elem.value not in (None, ""):
        parts = [code_string(p, extra="-/.") if str(p).strip() else "" for p in _components(elem.value)]
        elem.value = "" if None in parts else parts if len(parts) > 1 else parts[0]  # upper-cased, as the rule says
