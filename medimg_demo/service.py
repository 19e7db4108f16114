"""What the web app does for one request, free of Gradio: file path in, display-ready outputs out.

Kept apart from ``app.py`` so the UI stays thin and the same path is tested without a browser.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .io import Study, read_file
from .overlay import add_scale_bar, gray_to_rgb, overlay
from .windowing import CT_PRESETS
from .predict import Prediction, get_predictor
from .registry import ModelConfig, get_model, list_models
from .treatment import PATHWAY_NOTICE

log = logging.getLogger(__name__)

STAGE_NOT_ASSESSED = "Stage: not assessed by this model (its training data carry no stage labels)."


WINDOW_CHOICES = ["File default", *[k.capitalize() for k in CT_PRESETS], "Manual"]


@dataclass(frozen=True)
class View:
    """What redrawing the display needs (kept in the browser session, never sent to the client)."""

    pixels: np.ndarray  # default display, [0, 1]
    values: np.ndarray | None  # modality values (HU for CT) for other windows; None for PNG/JPEG
    invert: bool
    heatmap: np.ndarray
    spacing_mm: tuple[float, float] | None
    default_window: tuple[float, float] | None
    modality: str | None

    def window_for(self, choice: str | None, center: float | None, width: float | None) -> tuple[float, float] | None:
        """(centre, width) for a window choice, or None for the file's default view."""
        if self.values is None or not choice or choice == "File default":
            return None
        if choice == "Manual":
            if center is None or width is None or not width > 0:
                return None
            return float(center), float(width)
        return CT_PRESETS.get(choice.lower())

    def render(self, choice: str | None = None, center: float | None = None, width: float | None = None,
               opacity: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
        """(image, overlay) as RGB uint8 under the chosen display window, with a scale bar where spacing is known."""
        window = self.window_for(choice, center, width)
        if window is None or self.values is None:
            gray = self.pixels
        else:
            from .windowing import apply_window

            gray = apply_window(self.values, window[0], window[1], invert=self.invert)
        image = add_scale_bar(gray_to_rgb(gray), self.spacing_mm)
        over = add_scale_bar(overlay(gray, self.heatmap, opacity), self.spacing_mm)
        return image, over


@dataclass(frozen=True)
class Analysis:
    prediction: Prediction
    type_scores: dict[str, float]
    stage_scores: dict[str, float] | None
    stage_text: str
    pathway_markdown: str
    original_rgb: np.ndarray
    overlay_rgb: np.ndarray
    info_markdown: str
    seconds: float
    view: View
    warnings: tuple[str, ...]
    n_frames: int
    frame_index: int


def model_choices() -> list[tuple[str, str]]:
    """(label shown, model id) for the model dropdown, default first."""
    models = list_models()
    default_id = get_model().id if models else None
    models.sort(key=lambda m: (m.id != default_id, m.task, m.id))
    return [(f"{m.task_title or m.task}: {m.id}", m.id) for m in models]


def default_model_id() -> str:
    return get_model().id


def sample_cases(per_class: int = 1) -> list[tuple[str, str, str]]:
    """(image path, model id, true label) of test-split cases per class for each model's task, where data is found.

    Only the shared data folder is read; nothing is copied into the repository.
    """
    import csv

    from .data import data_root

    out: list[tuple[str, str, str]] = []
    root = data_root()
    for cfg in list_models():
        manifest = root / cfg.task / "manifest.csv"
        if not manifest.is_file():
            continue
        taken: dict[str, int] = {}
        with open(manifest, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("split") != "test" or taken.get(row["label"], 0) >= per_class:
                    continue
                taken[row["label"]] = taken.get(row["label"], 0) + 1
                out.append((str((root / cfg.task / row["image"]).resolve()), cfg.id, row["label"]))
    return out


def allowed_paths() -> list[str]:
    """Folders the web server may serve files from: the data root (sample cases) and the state folder (error gallery)."""
    from .data import data_root
    from .paths import state_dir

    return [str(p.resolve()) for p in (data_root(), state_dir()) if p.is_dir()]


def pathway_markdown(pred: Prediction) -> str:
    tp = pred.treatment
    options = "\n".join(f"- {o}" for o in tp.options)
    return (
        f"**{tp.summary}**\n\n{options}\n\n"
        f"<small>Source: {tp.source}</small>\n\n"
        f"> {PATHWAY_NOTICE}"
    )


def stage_text(pred: Prediction) -> str:
    if pred.stage_label is None:
        return STAGE_NOT_ASSESSED
    return f"Stage group **{pred.stage_label}**. _{pred.stage_note or ''}_"


def info_markdown(study: Study, cfg: ModelConfig, pred: Prediction, seconds: float) -> str:
    """Safe facts about the input and the model; never a DICOM identifier or a file name."""
    parts = [f"Model `{cfg.id}` (weights sha256 `{(cfg.weights_sha256 or 'unpinned')[:12]}`)"]
    parts.append(f"{study.source_format.upper()} {study.width}x{study.height} px")
    if study.modality:
        parts.append(f"modality {study.modality}")
    if study.pixel_spacing_mm:
        parts.append(f"pixel spacing {study.pixel_spacing_mm[0]:.3g} x {study.pixel_spacing_mm[1]:.3g} mm")
    if study.window is not None and study.values is not None:
        parts.append(f"default window C {study.window[0]:g} / W {study.window[1]:g}")
    if study.n_frames > 1:
        parts.append(f"frame {study.frame_index + 1} of {study.n_frames} shown")
    parts.append(f"heatmap: Grad-CAM for '{pred.heatmap_class}'")
    parts.append(f"{seconds * 1000:.0f} ms")
    return " · ".join(parts)


def analyse(
    path: str | Path,
    model_id: str | None = None,
    opacity: float = 0.45,
    frame: int | None = None,
    window: str | None = None,
    center: float | None = None,
    width: float | None = None,
) -> Analysis:
    """Decode, predict, explain and render one upload. Raises InputError for files it cannot use.

    ``frame`` is 0-based (default: the middle frame); ``window``/``center``/``width`` change only the display,
    never what the model sees.
    """
    t0 = time.perf_counter()
    study = read_file(path, frame)
    predictor = get_predictor(model_id)
    pred = predictor.run(study, explain=True)
    assert pred.heatmap is not None
    view = View(
        pixels=study.pixels,
        values=study.values,
        invert=study.invert,
        heatmap=pred.heatmap,
        spacing_mm=study.pixel_spacing_mm,
        default_window=study.window,
        modality=study.modality,
    )
    original, over = view.render(window, center, width, opacity)
    seconds = time.perf_counter() - t0
    log.info("Predicted %s with %s in %.0f ms", pred.type_label, predictor.cfg.id, seconds * 1000)
    return Analysis(
        prediction=pred,
        type_scores=pred.type_probs,
        stage_scores=pred.stage_probs,
        stage_text=stage_text(pred),
        pathway_markdown=pathway_markdown(pred),
        original_rgb=original,
        overlay_rgb=over,
        info_markdown=info_markdown(study, predictor.cfg, pred, seconds),
        seconds=seconds,
        view=view,
        warnings=study.warnings,
        n_frames=study.n_frames,
        frame_index=study.frame_index,
    )


def upload_name(path: str | Path, data: bytes) -> str:
    """A neutral name for an upload: a hash of its bytes and a safe extension, never the original name."""
    import hashlib

    p = Path(path)
    digest = hashlib.sha256(data).hexdigest()[:16]
    ext = p.suffix.lower() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm") else ""
    return f"scan-{digest}{ext}"


def deidentified_copy(path: str | Path, out_dir: Path) -> Path:
    """Write a de-identified copy of an uploaded DICOM under ``out_dir``, named by a hash (never by the upload)."""
    from .deid import deidentify
    from .errors import InputError
    from .io import read_bytes

    data = Path(path).read_bytes()
    study = read_bytes(data)
    if study.source_format != "dicom":
        raise InputError("Only DICOM files carry identifiers to remove; PNG and JPEG uploads have none to strip.")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"deidentified-{study.sha256[:16]}.dcm"
    out.write_bytes(deidentify(data))
    return out


def summary_json(a: Analysis) -> dict[str, Any]:
    return a.prediction.to_json()


# ----------------------------------------------------------------------------------------------
# Feedback and reading sessions
# ----------------------------------------------------------------------------------------------
def _agree(choice: str | None) -> bool | None:
    return None if not choice else choice.lower().startswith("agree")


def feedback_from_prediction(
    prediction: dict[str, Any] | None,
    reader: str,
    *,
    phase: str = "free",
    session_id: str = "",
    case_id: str = "",
    type_agree: str | None = None,
    stage_agree: str | None = None,
    pathway_agree: str | None = None,
    corrected_type: str | None = None,
    corrected_stage: str | None = None,
    reader_type: str | None = None,
    reader_stage: str | None = None,
    heatmap_plausibility: int | None = None,
    confidence: int | None = None,
    comment: str | None = None,
    truth_type: str | None = None,
    truth_stage: str | None = None,
    db: Path | None = None,
) -> int:
    """Store one feedback row for a prediction as returned by ``predict`` (its JSON); returns the row id."""
    from . import feedback
    from .errors import InputError
    from .paths import feedback_db

    if not prediction or "image_sha256" not in prediction:
        raise InputError("Run a prediction first: feedback is stored against the prediction shown.")
    model_id = str(prediction.get("model", ""))
    cfg = get_model(model_id)  # the weights hash comes from the registry, not from the client
    stage = prediction.get("stage") or {}
    fb = feedback.Feedback(
        reader=(reader or "").strip(),
        image_sha256=str(prediction["image_sha256"]),
        phase=phase,
        session_id=(session_id or "").strip()[:80],
        case_id=case_id,
        model_id=cfg.id,
        weights_sha256=cfg.weights_sha256 or "",
        pred_type=prediction.get("type", {}).get("label"),
        pred_type_probs=prediction.get("type", {}).get("probabilities"),
        pred_stage=stage.get("label"),
        pred_stage_probs=stage.get("probabilities"),
        reader_type=reader_type or None,
        reader_stage=reader_stage or None,
        type_agree=_agree(type_agree),
        stage_agree=_agree(stage_agree),
        pathway_agree=_agree(pathway_agree),
        corrected_type=corrected_type or None,
        corrected_stage=corrected_stage or None,
        heatmap_plausibility=int(heatmap_plausibility) if heatmap_plausibility else None,
        confidence=int(confidence) if confidence else None,
        comment=(comment or "").strip() or None,
        truth_type=truth_type,
        truth_stage=truth_stage,
    )
    return feedback.submit(db or feedback_db(), fb)


@dataclass
class ReadingSession:
    """One reader's progress through a session's fixed case list (kept in the browser session)."""

    reader: str
    session_id: str
    model_id: str
    cases: list[Any]
    index: int = 0
    revealed: bool = False
    prediction: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.index >= len(self.cases)

    @property
    def case(self) -> Any:
        return self.cases[self.index]


def start_session(reader: str, session_id: str, model_id: str | None, n_cases: int = 20, seed: int = 0,
                  db: Path | None = None) -> ReadingSession:
    """The session's case list (same for every reader with the same model, size and seed), resumed where this
    reader left off."""
    from . import feedback
    from .data import data_root
    from .errors import InputError
    from .paths import feedback_db
    from .sessions import case_list

    cfg = get_model(model_id)
    if not (session_id or "").strip():
        raise InputError("Name the session (for example 'lung-2026-11-24') so that readers can be compared.")
    feedback.Feedback(reader=(reader or "").strip(), image_sha256="0" * 64).validate()
    folder = data_root() / cfg.task
    if not (folder / "manifest.csv").is_file():
        raise InputError(f"No test cases found for {cfg.task} under {data_root()}; set MEDIMG_DATA_DIR.")
    cases = case_list(folder, cfg.task, n_cases=n_cases, seed=seed)
    done = feedback.read_all(db or feedback_db())
    done = done[(done["session_id"] == session_id.strip()) & (done["reader"] == reader.strip()) & (done["phase"] == "aided")]
    finished = set(done["case_id"])
    index = next((i for i, c in enumerate(cases) if c.case_id not in finished), len(cases))
    return ReadingSession(reader=reader.strip(), session_id=session_id.strip(), model_id=cfg.id, cases=cases, index=index)


def session_case_image(s: ReadingSession) -> np.ndarray:
    """The current case as the reader first sees it: the image alone, no model output."""
    return gray_to_rgb(read_file(s.case.path).pixels)


def session_record_unaided(s: ReadingSession, reader_type: str | None, reader_stage: str | None,
                           confidence: int | None, db: Path | None = None) -> Analysis:
    """Store the reader's own call, then run the model: returns what to reveal."""
    from .errors import InputError

    if s.done:
        raise InputError("This session is complete; start a new one.")
    if not reader_type:
        raise InputError("Record your own call (tumor type) before seeing the model's output.")
    a = analyse(s.case.path, s.model_id)
    pred = a.prediction.to_json()
    feedback_from_prediction(
        pred, s.reader, phase="unaided", session_id=s.session_id, case_id=s.case.case_id,
        reader_type=reader_type, reader_stage=reader_stage, confidence=confidence,
        truth_type=s.case.label, truth_stage=s.case.stage, db=db,
    )
    s.revealed, s.prediction = True, pred
    return a


def session_record_aided(s: ReadingSession, db: Path | None = None, **form: Any) -> None:
    """Store the feedback given after seeing the model, and move to the next case."""
    from .errors import InputError

    if s.done or not s.revealed or s.prediction is None:
        raise InputError("Record your own read of this case first; then the model's output is shown for feedback.")
    feedback_from_prediction(
        s.prediction, s.reader, phase="aided", session_id=s.session_id, case_id=s.case.case_id,
        truth_type=s.case.label, truth_stage=s.case.stage, db=db, **form,
    )
    s.index += 1
    s.revealed, s.prediction = False, None


def model_labels(model_id: str | None) -> dict[str, list[str]]:
    return dict(get_model(model_id).heads)


# ----------------------------------------------------------------------------------------------
# Performance tab
# ----------------------------------------------------------------------------------------------
EXPLAIN_HELP = {
    "explain_pointing_hit": "pointing game: heatmap maximum inside the lesion (mask or box)",
    "explain_iou": "IoU of the heatmap (>= half its max) with the lesion",
    "explain_deletion_auc": "deletion AUC, heatmap order (lower = more faithful)",
    "explain_deletion_auc_random": "deletion AUC, random order (baseline)",
    "explain_insertion_auc": "insertion AUC, heatmap order (higher = more faithful)",
    "explain_insertion_auc_random": "insertion AUC, random order (baseline)",
    "explain_randomised_rank_corr": "rank correlation with a last-stage-randomised model (sanity: should be low)",
}


def _with_gallery(cfg: ModelConfig, res: Any) -> Any:
    """Bundled metrics carry no gallery (its images are data set images, never committed): draw the misclassified
    cases listed in the bundled ``cases.csv`` once, where the data folder is present, into the runs folder."""
    import dataclasses

    from .data import data_root
    from .paths import runs_dir
    from .performance import write_gallery

    folder = data_root() / cfg.task
    if not (folder / "manifest.csv").is_file():
        return res
    out = runs_dir() / "cache" / cfg.id / f"{(cfg.weights_sha256 or 'unpinned')[:12]}-bundled-gallery"
    if not (out / "index.csv").is_file():
        write_gallery(cfg, folder, res.cases, out)
    index = out / "index.csv"
    if not index.is_file():
        return res
    import pandas as pd

    rows = pd.read_csv(index)
    gallery = [(str(out / r["file"]), f"true {r['label']} - predicted {r['pred']} ({r['confidence']:.2f})") for _, r in rows.iterrows()]
    return dataclasses.replace(res, gallery=gallery)


def performance_view(model_id: str | None) -> dict[str, Any]:
    """Tables, figures and gallery of the cached test evaluation of a model (nothing is computed here)."""
    import pandas as pd

    from .paths import runs_dir
    from .performance import confusion_figure, find_results, overall_table, per_class_table, reliability_figure, roc_figure

    cfg = get_model(model_id)
    res = find_results(cfg, runs_dir())
    if res is not None and not res.gallery and res.cases is not None:
        res = _with_gallery(cfg, res)
    empty = pd.DataFrame()
    if res is None:
        cmd = f"python -m medimg_demo evaluate --model {cfg.id} --split test --explain"
        return {"header": f"No evaluation cached for `{cfg.id}` yet. Run `{cmd}`.", "overall": empty, "per_class": empty,
                "stage": empty, "confusion": None, "roc": None, "reliability": None, "explain": "", "gallery": []}
    m = res.metrics
    explain_rows = m[m["metric"].str.startswith("explain_")]
    overall = overall_table(m[~m["metric"].str.startswith("explain_")])
    explain_md = ""
    if len(explain_rows):
        lines = ["#### Explanation quality (Grad-CAM, test split)", "| measure | value [95% CI] |", "|---|---|"]
        for _, r in explain_rows.iterrows():
            lines.append(f"| {EXPLAIN_HELP.get(r['metric'], r['metric'])} | {r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] |")
        explain_md = "\n".join(lines)
    else:
        explain_md = f"Explanation quality not measured yet: `python -m medimg_demo evaluate --model {cfg.id} --split test --explain`."
    labels = cfg.type_labels
    n = len(res.cases) if res.cases is not None else 0
    header = (f"**{cfg.id}** - weights sha256 `{(cfg.weights_sha256 or '')[:12]}` - {n} test images - "
              f"from `{res.folder.name}`. Research use only: these figures describe this data set, not clinical performance.")
    if cfg.task == "lung_ct":
        header += " The stage head learns stage through the type (one stage per type in the source data)."
    return {
        "header": header,
        "overall": overall,
        "per_class": per_class_table(m),
        "stage": per_class_table(m, "stage_") if cfg.stage_labels else empty,
        "confusion": confusion_figure(res.cases, labels) if res.cases is not None else None,
        "roc": roc_figure(res.cases, labels) if res.cases is not None else None,
        "reliability": reliability_figure(res.cases, labels) if res.cases is not None else None,
        "explain": explain_md,
        "gallery": res.gallery,
    }


def model_versions() -> list[str]:
    """One line per model for the start-up log: id, task, weights sha256, default flag."""
    default_id = default_model_id() if list_models() else None
    return [f"{m.id} task={m.task} weights_sha256={m.weights_sha256} default={m.id == default_id}" for m in list_models()]


# ----------------------------------------------------------------------------------------------
# Output images
# ----------------------------------------------------------------------------------------------
_PNG_WRITES = 0


def png_file(rgb: np.ndarray, max_age_s: float = 3600.0) -> str:
    """Write an RGB image as a content-addressed PNG under the work folder and return its path.

    The app hands Gradio file paths rather than arrays: Gradio re-writes a content-hashed cache file for every
    array it is given, so two clinicians receiving the same image at once could download a half-written copy;
    for a path it copies once, atomically. Files older than ``max_age_s`` are pruned now and then.
    """
    import hashlib
    import io as _io
    import os

    from PIL import Image

    from .paths import work_dir

    global _PNG_WRITES
    buf = _io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
    data = buf.getvalue()
    folder = work_dir() / "images"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
    try:
        os.utime(path)  # already there: mark it as just handed out, so pruning below does not delete it
    except FileNotFoundError:
        tmp = folder / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}"
        tmp.write_bytes(data)
        os.replace(tmp, path)
    _PNG_WRITES += 1
    if _PNG_WRITES % 50 == 0:
        cutoff = time.time() - max_age_s
        for old in folder.glob("*.png"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:
                log.debug("An old output image was already removed")
    return str(path)
