"""Measured performance: cached evaluations, a tidy metrics log (pandas), and the plots the app shows.

An evaluation is cached under ``runs/cache/<model id>/<weights sha>-<manifest sha>-<split>[-explain]/``; a
re-run with the same weights and data reads the cache. Every run (computed or cached) appends its rows
to ``runs/metrics_log.csv``: run time, model id, weights sha256, data set, split, metric, class, value,
interval, source. The app only reads caches; it never evaluates a test set on a page load.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .registry import ModelConfig

log = logging.getLogger(__name__)

LOG_COLUMNS = ["run_time_utc", "model_id", "weights_sha256", "dataset", "split", "metric", "class", "value",
               "ci_low", "ci_high", "source"]
MAX_GALLERY = 24


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_dir(cfg: ModelConfig, data_dir: Path, split: str, explain: bool, runs: Path) -> Path:
    key = f"{(cfg.weights_sha256 or 'unpinned')[:12]}-{_file_sha(data_dir / 'manifest.csv')[:12]}-{split}"
    return runs / "cache" / cfg.id / (key + ("-explain" if explain else ""))


def append_log(runs: Path, cfg: ModelConfig, dataset: str, split: str, metrics: pd.DataFrame, source: str) -> Path:
    """Append one evaluation's metrics to the tidy log (created with a header on first use)."""
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / "metrics_log.csv"
    rows = metrics.copy()
    rows.insert(0, "run_time_utc", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    rows.insert(1, "model_id", cfg.id)
    rows.insert(2, "weights_sha256", cfg.weights_sha256 or "")
    rows.insert(3, "dataset", dataset)
    rows.insert(4, "split", split)
    rows["source"] = source
    rows[LOG_COLUMNS].to_csv(path, mode="a", header=not path.exists(), index=False)
    return path


def evaluate_cached(cfg: ModelConfig, data_dir: Path, split: str, runs: Path, explain: bool = False,
                    n_boot: int = 1000, seed: int = 0, force: bool = False) -> tuple[Path, str]:
    """The cache folder of this evaluation, computing it only if needed. Returns (folder, 'cache' | 'computed')."""
    from .evaluate import evaluate

    folder = cache_dir(cfg, data_dir, split, explain, runs)
    metrics_path = folder / "metrics.csv"
    if metrics_path.is_file() and not force:
        append_log(runs, cfg, data_dir.name, split, pd.read_csv(metrics_path, keep_default_na=False, na_values=[""]), "cache")
        return folder, "cache"
    ev = evaluate(cfg, data_dir, split, n_boot=n_boot, seed=seed, explain=explain)
    folder.mkdir(parents=True, exist_ok=True)
    ev.metrics.to_csv(metrics_path, index=False)
    ev.cases.to_csv(folder / "cases.csv", index=False)
    if ev.explain_cases is not None:
        ev.explain_cases.to_csv(folder / "explain_cases.csv", index=False)
    write_gallery(cfg, data_dir, ev.cases, folder / "gallery")
    append_log(runs, cfg, data_dir.name, split, ev.metrics, "computed")
    return folder, "computed"


def write_gallery(cfg: ModelConfig, data_dir: Path, cases: pd.DataFrame, out: Path, limit: int = MAX_GALLERY) -> int:
    """Image | Grad-CAM pairs of the misclassified cases (most confident mistakes first). Stays in the runs folder:
    these are data set images and are never committed."""
    from PIL import Image

    from .io import read_file
    from .overlay import gray_to_rgb, overlay
    from .predict import Predictor

    wrong = cases[cases["pred"] != cases["label"]].copy()
    if wrong.empty:
        return 0
    wrong["conf"] = [row[f"p_{row['pred']}"] for _, row in wrong.iterrows()]
    wrong = wrong.sort_values("conf", ascending=False).head(limit)
    out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(cfg)
    rows = []
    for k, (_, row) in enumerate(wrong.iterrows()):
        study = read_file(data_dir / row["image"])
        pred = predictor.run(study, explain=True)
        pair = np.concatenate([gray_to_rgb(pred.image), overlay(pred.image, pred.heatmap, 0.45)], axis=1)  # type: ignore[arg-type]
        name = f"{k:02d}.png"
        Image.fromarray(pair).save(out / name)
        rows.append({"file": name, "image": row["image"], "label": row["label"], "pred": row["pred"], "confidence": row["conf"]})
    pd.DataFrame(rows).to_csv(out / "index.csv", index=False)
    return len(rows)


@dataclass(frozen=True)
class Results:
    folder: Path
    metrics: pd.DataFrame
    cases: pd.DataFrame | None
    explain_cases: pd.DataFrame | None
    gallery: list[tuple[str, str]]  # (png path, caption)


def find_results(cfg: ModelConfig, runs: Path) -> Results | None:
    """The newest cached evaluation of this model's current weights (preferring one with explanations), else the
    metrics bundled in ``models/<id>/metrics``; None if neither exists."""
    base = runs / "cache" / cfg.id
    prefix = (cfg.weights_sha256 or "unpinned")[:12]
    candidates = sorted(base.glob(f"{prefix}-*-test*"), key=lambda p: (p.name.endswith("-explain"), p.stat().st_mtime)) if base.is_dir() else []
    bundled = cfg.folder / "metrics" if cfg.folder else None
    folder = candidates[-1] if candidates else (bundled if bundled and (bundled / "metrics.csv").is_file() else None)
    if folder is None:
        return None

    def read(name: str) -> pd.DataFrame | None:
        p = folder / name
        return pd.read_csv(p, keep_default_na=False, na_values=[""]) if p.is_file() else None

    gallery: list[tuple[str, str]] = []
    index = read("gallery/index.csv")
    if index is not None:
        for _, r in index.iterrows():
            gallery.append((str(folder / "gallery" / r["file"]), f"true {r['label']} - predicted {r['pred']} ({r['confidence']:.2f})"))
    metrics = read("metrics.csv")
    assert metrics is not None
    return Results(folder=folder, metrics=metrics, cases=read("cases.csv"), explain_cases=read("explain_cases.csv"), gallery=gallery)


# ----------------------------------------------------------------------------------------------
# Tables and plots
# ----------------------------------------------------------------------------------------------
def per_class_table(metrics: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
    """Rows = classes, columns = sensitivity/specificity/precision/F1/AUC as 'value [lo, hi]'."""
    m = metrics[(metrics["class"].fillna("") != "") & metrics["metric"].str.startswith(prefix)]
    if prefix == "":
        m = m[~m["metric"].str.startswith("stage_")]
    m = m.assign(metric=m["metric"].str.removeprefix(prefix),
                 cell=[f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(m["value"], m["ci_low"], m["ci_high"])])
    return m.pivot(index="class", columns="metric", values="cell").reset_index()


def overall_table(metrics: pd.DataFrame) -> pd.DataFrame:
    m = metrics[metrics["class"].fillna("") == ""]
    return pd.DataFrame({
        "metric": m["metric"],
        "value": m["value"].round(3),
        "95% CI": [f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "" for lo, hi in zip(m["ci_low"], m["ci_high"])],
    })


def confusion_figure(cases: pd.DataFrame, labels: list[str]):  # noqa: ANN201 - matplotlib Figure
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = {l: i for i, l in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(cases["label"], cases["pred"]):
        cm[idx[t], idx[p]] += 1
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, cm[i, j], ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test split)")
    fig.tight_layout()
    return fig


def roc_figure(cases: pd.DataFrame, labels: list[str]):  # noqa: ANN201
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .metrics import auc_binary

    fig, ax = plt.subplots(figsize=(5, 4.2))
    for name in labels:
        y = (cases["label"] == name).to_numpy()
        s = cases[f"p_{name}"].to_numpy()
        if y.all() or not y.any():
            continue
        thr = np.unique(s)[::-1]
        tpr = [((s >= t) & y).sum() / y.sum() for t in thr]
        fpr = [((s >= t) & ~y).sum() / (~y).sum() for t in thr]
        ax.plot([0, *fpr, 1], [0, *tpr, 1], label=f"{name} (AUC {auc_binary(y, s):.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC per class (one vs rest)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def reliability_figure(cases: pd.DataFrame, labels: list[str], n_bins: int = 15):  # noqa: ANN201
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .metrics import ece

    y = cases["label"].map({l: i for i, l in enumerate(labels)}).to_numpy()
    fig, ax = plt.subplots(figsize=(5, 4.2))
    edges = np.linspace(0, 1, n_bins + 1)
    for prefix, name in (("raw_p_", "before (T = 1)"), ("p_", "after temperature scaling")):
        if not all(f"{prefix}{l}" in cases for l in labels):
            continue
        probs = cases[[f"{prefix}{l}" for l in labels]].to_numpy()
        conf, correct = probs.max(1), probs.argmax(1) == y
        xs, ys = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            m = (conf > lo) & (conf <= hi)
            if m.any():
                xs.append(conf[m].mean())
                ys.append(correct[m].mean())
        ax.plot(xs, ys, "o-", label=f"{name}: ECE {ece(y, probs, n_bins):.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram ({n_bins} bins)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
