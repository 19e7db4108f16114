"""Gradio handler of the "Download report (PDF)" button: the case on screen as a case report, published under a
content name in the public folder (never under the upload's name)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..errors import MedimgError
from . import analysis, files, uploads
from .handlers import _file_path
from .report import report_for_analysis


def report(upload: Any, model_id: str | None, frame: float | None = None) -> str:
    """Analyse the current file again with the current model and frame (the same answer as on screen) and return
    the published PDF."""
    path = _file_path(upload)
    frame_index = int(frame) - 1 if frame else None
    try:
        a = analysis.analyse(uploads.to_analyse(path), model_id or None, 0.45, frame_index)
        pdf = report_for_analysis(a)
        try:
            return files.publish(pdf)
        finally:
            pdf.unlink(missing_ok=True)  # the scratch copy: only the published one is served
    except MedimgError as exc:
        raise gr.Error(str(exc)) from None
