"""Tables and figures of an evaluation: overall and per-class tables, confusion matrix, ROC curves and the
reliability diagram (matplotlib, Agg backend)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, roc_curve

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend

from .metrics import auc_binary, ece

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
    """Rows = metrics without a class: value and its 95% interval."""
    m = metrics[metrics["class"].fillna("") == ""]
    return pd.DataFrame({
        "metric": m["metric"],
        "value": m["value"].round(3),
        "95% CI": [f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "" for lo, hi in zip(m["ci_low"], m["ci_high"])],
    })


def confusion_figure(cases: pd.DataFrame, labels: list[str]) -> Figure:
    cm = confusion_matrix(cases["label"], cases["pred"], labels=labels)
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


def roc_figure(cases: pd.DataFrame, labels: list[str]) -> Figure:
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for name in labels:
        y = (cases["label"] == name).to_numpy()
        s = cases[f"p_{name}"].to_numpy()
        if y.all() or not y.any():
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc_binary(y, s):.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC per class (one vs rest)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def reliability_figure(cases: pd.DataFrame, labels: list[str], n_bins: int = 15) -> Figure:
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
