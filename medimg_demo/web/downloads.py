"""Gradio handlers of the download buttons: the case on screen as a case report, and the de-identified DICOM copy,
published in the public folder (never under the upload's name)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from ..errors import MedimgError
from .refusal import refusal
from . import analysis, auth, fair_share, outputs, uploads, view_store
from .handlers import _file_path
from .report import report_for_analysis


@fair_share.one_at_a_time
def report(upload: Any, shown: Any,
           request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
           profile: gr.OAuthProfile | None = None) -> str:
    """The case report of the result on screen: the same file, with the model and frame of the shown result (kept
    in the browser session's state, not whatever the dropdowns hold now), analysed again and published as a PDF."""
    with uploads.used_up(None if upload is None else str(getattr(upload, "name", upload))):  # refused: gone too
        try:
            with fair_share.one_job(request, profile):
                return _report(upload, shown, request, profile)
        except fair_share.Busy as exc:
            raise refusal(str(exc), exc) from None


def _report(upload: Any, shown: Any, request: gr.Request, profile: gr.OAuthProfile | None) -> str:
    if view_store.dropped(shown):
        raise refusal(view_store.DROPPED)
    shown = view_store.lookup(shown)
    if shown is None or not shown.model_id or not auth.is_owner_of(request, profile, shown.created_by):
        raise refusal("Analyse the scan first: the report describes the result on screen.")
    path = _file_path(upload)
    try:
        a = analysis.analyse(uploads.to_analyse(path, request, profile), shown.model_id, 0.45, shown.frame_index)
        if shown.image_sha256 and a.prediction.image_sha256 != shown.image_sha256:
            raise refusal("The file in the upload box is not the scan on screen: press Analyse, then ask for the "
                           "report again.")
        pdf, name = report_for_analysis(a)
        try:
            return outputs.publish(pdf, name)
        finally:
            pdf.unlink(missing_ok=True)  # the scratch copy: only the published one is served
    except MedimgError as exc:
        raise refusal(str(exc), exc) from None


#: The de-identified copy made of each working copy (asked again, the same copy: a new one each call wrote up to
#: 100 MB to the public folder per request); at most this many remembered.
_COPIES: dict[str, tuple[Path, tuple[str, ...]]] = {}
_COPIES_MAX = 1000
_COPIES_LOCK = threading.Lock()


def _fresh(path: Path, max_age_s: float) -> bool:
    """Whether a file handed out earlier is still there and younger than ``max_age_s`` seconds."""
    try:
        return time.time() - path.stat().st_mtime < max_age_s
    except OSError:
        return False


@fair_share.one_at_a_time
def deidentify(upload: Any,
               request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
               profile: gr.OAuthProfile | None = None) -> str:
    """A de-identified DICOM copy to download, in the public folder under a random name; one per working copy while
    it is fresh (younger than half the files' age limit); a working copy only under the login it was uploaded under."""
    path = _file_path(upload)
    key = os.path.realpath(path)  # one memo entry per file: a leading "//", a "/./" or a symlink name the same one
    raw = uploads.is_raw_upload(path)
    if not raw:
        try:
            uploads.check_owner(path, request, profile)
        except MedimgError as exc:
            raise refusal(str(exc), exc) from None
    with _COPIES_LOCK:
        made = None if raw else _COPIES.get(key)
    if not raw:
        uploads.mark_used(path)
    if made is None or not Path(path).is_file() or not _fresh(made[0], outputs.MAX_AGE_S / 2):
        try:
            data = uploads.read_upload(path, consume=raw)
            with fair_share.one_job(request, profile):
                made = outputs.deidentified_copy(data)
        except MedimgError as exc:
            raise refusal(str(exc), exc) from None
        if not raw:
            with _COPIES_LOCK:
                if len(_COPIES) >= _COPIES_MAX:
                    _COPIES.pop(next(iter(_COPIES)))  # the oldest entry
                _COPIES[key] = made
    for warning in made[1]:  # e.g. burned-in text: the copy says its identity is not removed, and so does the page
        gr.Warning(warning)
    return str(made[0])
