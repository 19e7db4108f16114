"""Classification metrics from scikit-learn, with 95% intervals: Wilson score intervals for the proportions
(accuracy, any-tumor sensitivity, and per class sensitivity, specificity and precision: k of n cases; and the
explanation measures that are shares of cases: pointing hits, calls lost, kept or changed, box IoU >= 0.5),
Newcombe's score interval for each class's one-vs-rest AUC, percentile bootstrap intervals over cases for the rest
(macro AUC, F1, ECE, median Dice and box IoU, mean Grad-CAM IoU, deletion and insertion AUC). A percentile bootstrap
of a proportion or an AUC at 0 or 1 is [1, 1] or [0, 0] however few the cases (7 of 7 normal lung images read
"1.00 [1.00, 1.00]", and so did their AUC); Wilson's and Newcombe's are not (7 of 7: [0.65, 1.00]; the AUC of 7
normal images ranked above 118 others: [0.85, 1.00]).

The bootstrap is a plain loop over one seeded generator rather than ``scipy.stats.bootstrap``: a whole table of
metrics (several of which are undefined on some resamples, e.g. the AUC of a class a resample lacks) is resampled
with the same indices, and NaN resamples are left out per metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from sklearn.metrics import multilabel_confusion_matrix, precision_recall_fscore_support, roc_auc_score
from tqdm import tqdm

from ..feedback.reader_study import wilson
from ..models.calibrate import ece  # noqa: F401 - the calibration error lives with calibration; public here too

#: Labels meaning "no tumor"; where a head has one, "any tumor vs none" sensitivity is reported too.
NEGATIVE_LABELS = ("normal", "no_tumor", "none")


def auc_binary(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of one class against the rest; NaN if ``y`` holds only one class."""
    y = np.asarray(y).astype(bool)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, score))


