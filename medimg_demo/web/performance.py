"""The Performance view, free of Gradio: tables, figures and gallery of a model's cached test evaluation.

Nothing is evaluated here; the error gallery of bundled metrics is drawn once, with the process's shared model.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from ..eval.cache import Results, find_results, gallery_captions, layer_tag, model_tag
from ..eval.consistency import from_metrics
from ..eval.gallery import write_gallery
from ..eval.plots import (confusion_figure, explanation_verdicts, metric_name, overall_table, per_class_table,
                          reliability_figure, roc_figure)
from ..eval.targets import missed_targets, unmeasured_targets, verdict
from ..models.config import ModelConfig
from ..models.registry import get_model
from ..paths import data_root, runs_dir
from ..tasks import Target, get_task
from .analysis import stage_name

EXPLAIN_HELP = {
    "explain_pointing_hit": "pointing game: heatmap maximum inside the lesion (mask or box)",
    "explain_iou": "IoU of the heatmap (>= half its max) with the lesion",
    "explain_deletion_auc": "deletion AUC, heatmap order (lower = more faithful)",
    "explain_deletion_auc_random": "deletion AUC, random map order (baseline)",
    "explain_insertion_auc": "insertion AUC, heatmap order (higher = more faithful)",
    "explain_insertion_auc_random": "insertion AUC, random map order (baseline)",
    "explain_randomised_rank_corr": "rank correlation with a last-stage-randomised model (sanity: should be low)",
    "explain_pointing_15px": "pointing game, native pixels: heatmap peak within 15 px of the lesion (correct tumor calls)",
    "explain_pointing_strict": "pointing game, strict: heatmap peak inside the lesion (correct tumor calls)",
    "explain_lesion_dice_median": "lesion outline vs. annotated mask: median Dice",
    "explain_lesion_box_iou_median": "lesion box vs. annotated box: median IoU",
    "explain_lesion_box_iou_ge_0.5": "share of tumor cases whose lesion box IoU is at least 0.5",
    "explain_lesion_diameter_error_mm_median": "longest diameter vs. the annotated box's longer side: median error (mm)",
    "explain_erase_lesion_call_lost": "lesion erased (in-filled from its border): share of tumor calls lost",
    "explain_erase_smooth_call_lost": "lesion erased by a second, smooth in-fill (held out in training): share of calls lost",
    "explain_erase_elsewhere_call_kept": "same-shaped region erased elsewhere: share of calls kept",
    "explain_erase_posterior_call_lost": "ultrasound: lesion and the column beneath it (posterior acoustic features) "
                                         "erased: share of calls lost",
    "explain_erase_posterior_elsewhere_call_kept": "ultrasound: that same shape erased elsewhere: share of calls kept",
    "explain_frame_call_changed": "framing probe (background outside the body turned grey): share of correct calls "
                                  "that change",
    "explain_frame_tumor_to_normal": "framing probe: share of correct tumor calls turned to no tumor",
}


#: Per-class column headers on screen: short enough that five columns of "0.95 [0.90, 0.99]" fit beside the class.
PER_CLASS_HEADERS = {"sensitivity": "Sensitivity", "specificity": "Specificity", "precision": "PPV (precision)",
                     "f1": "F1 score", "auc": "AUC (one vs rest)"}


def readable_per_class(table: pd.DataFrame) -> pd.DataFrame:
    """A per-class table with readable column headers (each cell: value [95% CI])."""
    return table.rename(columns={k: v for k, v in PER_CLASS_HEADERS.items() if k in table.columns})


def explain_table(rows: pd.DataFrame, label_name: Callable[[str], str], targets: Sequence[Target] = ()) -> list[str]:
    """Markdown lines of the explanation measures: one row per measure, its value [95% CI] over all cases and per
    class beside it ("-" where a class has none: normal images have no lesion). One row per measure and class ran
    to some 50 rows for brain MRI, and comparing classes meant scrolling. With the task's ``targets``, a last column
    says which are met (the overall table's column left the lesion targets out: breast's erasure target, 0.165
    against 0.70, was never called missed; numbers review, thirty-eighth session)."""
    cls = rows["class"].where(rows["class"].notna(), "").astype(str)
    classes = [c for c in dict.fromkeys(cls) if c]
    cells: dict[str, dict[str, str]] = {}
    values: dict[tuple[str, str], float] = {}
    for metric, c, (_, r) in zip(rows["metric"], cls, rows.iterrows()):
        cells.setdefault(metric, {})[c] = f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        values[(metric, c)] = float(r["value"])
    aimed = [t for t in targets if (t.metric, t.cls) in values]
    lines = ["| measure | all cases | " + " | ".join(label_name(c) for c in classes) + " |"
             + (" target (test split) |" if aimed else ""),
             "|---|---|" + "---|" * len(classes) + ("---|" if aimed else "")]
    for metric, by_class in cells.items():
        cols = [by_class.get(c, "-") for c in ["", *classes]]
        if aimed:
            verdicts = [(f"{label_name(t.cls)} " if t.cls else "") + verdict(t, values[(t.metric, t.cls)])
                        for t in aimed if t.metric == metric]
            cols.append("; ".join(verdicts))
        lines.append(f"| {EXPLAIN_HELP.get(metric, metric)} | " + " | ".join(cols) + " |")
    if any(c not in by_class for by_class in cells.values() for c in classes):  # a "-" cell: say what it means
        lines += ["", "<small>**-** : not measured for that class (a measure of all cases only, or a class with no "
                  "lesion).</small>"]
    return lines


_GALLERY_LOCK = threading.Lock()
GALLERY_LABEL = ("Error gallery: misclassified test cases, most confident first (image | Grad-CAM; in brackets the "
                 "calibrated probability of the class predicted)")


def gallery_label(shown: int, wrong: int) -> str:
    """The gallery's title with how many it holds: a gallery scrolled inside its frame hid that more follow."""
    if not shown:
        return GALLERY_LABEL
    return f"{GALLERY_LABEL} - {shown} of {wrong} shown" + (", scroll for all" if shown > 6 else "")


