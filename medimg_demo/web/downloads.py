"""Gradio handler of the "Download report (PDF)" button: the case on screen as a case report, published under a
content name in the public folder (never under the upload's name)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..errors import MedimgError
from . import analysis, auth, files, uploads, view_store
from .handlers import _file_path
from .report import report_for_analysis


def report(upload: Any, shown: Any,
           request: gr.Request = None,  # type: ignore[assignment] - injected by Gradio
           profile: gr.OAuthProfile | None = None) -> str:
    """The case report of the result on screen: the same file, with the model and frame of the shown result (kept
    in the browser session's state, not whatever the dropdowns hold now), analysed again and published as a PDF."""
    with uploads.used_up(None if upload is None else str(getattr(upload, "name", upload))):  # refused: gone too
        return _report(upload, shown, request, profile)


def _report(upload: Any, shown: Any, request: gr.Request, profile: gr.OAuthProfile | None) -> str:
    if view_store.dropped(shown):
        raise gr.Error(view_store.DROPPED)
    shown = view_store.lookup(shown)
    if shown is None or not shown.model_id or not auth.is_owner_of(request, profile, shown.created_by):
        raise gr.Error("Analyse the scan first: the report describes the result on screen.")
    path = _file_path(upload)
    try:
        a = analysis.analyse(uploads.to_analyse(path), shown.model_id, 0.45, shown.frame_index)
        if shown.image_sha256 and a.prediction.image_sha256 != shown.image_sha256:
            raise gr.Error("The file in the upload box is not the scan on screen: press Analyse, then ask for the "
                           "report again.")
        pdf = report_for_analysis(a)
        try:
            return files.publish(pdf)
        finally:
            pdf.unlink(missing_ok=True)  # the scratch copy: only the published one is served
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None
