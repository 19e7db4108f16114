"""Tables and figures of an evaluation: overall and per-class tables with readable names, confusion matrix, ROC
curves, the reliability diagram (equal-count bins with their counts) and one-line verdicts on explanation quality
(matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, roc_curve

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend

from .consistency import bin_bands, order_under_ece, small_p
from .metrics import auc_binary, ece

#: Readable names of the metric keys in ``metrics.csv`` (a ``stage_`` prefix reads "Stage ...").
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "macro_auc": "Macro AUC (one vs rest)",
    "ece": "Expected calibration error (ECE)",
    "ece_uncalibrated": "ECE before calibration (T = 1, no bias)",
    "ece_if_calibrated": "ECE if perfectly calibrated (median, 95% range)",
    "ece_consistency_p": "p: ECE this high if calibrated",
    "any_tumor_sensitivity": "Sensitivity for any tumor (vs no tumor)",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "precision": "Precision (PPV)",
    "f1": "F1 score",
    "auc": "AUC (one vs rest)",
}


#: Column order of the per-class tables: what a clinician reads first.
PER_CLASS_ORDER = ("sensitivity", "specificity", "precision", "f1", "auc")


def metric_name(key: str) -> str:
    """Readable name of a metric key ("macro_auc" -> "Macro AUC (one vs rest)"; "stage_ece" -> "Stage expected ...")."""
    if key.startswith("stage_"):
        name = metric_name(key.removeprefix("stage_"))
        return "Stage " + (name if name[:3].isupper() else name[0].lower() + name[1:])
    return METRIC_NAMES.get(key, key.replace("_", " ").capitalize())


def _name(names: Mapping[str, str] | None, label: str) -> str:
    return names.get(label, label) if names else label


# ----------------------------------------------------------------------------------------------
def per_class_table(metrics: pd.DataFrame, prefix: str = "", names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Rows = classes (readable ``names`` where given), columns = sensitivity/specificity/precision/f1/auc as
    'value [lo, hi]' with three decimals, as the cards print them (two had shown a sensitivity of 0.849 as 0.85, a
    target met that is not). Per-class heatmap checks (``explain_*``) are left out: the explanation table shows
    them with their meaning."""
    m = metrics[(metrics["class"].fillna("") != "") & metrics["metric"].str.startswith(prefix)]
    if prefix == "":
        m = m[~m["metric"].str.startswith(("stage_", "explain_"))]
    m = m.assign(metric=m["metric"].str.removeprefix(prefix),
                 cell=[f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(m["value"], m["ci_low"], m["ci_high"])])
    order = list(dict.fromkeys(m["class"]))  # the model's label order, not alphabetical
    table = m.pivot(index="class", columns="metric", values="cell").reindex(order)
    columns = [c for c in PER_CLASS_ORDER if c in table.columns] + [c for c in table.columns if c not in PER_CLASS_ORDER]
    table = table[columns].reset_index()
    table["class"] = [_name(names, c) for c in table["class"]]
    table.columns.name = None
    return table.rename(columns={"class": "Stage" if prefix == "stage_" else "Class"})


def _value(key: str, value: float) -> str:
    """Three decimals; a resampling p-value below the resolution of its draws reads "< 0.001", never "0"."""
    shown = small_p(value) if key.endswith("consistency_p") else None
    return shown or (f"{value:.3f}" if np.isfinite(value) else "")


def overall_table(metrics: pd.DataFrame, targets: Sequence[Any] = (), names: Mapping[str, str] | None = None
                  ) -> pd.DataFrame:
    """Rows = metrics without a class, by readable name: value (three decimals) and its 95% interval (the ECE's
    consistency rows right under the ECE). With the task's ``targets`` (``tasks.Target``), a class a target names
    is a row too, right under the sensitivity for any tumor (breast: "Sensitivity: Malignant", which the benign
    cases in "any tumor" hid), and a "Target" column says which are met."""
    from .targets import verdict  # (targets reads this module's metric names)

    c = metrics["class"].fillna("")
    m = metrics[c == ""]
    m = m.iloc[order_under_ece(m["metric"].tolist())]
    named = [(t.metric, t.cls) for t in targets if t.cls and not t.metric.startswith("explain_")]
    picked = [metrics[(metrics["metric"] == k) & (c == cls)].head(1) for k, cls in named]
    after = next((i + 1 for i, k in enumerate(m["metric"]) if k == "any_tumor_sensitivity"),
                 next((i + 1 for i, k in enumerate(m["metric"]) if k == "accuracy"), 0))
    rows = pd.concat([m.iloc[:after], *picked, m.iloc[after:]]) if picked else m
    keys = list(zip(rows["metric"], rows["class"].fillna("")))
    out = pd.DataFrame({
        "Metric": [metric_name(k) + (f": {_name(names, cls)}" if cls else "") for k, cls in keys],
        "Value": [_value(k, v) for k, v in zip(rows["metric"], rows["value"])],
        "95% CI": [f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "" for lo, hi in zip(rows["ci_low"], rows["ci_high"])],
    })
    if targets:
        by_key = {(t.metric, t.cls): t for t in targets}
        out["Target (test split)"] = [verdict(by_key[key], v) if key in by_key else ""
                                      for key, v in zip(keys, rows["value"])]
    return out


