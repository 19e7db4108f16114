"""The case report a clinician can file: one or two A4 pages (reportlab) with the research-use notice, the image and
its Grad-CAM overlay, the calibrated answer or the reason there is none, the stage and pathway with their basis,
the model's pins and its measured test metrics.

Everything printed comes from the :class:`~medimg_demo.predict.Prediction`, the model config and :class:`StudyInfo`
(size, modality, pixel spacing, frame): never a DICOM attribute beyond those, never a file name, not even in the PDF
metadata. The PDF is built in memory, so reportlab never learns the output path either.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.platypus import Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from ..errors import ReportError
from ..eval.call_record import call_record, record_text
from ..imaging.decode import read_file
from ..imaging.study import Study
from ..models.config import ModelConfig
from ..models.registry import get_model
from ..notice import DISCLAIMER
from ..probability_text import whole_percent
from ..predict import Prediction, predict_study
from ..tasks import get_task, stage_name
from ..treatment import PATHWAY_NOTICE
from .images import colour_bar, pictures
from .style import FONT, FONT_BOLD, STYLES, register_fonts

log = logging.getLogger(__name__)

#: Neutral PDF metadata: the same for every report, so no input (file name, patient) can reach it.
METADATA = {"title": "medimg_demo case report", "author": "medimg_demo", "subject": "Research use only - not a medical device",
            "creator": "medimg_demo", "keywords": "research use only"}
STAGE_NOT_STAGED = "Not assessed: this model does not stage (its training data carry no stage labels)."
STAGE_NO_ANSWER = "Not assessed: the model gave no answer for this image."
PAGE_W, PAGE_H = A4
MARGIN = 15 * mm
CONTENT_W = PAGE_W - 2 * MARGIN


@dataclass(frozen=True)
class StudyInfo:
    """The facts about the input a report may print: size, modality, pixel spacing and frame. Nothing else of a
    DICOM header gets here, so a report cannot carry an identifier."""

    width: int
    height: int
    modality: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    n_frames: int = 1
    frame_index: int = 0
    source_format: str | None = None
    spacing_source: str = ""  # where a spacing the file does not carry came from (the data set manifest)

    @classmethod
    def from_study(cls, study: Study) -> StudyInfo:
        return cls(width=study.width, height=study.height, modality=study.modality,
                   pixel_spacing_mm=study.pixel_spacing_mm, n_frames=study.n_frames, frame_index=study.frame_index,
                   source_format=study.source_format, spacing_source=study.spacing_source)


def _p(text: str, style: str = "body") -> Paragraph:
    """A paragraph of plain text (escaped: pathway options hold '<' and '>')."""
    return Paragraph(escape(text), STYLES[style])


def _table(rows: list[list[object]], widths: list[float], header: bool = True) -> Table:
    t = Table(rows, colWidths=widths, hAlign="LEFT")
    style = [("FONT", (0, 0), (-1, -1), FONT, 8.5), ("VALIGN", (0, 0), (-1, -1), "TOP"),
             ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.lightgrey), ("TOPPADDING", (0, 0), (-1, -1), 1.5),
             ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5)]
    if header:
        style += [("FONT", (0, 0), (-1, 0), FONT_BOLD, 8.5), ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef2f6"))]
    t.setStyle(TableStyle(style))
    return t


def _notice() -> Table:
    t = Table([[Paragraph(f"<b>{escape(DISCLAIMER)}</b>", STYLES["notice"])]], colWidths=[CONTENT_W])
    t.setStyle(TableStyle([("BOX", (0, 0), (-1, -1), 1.2, colors.HexColor("#b00020")),
                           ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#fdecee")),
                           ("TOPPADDING", (0, 0), (-1, -1), 5), ("BOTTOMPADDING", (0, 0), (-1, -1), 5)]))
    return t


def _fit(png: bytes, shape: tuple[int, int], box_w: float, box_h: float) -> Image:
    h, w = shape
    scale = min(box_w / w, box_h / h)
    return Image(io.BytesIO(png), width=w * scale, height=h * scale)


def _pictures(pred: Prediction, outline: np.ndarray | None) -> Table:
    """Image and overlay side by side with captions; the colour scale under the overlay."""
    image_png, over_png = pictures(pred.image, pred.heatmap, pred.pixel_spacing_mm, outline)
    box = (CONTENT_W / 2 - 4 * mm, 78 * mm)
    left = [_fit(image_png, pred.image.shape, *box), _p("Image in the file's display window" + (
        "; lesion outline in green" if outline is not None else ""), "figure")]
    if over_png is None:
        why = "none is given for an image the model refused" if pred.status == "refused" else "none was computed"
        right: list[object] = [_p(f"No heatmap: {why}.", "figure")]
    else:
        cls = get_task(pred.task).label_name(pred.heatmap_class) if pred.heatmap_class else "the shown class"
        scale = Table([["low", Image(io.BytesIO(colour_bar()), width=45 * mm, height=2.5 * mm), "high"]])
        scale.setStyle(TableStyle([("FONT", (0, 0), (-1, -1), FONT, 7), ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                                   ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 0)]))
        right = [_fit(over_png, pred.image.shape, *box), scale,
                 _p(f"Grad-CAM for '{cls}': how much each region raised that class's score. A heatmap shows where "
                    "the model looked, not where a tumor is.", "figure")]
    t = Table([[left, right]], colWidths=[CONTENT_W / 2] * 2)
    t.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("ALIGN", (0, 0), (-1, -1), "CENTER")]))
    return t


def _answer(pred: Prediction, cfg: ModelConfig) -> list[object]:
    """Status, calibrated probabilities, stage and pathway (no pathway unless the status is ok)."""
    spec = get_task(pred.task)
    out: list[object] = [_p("Result", "h2")]
    if pred.status == "ok" and pred.type_label and pred.type_probs:
        out.append(Paragraph(f"Status: <b>answer given</b> - {escape(spec.label_name(pred.type_label))} "
                             f"({whole_percent(pred.type_probs[pred.type_label])})", STYLES["body"]))
        record = record_text(call_record(cfg, pred.type_label),
                             lambda label: escape(spec.label_name(label)), strong=("<b>", "</b>"), em=("<i>", "</i>"))
        if record:
            out.append(Paragraph(record, STYLES["caption"]))
    else:
        out.append(Paragraph(f"Status: <b>{escape(pred.status)}</b> - {escape(pred.reason or '')}", STYLES["warn"]))
    if pred.type_probs:
        rows: list[list[object]] = [["Class", "Calibrated probability"]]
        ranked = sorted(pred.type_probs.items(), key=lambda kv: -kv[1])
        rows += [[spec.label_name(k), whole_percent(v)] for k, v in ranked]
        out += [Spacer(1, 2 * mm), _table(rows, [70 * mm, 40 * mm]),
                _p("Calibrated probabilities, in whole percent from 1% to 99% as the screens show them (the calibration's "
                   "own error on the test split is a few points: see the figures below and the model card).", "caption")]
    out.append(_p("Stage", "h2"))
    if pred.status != "ok":
        out.append(_p(STAGE_NO_ANSWER))
    elif pred.type_label == spec.normal_label:  # no size rule, grading note or "No stage (no tumor) 97%" for it
        out.append(_p(f"No lesion staged: the model's call is {spec.label_name(pred.type_label)}."))
    elif pred.stage_label is None or pred.stage_probs is None:
        if pred.size_category is not None:
            c = pred.size_category
            out.append(Paragraph(f"Size category <b>{escape(str(c['label']))}</b> (imaging size estimate; "
                                 f"{escape(str(c['rule']))}). {escape(str(c['note']))}", STYLES["body"]))
        else:
            out.append(_p(spec.staging_note or STAGE_NOT_STAGED))
    else:
        out.append(Paragraph(f"Stage group <b>{escape(stage_name(pred.stage_label))}</b> "
                             f"({whole_percent(pred.stage_probs[pred.stage_label])}). "
                             f"Basis: {escape(pred.stage_note or 'learned stage head')}", STYLES["body"]))
    if pred.status == "ok" and pred.lesion is not None:
        out.append(_p(f"Lesion outlined by the model: {pred.lesion.describe()}."))
    out.append(_p("Treatment pathway", "h2"))
    tp = pred.treatment if pred.status == "ok" else None
    if tp is None:
        out.append(_p("No pathway: the model gave no answer for this image."))
    else:
        out += [Paragraph(f"<b>{escape(tp.summary)}</b>", STYLES["body"]),
                *(Paragraph(escape(o), STYLES["bullet"], bulletText="\u2022") for o in tp.options),
                _p(f"Source: {tp.source}", "caption"), _p(PATHWAY_NOTICE, "warn")]
    return out


def _facts(pred: Prediction, info: StudyInfo, cfg: ModelConfig, when: datetime) -> list[object]:
    """Model pins, report date, input facts (never identifiers), gate score and warnings."""
    frame = (f"{info.frame_index + 1} of {info.n_frames} (0-based index {info.frame_index} in the command-line tool)"
             if info.n_frames > 1 else "1 of 1 (a single image)")
    spacing = info.pixel_spacing_mm
    auto = "" if not pred.by_auto else " (Auto: no bundled model accepts the image)" if pred.status == "refused" \
        else " (picked by Auto)"
    rows = [["Model", pred.model_id + auto],
            ["Weights sha256 (first 12)", (cfg.weights_sha256 or "unpinned")[:12]],
            ["Report date (UTC)", when.strftime("%Y-%m-%d %H:%M")],
            ["Input", " ".join(x for x in ((info.source_format or "").upper(), f"{info.width} x {info.height} px",
                                          f"modality {info.modality}" if info.modality else "") if x)],
            ["Pixel spacing", f"{spacing[0]:.3g} x {spacing[1]:.3g} mm"
             + (f" (from the {info.spacing_source})" if info.spacing_source else "") if spacing
             else "not stated (no scale bar)"],
            ["Frame", frame], ["Image pixel hash", pred.image_sha256[:12]]]
    if pred.ood:
        rows.append(["Out-of-distribution score", f"{pred.ood['score']:.3g} (refused above {pred.ood['threshold']:.3g}, "
                                                  f"{pred.ood['method']})"])
    rows.append(["Warnings", Paragraph(escape("; ".join(pred.warnings)) if pred.warnings else "none", STYLES["small"])])
    return [_p("Model and input", "h2"), _table(rows, [40 * mm, CONTENT_W - 40 * mm], header=False)]


def bundled_metrics(cfg: ModelConfig) -> tuple[pd.DataFrame | None, int | None]:
    """The model's measured test metrics (``models/<id>/metrics/metrics.csv``) and its number of test images."""
    folder = cfg.folder / "metrics" if cfg.folder else None
    if folder is None or not (folder / "metrics.csv").is_file():
        return None, None
    metrics = pd.read_csv(folder / "metrics.csv", keep_default_na=False, na_values=[""])
    n = len(pd.read_csv(folder / "cases.csv", usecols=[0])) if (folder / "cases.csv").is_file() else None
    return metrics, n