def _with_gallery(cfg: ModelConfig, res: Results) -> Results:
    """Bundled metrics carry no gallery (its images are data set images, never committed): draw the misclassified
    cases listed in the bundled ``cases.csv`` once, where the data folder is present, into the runs folder."""
    folder = data_root() / cfg.task
    if not (folder / "manifest.csv").is_file():
        return res
    out = runs_dir() / "cache" / cfg.id / f"{model_tag(cfg)}-{layer_tag(cfg)}-bundled-gallery"  # heatmaps at this layer
    with _GALLERY_LOCK:  # two first requests would draw into one folder at once, one reading the other's half
        if not (out / "index.csv").is_file():
            write_gallery(cfg, folder, res.cases, out)
    index = out / "index.csv"
    if not index.is_file():
        return res
    gallery = gallery_captions(out, pd.read_csv(index), get_task(cfg.task).label_name)
    return dataclasses.replace(res, gallery=gallery)


def performance_view(model_id: str | None) -> dict[str, Any]:
    """Tables, figures and gallery of the cached test evaluation of a model (nothing is computed here)."""
    cfg = get_model(model_id)
    res = find_results(cfg, runs_dir())
    if res is not None and not res.gallery and res.cases is not None:
        res = _with_gallery(cfg, res)
    empty = pd.DataFrame()
    if res is None:
        cmd = f"python -m medimg_demo evaluate --model {cfg.id} --split test --explain"
        return {"header": f"No evaluation cached for `{cfg.id}` yet. Run `{cmd}`.", "overall": empty, "per_class": empty,
                "stage": empty, "confusion": None, "roc": None, "reliability": None, "explain": "", "gallery": [],
                "gallery_label": GALLERY_LABEL}
    m = res.metrics
    explain_rows = m[m["metric"].str.startswith("explain_")]
    spec = get_task(cfg.task)
    overall = overall_table(m[~m["metric"].str.startswith("explain_")], spec.targets, spec.label_names)
    explain_md = ""
    if len(explain_rows):
        lines = ["#### Explanation quality (Grad-CAM, test split)",
                 *(f"- {v}" for v in explanation_verdicts(explain_rows, spec.title)), "",
                 *explain_table(explain_rows, spec.label_name, spec.targets)]
        explain_md = "\n".join(lines)
    else:
        explain_md = f"Explanation quality not measured yet: `python -m medimg_demo evaluate --model {cfg.id} --split test --explain`."
    labels = cfg.type_labels
    n = len(res.cases) if res.cases is not None else 0
    header = (f"**{cfg.id}** - weights sha256 `{(cfg.weights_sha256 or '')[:12]}` - {n} test images - "
              f"from `{res.folder.name}`. Research use only: these figures describe this data set, not clinical performance.")
    note = spec.performance_note
    if note:
        header += " " + note
    named = (m, spec.targets, spec.label_names, lambda k: EXPLAIN_HELP.get(k, metric_name(k)))
    missed, unmeasured = missed_targets(*named), unmeasured_targets(*named)
    if missed:
        header += "\n\n**✗ Targets missed on the test split:** " + "; ".join(missed) + "."
    if unmeasured:
        header += "\n\n**? Targets not measured in this evaluation:** " + "; ".join(unmeasured) + "."
    if spec.targets and not missed and not unmeasured:
        header += "\n\n**✓ Every target of this task is met on the test split.**"
    consistency = from_metrics(m, n) if n else None
    if consistency is not None:
        header += f"\n\n**Calibration:** {consistency.sentence()}"
    return {
        "header": header,
        "overall": overall,
        "per_class": readable_per_class(per_class_table(m, names=spec.label_names)),
        "stage": readable_per_class(per_class_table(m, "stage_", names={k: stage_name(k) for k in cfg.stage_labels})) if cfg.stage_labels else empty,
        "confusion": confusion_figure(res.cases, labels, spec.label_names) if res.cases is not None else None,
        "roc": roc_figure(res.cases, labels, spec.label_names) if res.cases is not None else None,
        "reliability": reliability_figure(res.cases, labels) if res.cases is not None else None,
        "explain": explain_md,
        "gallery": res.gallery,
        "gallery_label": gallery_label(len(res.gallery or []), int((res.cases["pred"] != res.cases["label"]).sum())
                                       if res.cases is not None else len(res.gallery or [])),
    }
