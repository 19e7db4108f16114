"""The "Download report (PDF)" action, free of Gradio: the analysis already on screen becomes a case report file."""

from __future__ import annotations

import secrets
from pathlib import Path

from ..paths import work_dir
from ..report.pdf import StudyInfo, write_report
from .analysis import Analysis


def report_for_analysis(analysis: Analysis) -> Path:
    """Write the case report of an analysis into the scratch folder (``work_dir()/reports``) under a random name
    (never the upload's name, which may carry a patient's) and return its path; the caller publishes it."""
    view = analysis.view
    info = StudyInfo(width=int(view.pixels.shape[1]), height=int(view.pixels.shape[0]), modality=view.modality,
                     pixel_spacing_mm=view.spacing_mm, n_frames=analysis.n_frames, frame_index=analysis.frame_index,
                     spacing_source=analysis.prediction.pixel_spacing_source)
    out = work_dir() / "reports" / f"{secrets.token_hex(16)}.pdf"
    return write_report(analysis.prediction, info, out)
