"""Classification metrics with bootstrap intervals (numpy only)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def auc_binary(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC via the Mann-Whitney U statistic (ties get half credit); NaN if one class is absent."""
    pos = y.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auc(y: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest AUC over the classes present in ``y``."""
    vals = [auc_binary(y == c, probs[:, c]) for c in range(probs.shape[1])]
    vals = [v for v in vals if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def ece(y: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence, equal-width bins."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def per_class(y: np.ndarray, pred: np.ndarray, c: int) -> dict[str, float]:
    tp = float(((pred == c) & (y == c)).sum())
    fp = float(((pred == c) & (y != c)).sum())
    fn = float(((pred != c) & (y == c)).sum())
    tn = float(((pred != c) & (y != c)).sum())
    nan = float("nan")
    sens = tp / (tp + fn) if tp + fn else nan
    prec = tp / (tp + fp) if tp + fp else nan
    return {
        "sensitivity": sens,
        "specificity": tn / (tn + fp) if tn + fp else nan,
        "precision": prec,
        "f1": 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else nan,
    }


#: Labels meaning "no tumor"; where a head has one, "any tumor vs none" sensitivity is reported too.
NEGATIVE_LABELS = ("normal", "no_tumor", "none")


def all_metrics(y: np.ndarray, probs: np.ndarray, labels: list[str], prefix: str = "") -> list[tuple[str, str, float]]:
    """(metric, class, value) rows: accuracy, macro AUC, ECE, any-tumor sensitivity (where a head has a
    no-tumor class), then per class sensitivity/specificity/precision/F1/AUC."""
    pred = probs.argmax(1)
    rows = [
        (f"{prefix}accuracy", "", float((pred == y).mean())),
        (f"{prefix}macro_auc", "", macro_auc(y, probs)),
        (f"{prefix}ece", "", ece(y, probs)),
    ]
    negatives = [i for i, name in enumerate(labels) if name in NEGATIVE_LABELS]
    if negatives:
        tumor = ~np.isin(y, negatives)
        hit = ~np.isin(pred, negatives)
        rows.append((f"{prefix}any_tumor_sensitivity", "", float(hit[tumor].mean()) if tumor.any() else float("nan")))
    for c, name in enumerate(labels):
        for k, v in per_class(y, pred, c).items():
            rows.append((f"{prefix}{k}", name, v))
        rows.append((f"{prefix}auc", name, auc_binary(y == c, probs[:, c])))
    return rows


def with_bootstrap(
    y: np.ndarray, probs: np.ndarray, labels: list[str], prefix: str = "", n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Metrics with 95% percentile bootstrap intervals (resampling cases with replacement)."""
    point = all_metrics(y, probs, labels, prefix)
    rng = np.random.default_rng(seed)
    boots = np.full((n_boot, len(point)), np.nan)
    n = len(y)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        boots[b] = [v for _, _, v in all_metrics(y[idx], probs[idx], labels, prefix)]
    with np.errstate(all="ignore"):
        lo = np.nanpercentile(boots, 2.5, axis=0)
        hi = np.nanpercentile(boots, 97.5, axis=0)
    return pd.DataFrame(
        [{"metric": m, "class": c, "value": v, "ci_low": l, "ci_high": h} for (m, c, v), l, h in zip(point, lo, hi)]
    )
