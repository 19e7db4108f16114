"""Performance tab content: readable names in the tables, equal-count reliability bins with their counts, and
explanation verdicts read from the numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medimg_demo.eval.plots import (explanation_verdicts, metric_name, overall_table, per_class_table,
                                    reliability_bins, reliability_figure)

LABELS = ["adenocarcinoma", "normal", "squamous_cell_carcinoma"]


def _row(metric: str, cls: str, value: float, lo: float, hi: float) -> dict[str, object]:
    return {"metric": metric, "class": cls, "value": value, "ci_low": lo, "ci_high": hi}


def test_tables_use_readable_metric_and_class_names() -> None:
    m = pd.DataFrame([_row("accuracy", "", 0.9, 0.8, 0.95), _row("macro_auc", "", 0.97, 0.95, 0.99),
                      _row("ece", "", 0.04, 0.02, 0.07), _row("stage_ece", "", 0.05, 0.03, 0.08),
                      *(_row(k, c, 0.5, 0.4, 0.6) for c in ("normal", "squamous_cell_carcinoma")
                        for k in ("auc", "f1", "sensitivity", "specificity", "precision")),
                      _row("explain_pointing_15px", "normal", 0.9, 0.8, 1.0)])  # shown in the explanation table
    overall = overall_table(m)
    assert list(overall["Metric"]) == ["Accuracy", "Macro AUC (one vs rest)", "Expected calibration error (ECE)",
                                       "Stage expected calibration error (ECE)"]
    table = per_class_table(m, names={"squamous_cell_carcinoma": "Squamous cell carcinoma"})
    assert list(table.columns) == ["Class", "sensitivity", "specificity", "precision", "f1", "auc"]
    assert list(table["Class"]) == ["normal", "Squamous cell carcinoma"]  # model order; unnamed labels kept
    assert table.iloc[0]["sensitivity"] == "0.500 [0.400, 0.600]"
    near = pd.DataFrame([_row("sensitivity", "malignant", 0.8487, 0.7, 0.93)])
    assert per_class_table(near).iloc[0]["sensitivity"] == "0.849 [0.700, 0.930]"  # not 0.85: a target of 0.85 missed


def test_the_ece_consistency_rows_sit_under_their_ece() -> None:
    """evaluate appends the consistency rows after every other row; the table reads them as the ECE's comment."""
    keys = ["accuracy", "ece", "any_tumor_sensitivity", "ece_uncalibrated", "stage_accuracy", "stage_ece",
            "ece_if_calibrated", "ece_consistency_p", "stage_ece_consistency_p", "stage_ece_if_calibrated",
            "orphan_ece_if_calibrated"]
    overall = overall_table(pd.DataFrame([_row(k, "", 0.5, 0.4, 0.6) for k in keys]))
    assert list(overall["Metric"]) == [metric_name(k) for k in (
        "accuracy", "ece", "ece_uncalibrated", "ece_if_calibrated", "ece_consistency_p", "any_tumor_sensitivity",
        "stage_accuracy", "stage_ece", "stage_ece_if_calibrated", "stage_ece_consistency_p",
        "orphan_ece_if_calibrated")]  # no "orphan_ece" row: it stays where it was
    small_p = overall_table(pd.DataFrame([_row("ece", "", 0.05, 0.02, 0.09), _row("ece_consistency_p", "", 0.0005,
                                                                                  np.nan, np.nan)]))
    assert list(small_p["Value"]) == ["0.050", "< 0.001"] and list(small_p["95% CI"]) == ["[0.020, 0.090]", ""]
    assert metric_name("stage_f1") == "Stage F1 score" and metric_name("new_thing") == "New thing"


