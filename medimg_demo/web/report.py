"""The "Download report (PDF)" action, free of Gradio: the analysis already on screen becomes a case report file."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path

from ..paths import work_dir
from ..report.pdf import StudyInfo, write_report
from .analysis import Analysis


def download_name(task: str, when: datetime) -> str:
    """The name a case report is downloaded under: the task and the report's time (UTC, to the second, as the
    report's own date is to the minute), never anything of the upload's, so that reports in a downloads folder can be
    told apart and sorted: ``medimg-report_lung_ct_2026-11-29_21-15-03_UTC.pdf``."""
    return f"medimg-report_{task}_{when.astimezone(timezone.utc):%Y-%m-%d_%H-%M-%S}_UTC.pdf"


def report_for_analysis(analysis: Analysis) -> tuple[Path, str]:
    """Write the case report of an analysis into the scratch folder (``work_dir()/reports``) under a random name
    (never the upload's name, which may carry a patient's); returns its path, which the caller publishes, and the
    name to download it under (:func:`download_name`)."""
    view = analysis.view
    info = StudyInfo(width=int(view.pixels.shape[1]), height=int(view.pixels.shape[0]), modality=view.modality,
                     pixel_spacing_mm=view.spacing_mm, n_frames=analysis.n_frames, frame_index=analysis.frame_index,
                     spacing_source=analysis.prediction.pixel_spacing_source)
    out = work_dir() / "reports" / f"{secrets.token_hex(16)}.pdf"
    when = datetime.now(timezone.utc)
    return write_report(analysis.prediction, info, out, when=when), download_name(analysis.prediction.task, when)