def macro_auc(y: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest AUC over the classes present in ``y`` (and absent from some cases)."""
    return _mean_defined([auc_binary(y == c, probs[:, c]) for c in range(probs.shape[1])])


def _mean_defined(values: list[float]) -> float:
    vals = [v for v in values if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def per_class(y: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Sensitivity (recall), specificity, precision and F1 of every class; NaN where undefined."""
    labels = list(range(n_classes))
    prec, rec, f1, _ = precision_recall_fscore_support(y, pred, labels=labels, zero_division=np.nan)
    mcm = multilabel_confusion_matrix(y, pred, labels=labels)
    tn, fp = mcm[:, 0, 0].astype(float), mcm[:, 0, 1].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        spec = np.where(tn + fp > 0, tn / np.where(tn + fp > 0, tn + fp, 1), np.nan)
    return {"sensitivity": np.asarray(rec, float), "specificity": spec, "precision": np.asarray(prec, float),
            "f1": np.asarray(f1, float)}


def all_metrics(y: np.ndarray, probs: np.ndarray, labels: list[str], prefix: str = "") -> list[tuple[str, str, float]]:
    """(metric, class, value) rows: accuracy, macro AUC, ECE, any-tumor sensitivity (where a head has a
    no-tumor class), then per class sensitivity/specificity/precision/F1/AUC."""
    pred = probs.argmax(1)
    aucs = [auc_binary(y == c, probs[:, c]) for c in range(len(labels))]
    rows = [
        (f"{prefix}accuracy", "", float((pred == y).mean())),
        (f"{prefix}macro_auc", "", _mean_defined(aucs)),
        (f"{prefix}ece", "", ece(y, probs)),
    ]
    negatives = [i for i, name in enumerate(labels) if name in NEGATIVE_LABELS]
    if negatives:
        tumor = ~np.isin(y, negatives)
        hit = ~np.isin(pred, negatives)
        rows.append((f"{prefix}any_tumor_sensitivity", "", float(hit[tumor].mean()) if tumor.any() else float("nan")))
    pc = per_class(y, pred, len(labels))
    for c, name in enumerate(labels):
        for k in ("sensitivity", "specificity", "precision", "f1"):
            rows.append((f"{prefix}{k}", name, float(pc[k][c])))
        rows.append((f"{prefix}auc", name, aucs[c]))
    return rows


#: Metrics that are a proportion k / n of cases: Wilson intervals from the counts.
PROPORTIONS = ("accuracy", "any_tumor_sensitivity", "sensitivity", "specificity", "precision")


def proportion_counts(y: np.ndarray, pred: np.ndarray, labels: list[str]) -> dict[tuple[str, str], tuple[int, int]]:
    """(k, n) of each proportion metric, keyed by (metric without prefix, class) as :func:`all_metrics` names them."""
    out = {("accuracy", ""): (int((pred == y).sum()), len(y))}
    negatives = [i for i, name in enumerate(labels) if name in NEGATIVE_LABELS]
    if negatives:
        tumor, hit = ~np.isin(y, negatives), ~np.isin(pred, negatives)
        out[("any_tumor_sensitivity", "")] = (int((hit & tumor).sum()), int(tumor.sum()))
    # the counts per_class's rates come from (scikit-learn's one-vs-rest confusion matrices)
    mcm = multilabel_confusion_matrix(y, pred, labels=list(range(len(labels))))
    for name, ((tn, fp), (fn, tp)) in zip(labels, mcm.tolist()):
        out[("sensitivity", name)] = (tp, tp + fn)
        out[("specificity", name)] = (tn, tn + fp)
        out[("precision", name)] = (tp, tp + fp)
    return out


def with_bootstrap(
    y: np.ndarray, probs: np.ndarray, labels: list[str], prefix: str = "", n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Metrics with 95% intervals: Wilson for the proportions, percentile bootstrap (resampling cases with
    replacement) for the rest."""
    point = all_metrics(y, probs, labels, prefix)
    rng = np.random.default_rng(seed)
    boots = np.full((n_boot, len(point)), np.nan)
    n = len(y)
    for b in tqdm(range(n_boot), desc=f"bootstrap {prefix or 'type_'}metrics", unit="resample", leave=False, mininterval=2.0):
        idx = rng.integers(0, n, n)
        boots[b] = [v for _, _, v in all_metrics(y[idx], probs[idx], labels, prefix)]
    with np.errstate(all="ignore"):
        lo = np.nanpercentile(boots, 2.5, axis=0)
        hi = np.nanpercentile(boots, 97.5, axis=0)
    counts = proportion_counts(y, probs.argmax(1), labels)
    for i, (metric, cls, value) in enumerate(point):
        key = (metric.removeprefix(prefix), cls)
        if key[0] in PROPORTIONS and key in counts:
            lo[i], hi[i] = wilson(*counts[key])  # the reader study's interval (feedback.reader_study)
        elif key[0] == "auc" and not np.isnan(value):
            positives = int((y == labels.index(cls)).sum())
            lo[i], hi[i] = auc_interval(value, positives, n - positives)
    return pd.DataFrame(
        [{"metric": m, "class": c, "value": v, "ci_low": l, "ci_high": h} for (m, c, v), l, h in zip(point, lo, hi)]
    )


def auc_interval(auc: float, positives: int, negatives: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Newcombe's score interval for a one-vs-rest AUC (Statistics in Medicine 2006, part 2, method 5): the AUCs ``x`` with
    (x - AUC)^2 = z^2 V(x), V Hanley and McNeil's variance with both group sizes set to their mean. Unlike the
    percentile bootstrap it is not [1, 1] for a perfect ranking of few cases (7 normal lung images against 118: [0.85,
    1.00]). Checked against SingleCaseES's NAP interval (0.9167 of 6 x 7: [0.5973, 0.9860])."""
    if positives < 1 or negatives < 1 or not 0 <= auc <= 1:
        return math.nan, math.nan
    h, mn = (positives + negatives) / 2 - 1, positives * negatives

    def spread(x: float) -> float:
        return z * z * x * (2 + h + (1 + 2 * h) * x * (1 - x))

    def lower(a: float) -> float:
        if a <= 0:
            return 0.0
        if a >= 1:  # (x - 1)^2 (2 - x)(1 + x) mn = (1 - x) spread(x): the root other than x = 1
            return float(brentq(lambda x: mn * (1 - x) * (2 - x) * (1 + x) - spread(x), 0.0, 1.0))
        return float(brentq(lambda x: mn * (x - a) ** 2 * (2 - x) * (1 + x) - (1 - x) * spread(x), 0.0, a))

    return lower(auc), 1 - lower(1 - auc)  # the interval of 1 - AUC mirrors it


#: One summary row group: (metric name, per-case column, the cases it is taken over, statistic).
PlanEntry = tuple[str, str, pd.DataFrame, Callable[..., Any]]


def case_summary(plan: Sequence[PlanEntry], seed: int = 0, n_boot: int = 1000) -> pd.DataFrame:
    """Rows (metric, class, value, 95% interval) of per-case measures: each plan entry's statistic over its cases,
    overall (class "") and per ``label``; missing columns and empty groups are skipped. Intervals as
    :func:`case_interval` gives them (Wilson for a share of yes/no cases)."""
    rng = np.random.default_rng(seed)
    out = []
    for metric, col, frame, stat in plan:
        if col not in frame:
            continue
        for cls, g in [("", frame)] + [(str(c), g) for c, g in frame.groupby("label")]:
            v = g[col].dropna().astype(float).to_numpy()
            if not len(v):
                continue
            low, high = case_interval(v, stat, rng, n_boot)
            out.append({"metric": metric, "class": cls, "value": float(stat(v)), "ci_low": low, "ci_high": high})
    return pd.DataFrame(out, columns=["metric", "class", "value", "ci_low", "ci_high"])


def share(v: np.ndarray) -> float:
    """The share of yes (1) among yes/no (1/0) cases: a plan's statistic for a column that records one yes/no per
    case (a pointing hit, a call lost, kept or changed), which :func:`case_interval` gives a Wilson interval."""
    return float(np.mean(v))


def case_interval(v: np.ndarray, stat: Callable[..., Any], rng: np.random.Generator, n_boot: int = 1000) -> tuple[float, float]:
    """95% interval of ``stat`` over per-case values ``v``: Wilson's for a :func:`share` (the bootstrap read 12 of
    12 pointing hits as "1.00 [1.00, 1.00]", Wilson's says [0.76, 1.00]), else the percentile bootstrap. Which rows
    are shares is said by the plan, not guessed from the values (a mean IoU can be all zeros). The bootstrap is drawn
    in either case, so that every other row's resamples, and so its interval, do not depend on which rows are shares."""
    draws = [stat(rng.choice(v, size=len(v))) for _ in range(n_boot)]
    if stat is share:
        if not np.isin(v, (0.0, 1.0)).all():
            raise ValueError("a share needs yes/no (1/0) values per case")
        return wilson(int(v.sum()), len(v))
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))