def test_the_headline_table_names_the_targeted_class_and_says_which_targets_are_met() -> None:
    """Breast's overall table gave only "Sensitivity for any tumor" (0.969: benign counts as tumor) while malignant
    sensitivity, its target, was 0.77 in the per-class table (UX review): the targeted class is a row under it, and
    each target reads met or missed by how much."""
    from medimg_demo.tasks import get_task

    spec = get_task("breast_us")
    m = pd.DataFrame([_row("accuracy", "", 0.889, 0.82, 0.93), _row("ece", "", 0.075, 0.05, 0.14),
                      _row("any_tumor_sensitivity", "", 0.969, 0.91, 0.99), _row("macro_auc", "", 0.961, 0.93, 0.99),
                      _row("sensitivity", "benign", 0.97, 0.9, 0.99), _row("sensitivity", "malignant", 0.774, 0.6, 0.89)])
    table = overall_table(m, spec.targets, spec.label_names)
    assert list(table["Metric"]) == ["Accuracy", "Expected calibration error (ECE)",
                                     "Sensitivity for any tumor (vs no tumor)", "Sensitivity: Malignant",
                                     "Macro AUC (one vs rest)"]
    assert list(table["Target (test split)"]) == [">= 0.88: ✓ met", "<= 0.04: ✗ missed by 0.035", "",
                                                  ">= 0.85: ✗ missed by 0.076", ">= 0.95: ✓ met"]
    assert "Target (test split)" not in overall_table(m).columns  # without targets, as before
    # and one line names every target missed (read past in grey text among met ones: clinician walkthrough)
    from medimg_demo.eval.targets import missed_targets, unmeasured_targets

    assert missed_targets(m, spec.targets, spec.label_names) == [
        "Sensitivity: Malignant 0.774 (target >= 0.85)", "Expected calibration error (ECE): 0.075 (target <= 0.04)"]
    # the explanation targets: not in these metrics, so not measured (never "every target met")
    assert unmeasured_targets(m, spec.targets, spec.label_names)[0].startswith("Explain pointing 15px")


def test_reliability_bins_suit_small_sets_and_print_their_counts() -> None:
    assert reliability_bins(40) == 5 and reliability_bins(125) == 5 and reliability_bins(200) == 8
    assert reliability_bins(646) == 10
    rng = np.random.default_rng(0)
    n = 125
    raw = rng.dirichlet(np.ones(3) * 0.6, n)
    labels = np.array([LABELS[rng.choice(3, p=p)] for p in raw])
    cases = pd.DataFrame({"label": labels, **{f"p_{l}": raw[:, i] for i, l in enumerate(LABELS)},
                          **{f"raw_p_{l}": raw[:, i] for i, l in enumerate(LABELS)}})
    fig = reliability_figure(cases, LABELS)
    ax, tab = fig.axes
    assert "125 images, 5 equal-count bins" in ax.get_title()
    cells = {(r, c): cell.get_text().get_text() for (r, c), cell in tab.tables[0].get_celld().items()}
    counts = [int(cells[(3, c)]) for c in range(5)]  # row 0 is the header, row 3 the images per bin
    assert sum(counts) == n and max(counts) - min(counts) <= 1
    assert cells[(3, -1)] == "images" and cells[(0, 0)] == "bin 1"
    bars = [c for c in ax.collections if c.get_label() == "95% of a calibrated model's bins"]
    assert len(bars) == 1 and len(bars[0].get_segments()) == 5  # one consistency bar per bin
    for (x0, y0), (x1, y1) in bars[0].get_segments():
        assert x0 == x1 and y0 <= x0 + 0.02 and y1 >= x0 - 0.02  # each bar spans (about) its bin's confidence


def test_explanation_verdicts_follow_the_numbers() -> None:
    def rows(dele: tuple[float, float, float], rand: tuple[float, float, float]) -> pd.DataFrame:
        return pd.DataFrame([_row("explain_deletion_auc", "", *dele), _row("explain_deletion_auc_random", "", *rand),
                             _row("explain_randomised_rank_corr", "", 0.8, 0.7, 0.9)])

    worse = explanation_verdicts(rows((0.35, 0.29, 0.41), (0.21, 0.15, 0.28)), "Lung CT")
    assert worse[0].startswith("deletion: the heatmap order is not better than random for lung CT")
    apart = explanation_verdicts(rows((0.30, 0.25, 0.35), (0.60, 0.52, 0.66)), "Brain MRI")
    assert apart[0].startswith("deletion: the heatmap order is better than random for brain MRI")
    overlap = explanation_verdicts(rows((0.50, 0.44, 0.56), (0.55, 0.50, 0.61)), "Breast ultrasound")
    assert "slightly better than random for breast ultrasound, but the 95% intervals overlap" in overlap[0]
    assert "barely changes" in worse[1]