def _metrics(cfg: ModelConfig) -> list[object]:
    from ..eval.plots import metric_name

    metrics, n = bundled_metrics(cfg)
    head = _p("Measured performance (test split)", "h2")
    if metrics is None:
        return [head, _p("No test metrics are bundled with this model.")]
    spec = get_task(cfg.task)

    def cell(r: pd.Series) -> str:
        ci = f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if pd.notna(r["ci_low"]) else ""
        return f"{r['value']:.3f}{ci}"

    overall = metrics[metrics["class"].fillna("") == ""].set_index("metric")
    rows: list[list[object]] = [["Metric", "Value [95% CI]"]]
    rows += [[metric_name(k), cell(overall.loc[k])] for k in ("accuracy", "macro_auc", "ece") if k in overall.index]
    sens = metrics[metrics["metric"] == "sensitivity"]
    rows += [[f"Sensitivity: {spec.label_name(r['class'])}", cell(r)] for _, r in sens.iterrows()]
    size = f" on {n} test images" if n else ""
    return [head, _table(rows, [75 * mm, 55 * mm]),
            _p(f"Measured{size} of this data set with 95% intervals (Wilson for proportions, bootstrap for AUC); "
               "they describe this data set, not clinical performance.", "caption")]


def _footer(canvas, doc) -> None:  # noqa: ANN001 - reportlab's page callback
    canvas.saveState()
    canvas.setFont(FONT, 7)
    canvas.setFillColor(colors.HexColor("#b00020"))
    canvas.drawString(MARGIN, 9 * mm, "Research use only - not a medical device. Not a diagnosis; not a treatment order.")
    canvas.setFillColor(colors.grey)
    canvas.drawRightString(PAGE_W - MARGIN, 9 * mm, f"medimg_demo case report - page {doc.page}")
    canvas.restoreState()


