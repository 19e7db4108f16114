"""One feedback submission: its fields, and the bounds every field is checked against before it is stored.

A client cannot store megabytes, control characters, impossible values or a made-up prediction: the model's side
of a row comes from the server's record of the prediction (see :mod:`.store`), and everything the reader sends is
typed and bounded here.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..errors import InputError

MAX_COMMENT = 4000
MAX_SESSION_ID = 200
MAX_CASE_ID = 400
MAX_LABEL = 64
MAX_MODEL_ID = 200
MAX_OUTPUTS_JSON = 64_000

_READER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{1,63}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
PREDICTION_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_KEY = re.compile(r"^[A-Za-z0-9_.:\-]{8,200}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: Line breaks: refused in one-line fields (a carriage return splits a CSV row where a spreadsheet reads it).
_LINE_BREAK = re.compile(r"[\r\n\x85\u2028\u2029]")
#: Session names the summaries use for their own rows (compared without case): a reader's session cannot pose as one.
RESERVED_SESSION_IDS = frozenset({"all", "all sessions", "(no session)"})

def _text(name: str, value: str | None, limit: int) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise InputError(f"{name} must be text.")
    if len(value) > limit:
        raise InputError(f"{name} is longer than {limit} characters ({len(value)}); shorten it.")
    if _CONTROL.search(value):
        raise InputError(f"{name} contains control characters; type plain text.")
    if _LINE_BREAK.search(value):
        raise InputError(f"{name} contains a line break; type it on one line.")


#: Alphabets whose letters pass for one another's ("а", "о", "р" in Cyrillic; "ο", "ρ" in Greek): a name mixing two of
#: them is refused; other mixes (kanji with kana, a Hawaiian ʻokina) are ordinary names.
_LOOK_ALIKE = frozenset({"LATIN", "CYRILLIC", "GREEK"})


#: Characters drawn as nothing that are no format characters: Unicode's other default-ignorable code points (the
#: combining grapheme joiner, Hangul fillers, variation selectors...) and the blank braille pattern.
_BLANK = re.compile("[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2800\u3164\ufe00-\ufe0f\uffa0"
                    "\U000e0100-\U000e01ef]")


def _invisible(value: str) -> bool:
    """Format, unassigned, private-use or blank characters, or a combining mark on a plain (ASCII) character or on
    nothing: NFKC has already composed the accented letters that exist, so what is left there is an underline or an
    accent no letter of a name carries ("rv-shared" plus a combining mark reads as "rv-shared")."""
    return bool(_BLANK.search(value)) or any(
        unicodedata.category(ch) in ("Cf", "Cn", "Co", "Cs")
        or (unicodedata.category(ch).startswith("M") and (i == 0 or value[i - 1].isascii()))
        for i, ch in enumerate(value))


def _plain(name: str, value: str) -> None:
    """Refuse a name that can pass for another one: invisible or direction-changing characters (Unicode format
    characters: "study-B" plus a zero-width space, "ALL" reversed; other blank ones, see :func:`_invisible`),
    characters a compatibility form replaces (full-width "ＡＬＬ"), or letters of several alphabets (a Cyrillic "г"
    among Latin ones)."""
    if _invisible(value) or unicodedata.normalize("NFKC", value) != value:
        raise InputError(f"{name} contains invisible, reversed or full-width characters; type it with plain ones.")
    scripts = {unicodedata.name(ch, "?").split(" ")[0] for ch in value if ch.isalpha()} & _LOOK_ALIKE
    if len(scripts) > 1:  # "гs-75c98d" (a Cyrillic г) reads as the Latin "rs-75c98d" it is not
        raise InputError(f"{name} mixes letters of several alphabets ({', '.join(sorted(scripts)).lower()}), so it can "
                         "pass for another name; type it in one alphabet.")


def _probs(name: str, value: dict[str, float] | None) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or len(value) > 64:
        raise InputError(f"{name} must map at most 64 labels to probabilities.")
    for k, v in value.items():
        _text(name, k, MAX_LABEL)
        if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0.0 <= float(v) <= 1.0:
            raise InputError(f"{name} must hold probabilities between 0 and 1.")


@dataclass
class Feedback:
    """One submission. ``phase``: 'unaided' (reader's own call before seeing the model), 'aided' (after), 'free'.

    ``prediction_id`` names the prediction the server recorded when it showed the output: with it, what the model
    said (model, weights, image hash, labels, probabilities) is taken from the store, never from the client.
    ``idempotency_key``: one per submission; sending the same key again returns the row already stored.
    """

    reader: str
    image_sha256: str
    phase: str = "free"
    session_id: str = ""
    case_id: str = ""
    model_id: str = ""
    weights_sha256: str = ""
    pred_type: str | None = None
    pred_type_probs: dict[str, float] | None = None
    pred_stage: str | None = None
    pred_stage_probs: dict[str, float] | None = None
    #: the status of the prediction shown: ok, refused or indeterminate (from the server's record)
    pred_status: str | None = None
    reader_type: str | None = None
    reader_stage: str | None = None
    type_agree: bool | None = None
    stage_agree: bool | None = None
    pathway_agree: bool | None = None
    corrected_type: str | None = None
    corrected_stage: str | None = None
    heatmap_plausibility: int | None = None
    confidence: int | None = None
    comment: str | None = None
    truth_type: str | None = None
    truth_stage: str | None = None
    prediction_id: str | None = None
    idempotency_key: str | None = None
    created_utc: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="milliseconds"))

    def validate(self) -> None:
        """Every field bounded and typed: a client cannot store megabytes, control characters or impossible values."""
        if not isinstance(self.reader, str) or not _READER.match(self.reader or ""):
            raise InputError(
                "Enter a reader pseudonym of 2-64 letters, digits, '.', '_', '@' or '-' (for example 'reader07'); "
                "no real name is needed."
            )
        if not isinstance(self.image_sha256, str) or not SHA256_RE.match(self.image_sha256 or ""):
            raise InputError("Run a prediction first: feedback is stored against the image's hash.")
        if self.phase not in ("unaided", "aided", "free"):
            raise InputError("Unknown phase; use 'unaided', 'aided' or 'free'.")
        _text("The session id", self.session_id, MAX_SESSION_ID)
        if isinstance(self.session_id, str):
            _plain("The session id", self.session_id)
            if self.session_id.strip().casefold() in RESERVED_SESSION_IDS:
                raise InputError("That session name is kept for the summary's own rows; choose another name.")
        _text("The case id", self.case_id, MAX_CASE_ID)
        _text("The model id", self.model_id, MAX_MODEL_ID)
        if self.weights_sha256 and not SHA256_RE.match(str(self.weights_sha256)):
            raise InputError("The weights hash must be 64 hexadecimal digits.")
        for name in ("pred_type", "pred_stage", "reader_type", "reader_stage", "corrected_type", "corrected_stage",
                     "truth_type", "truth_stage"):
            _text(name.replace("_", " ").capitalize(), getattr(self, name), MAX_LABEL)
        _probs("Type probabilities", self.pred_type_probs)
        _probs("Stage probabilities", self.pred_stage_probs)
        for name in ("heatmap_plausibility", "confidence"):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or int(v) != v:
                raise InputError(f"{name.replace('_', ' ').capitalize()} must be a whole number between 1 and 5.")
            if not 1 <= int(v) <= 5:
                raise InputError(f"{name.replace('_', ' ').capitalize()} must be between 1 and 5.")
        for name in ("type_agree", "stage_agree", "pathway_agree"):
            if getattr(self, name) not in (None, True, False):
                raise InputError(f"{name.replace('_', ' ').capitalize()} must be yes, no or empty.")
        for head, agree, corrected, shown in (("type", self.type_agree, self.corrected_type, self.pred_type),
                                              ("stage", self.stage_agree, self.corrected_stage, self.pred_stage)):
            if corrected and shown and corrected != shown and agree is not False:  # a correction left from before?
                raise InputError(f"A corrected {head} other than the model's goes with 'Disagree' on the {head}: "
                                 f"choose 'Disagree', or clear the corrected {head}.")
        if self.comment is not None:
            if not isinstance(self.comment, str):
                raise InputError("The comment must be text.")
            if len(self.comment) > MAX_COMMENT:
                raise InputError(f"The comment is longer than {MAX_COMMENT} characters; shorten it.")
            if "\x00" in self.comment:
                raise InputError("The comment contains a NUL character; type plain text.")
        if self.prediction_id is not None and not PREDICTION_ID_RE.match(str(self.prediction_id)):
            raise InputError("Unknown prediction id: run the prediction again and give feedback on what is shown.")
        if self.idempotency_key is not None and not _KEY.match(str(self.idempotency_key)):
            raise InputError("The submission key must be 8-200 letters, digits, '.', '_', ':' or '-'.")