def explanation_verdicts(metrics: pd.DataFrame, task_title: str) -> list[str]:
    """One line per explanation-quality measure present, read from the numbers: is the heatmap order better than a
    random map as coarse as a Grad-CAM (deletion, insertion), does the heatmap depend on the learned weights (sanity), does it hit the
    lesion. "Better" needs the 95% intervals apart; overlapping intervals are said to be inconclusive."""
    rows = {r["metric"]: r for _, r in metrics[metrics["class"].fillna("") == ""].iterrows()}
    task = task_title[:1].lower() + task_title[1:] if task_title[:2] != task_title[:2].upper() else task_title
    out = []
    for kind, lower_better in (("deletion", True), ("insertion", False)):
        h, r = rows.get(f"explain_{kind}_auc"), rows.get(f"explain_{kind}_auc_random")
        if h is None or r is None:
            continue
        nums = f"AUC {h['value']:.3f} vs {r['value']:.3f} for a random map as coarse as a Grad-CAM"
        better = h["value"] < r["value"] if lower_better else h["value"] > r["value"]
        apart = h["ci_high"] < r["ci_low"] if lower_better else h["ci_low"] > r["ci_high"]
        if not better:
            out.append(f"{kind}: the heatmap order is not better than random for {task} ({nums})")
        elif apart:
            out.append(f"{kind}: the heatmap order is better than random for {task} ({nums}; 95% intervals apart)")
        else:
            out.append(f"{kind}: the heatmap order is slightly better than random for {task}, "
                       f"but the 95% intervals overlap ({nums})")
    s = rows.get("explain_randomised_rank_corr")
    if s is not None:
        rho = s["value"]
        out.append(f"sanity: the heatmap changes when the model's last stage is randomised (rank correlation {rho:.2f}, "
                   f"under 0.5 in absolute value): it depends on what the model learned" if abs(rho) < 0.5 else
                   f"sanity: the heatmap barely changes when the model's last stage is randomised (rank correlation "
                   f"{rho:.2f}): it may show image structure rather than what the model learned")
    p = rows.get("explain_pointing_hit")
    if p is not None:
        out.append(f"pointing game: the heatmap's peak lies inside the lesion in {p['value']:.0%} of the test images "
                   "with an annotated lesion")
    p15, strict = rows.get("explain_pointing_15px"), rows.get("explain_pointing_strict")
    if p15 is not None:
        out.append(f"pointing game on the scan's own pixels (correct tumor calls): the heatmap's peak lies within "
                   f"15 px of the lesion in {p15['value']:.0%}" + (f", inside it in {strict['value']:.0%}" if strict is not None else ""))
    lost, kept = rows.get("explain_erase_lesion_call_lost"), rows.get("explain_erase_elsewhere_call_kept")
    if lost is not None and kept is not None:
        out.append(f"lesion erasure: erasing the lesion changes {lost['value']:.0%} of correct tumor calls; erasing a "
                   f"same-sized region elsewhere keeps {kept['value']:.0%}" + (
                       " - the call depends on the lesion" if lost["value"] >= 0.7 and kept["value"] >= 0.95 else
                       " - the call does not depend on the lesion alone: read it with the heatmap"))
    smooth = rows.get("explain_erase_smooth_call_lost")
    if smooth is not None:
        out.append(f"lesion erasure by a smooth in-fill from the surroundings, held out in training: "
                   f"{smooth['value']:.0%} of correct tumor calls change")
    post, post_kept = rows.get("explain_erase_posterior_call_lost"), rows.get("explain_erase_posterior_elsewhere_call_kept")
    if post is not None:
        out.append(f"lesion erased with the column beneath it, where ultrasound shows posterior enhancement or "
                   f"shadowing: {post['value']:.0%} of correct tumor calls change" + (
                       f"; that shape erased elsewhere keeps {post_kept['value']:.0%}" if post_kept is not None else ""))
    iou = rows.get("explain_iou")
    if iou is not None:
        out.append(f"overlap: the heatmap's hot area (at least half its maximum) overlaps the lesion with IoU "
                   f"{iou['value']:.2f} (1 = the same area)")
    return out


def confusion_figure(cases: pd.DataFrame, labels: list[str], names: Mapping[str, str] | None = None) -> Figure:
    """Counts of true x predicted class on the test split, axes in readable class names."""
    cm = confusion_matrix(cases["label"], cases["pred"], labels=labels)
    shown = [_name(names, l) for l in labels]
    fig, ax = plt.subplots(figsize=(5.4, 4.6))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), shown, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), shown, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, cm[i, j], ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (test split, {len(cases)} images)")
    fig.tight_layout()
    return fig