def render_report(pred: Prediction, info: StudyInfo, cfg: ModelConfig | None = None, *,
                  outline: np.ndarray | None = None, when: datetime | None = None) -> bytes:
    """The report as PDF bytes. ``cfg`` defaults to the registry's config of ``pred.model_id``; ``outline``: a
    lesion mask (same shape as the image) drawn on both pictures, for when predictions carry one."""
    register_fonts()
    cfg = cfg or get_model(pred.model_id)
    when = when or datetime.now(timezone.utc)
    none_fits = pred.by_auto and pred.status == "refused"  # Auto: the nearest model (or the default) refused it
    title = "Case report - " + ("no bundled model fits this image" if none_fits else get_task(pred.task).title)
    outline = outline if outline is not None else pred.lesion_mask  # the model's lesion, where it outlined one
    story: list[object] = [_p(title, "h1"), _notice(), Spacer(1, 4 * mm), _pictures(pred, outline),
                           *_answer(pred, cfg), KeepTogether(_facts(pred, info, cfg, when)), KeepTogether(_metrics(cfg))]
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
                            bottomMargin=16 * mm, **METADATA)
    doc.build(story, onFirstPage=_footer, onLaterPages=_footer)
    return buf.getvalue()


def write_report(pred: Prediction, info: StudyInfo, out: str | os.PathLike[str], cfg: ModelConfig | None = None, *,
                 outline: np.ndarray | None = None, when: datetime | None = None) -> Path:
    """Write the case report PDF to ``out`` (atomically: a half-written report is never left behind)."""
    data = render_report(pred, info, cfg, outline=outline, when=when)
    path = Path(out)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        if tmp.is_file():  # False too where the folder itself could not be made
            tmp.unlink()
        raise ReportError(f"The report could not be written ({exc.strerror}); choose a writable output folder.") from exc
    log.info("Wrote a case report (%d bytes) for model %s", len(data), pred.model_id)
    return path


def report_file(path: str | os.PathLike[str], out: str | os.PathLike[str], model: str | None = None,
                frame: int | None = None) -> Prediction:
    """Decode one file (``frame``: 0-based, default the middle frame), predict with Grad-CAM and write its case
    report to ``out``: the command line's ``report``. Returns the prediction the report shows."""
    if Path(out).is_dir():  # checked before the model runs
        raise ReportError(f"--out {out} is a folder: give the report's file name, e.g. {Path(out) / 'case_report.pdf'}.")
    study = read_file(path, frame)
    pred = predict_study(study, model, explain=True)
    write_report(pred, StudyInfo.from_study(study), out)
    return pred