def roc_figure(cases: pd.DataFrame, labels: list[str], names: Mapping[str, str] | None = None) -> Figure:
    """One-vs-rest ROC curve per class with its AUC."""
    fig, ax = plt.subplots(figsize=(5.4, 4.6))
    for name in labels:
        y = (cases["label"] == name).to_numpy()
        s = cases[f"p_{name}"].to_numpy()
        if y.all() or not y.any():
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{_name(names, name)} (AUC {auc_binary(y, s):.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC per class (one vs rest)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def reliability_bins(n_cases: int) -> int:
    """Equal-count bins for a test set of ``n_cases``: about 25 images a bin, at least 5 and at most 10 bins."""
    return int(np.clip(n_cases // 25, 5, 10))


def _curve(correct: np.ndarray, conf: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean confidence, accuracy, images, bin of each case) per non-empty equal-count bin: scikit-learn's quantile
    calibration curve with the counts of the same bins (its edges, so tied confidences that merge bins are counted
    as merged)."""
    acc, mean_conf = calibration_curve(correct.astype(int), conf, n_bins=n_bins, strategy="quantile")
    edges = np.percentile(conf, np.linspace(0, 100, n_bins + 1))
    which = np.searchsorted(edges[1:-1], conf)
    counts = np.bincount(which, minlength=n_bins)
    counts = counts[counts > 0]
    if len(counts) != len(acc):
        raise RuntimeError("reliability bins and their counts disagree; check scikit-learn's calibration_curve")
    return mean_conf, acc, counts, which


def reliability_figure(cases: pd.DataFrame, labels: list[str], n_bins: int | None = None) -> Figure:
    """Accuracy against top-class confidence, before and after calibration, in equal-count bins (default
    :func:`reliability_bins`: a 125-image test set gets 5 bins of 25), with a table of each bin's mean confidence,
    accuracy and number of images under the plot (confident bins pile up near 1.0, where labels on the points
    would overlap). Grey bars on the diagonal: where a perfectly calibrated model's accuracy would fall in each bin
    after calibration, 95% of the time (consistency bars, :mod:`.consistency`); a point outside its bar is
    miscalibration the bin's size does not explain. The axes start just below the lowest bin. The ECE in the legend
    is the table's (15 equal-width bins)."""
    y = cases["label"].map({l: i for i, l in enumerate(labels)}).to_numpy()
    n_bins = n_bins or reliability_bins(len(cases))
    fig, (ax, tab) = plt.subplots(2, 1, figsize=(5.6, 5.8), gridspec_kw={"height_ratios": [3.2, 1]})
    lows, rows = [0.5], None
    for prefix, name, style in (("raw_p_", "before (T = 1)", "s--"), ("p_", "after calibration", "o-")):
        if not all(f"{prefix}{l}" in cases for l in labels):
            continue
        probs = cases[[f"{prefix}{l}" for l in labels]].to_numpy()
        conf, correct = probs.max(1), probs.argmax(1) == y
        xs, ys, counts, which = _curve(correct, conf, n_bins)
        if prefix == "p_":
            band_lo, band_hi = bin_bands(conf, which)
            ax.vlines(xs, band_lo, band_hi, color="grey", alpha=0.45, linewidth=6,
                      label="95% of a calibrated model's bins")
            lows.append(float(band_lo.min()))
        line, = ax.plot(xs, ys, style, markersize=5, label=f"{name}: ECE {ece(y, probs):.3f}")
        lows += [float(xs.min()), float(ys.min())]
        if prefix == "p_":
            last = (-1.0, -1.0)
            for i, (x, yy) in enumerate(zip(xs, ys), 1):
                if np.hypot(x - last[0], yy - last[1]) > 0.02:  # bins piled up near 1.0 share the first one's number
                    ax.annotate(str(i), (x, yy), textcoords="offset points", xytext=(-8, 3), fontsize=7,
                                color=line.get_color())
                    last = (x, yy)
            rows = [[f"{v:.3f}" for v in xs], [f"{v:.2f}" for v in ys], [str(int(c)) for c in counts]]
    lo = max(0.0, np.floor(min(lows) * 20) / 20 - 0.05)
    ax.plot([lo, 1], [lo, 1], "--", color="grey", linewidth=0.8, label="perfect calibration")
    ax.set_xlim(lo, 1.005)
    ax.set_ylim(lo, 1.02)
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram ({len(cases)} images, {n_bins} equal-count bins)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    tab.axis("off")
    if rows is not None:
        table = tab.table(cellText=rows, rowLabels=["mean confidence", "accuracy", "images"],
                          colLabels=[f"bin {i}" for i in range(1, len(rows[0]) + 1)], loc="center", cellLoc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(7 if len(rows[0]) <= 6 else 6)
        tab.set_title("Bins after calibration, left to right on the curve", fontsize=8)
    fig.tight_layout()
    return fig
