"""Metrics come from scikit-learn and reproduce the bundled test metrics (computed by the former hand-written
code) within 1e-6: point values always, their intervals (Wilson or bootstrap) in the slow run."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from medimg_demo.eval.metrics import all_metrics, auc_binary, ece, macro_auc, with_bootstrap
from medimg_demo.models.registry import list_models


def test_auc_and_ece_known_values() -> None:
    y = np.array([0, 0, 1, 1])
    assert auc_binary(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc_binary(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert auc_binary(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    assert macro_auc(y, probs) == 1.0
    # perfectly confident and always right -> ECE 0; 0.75 confident and 100% right -> ECE 0.25
    assert ece(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]])) == 0.0
    assert abs(ece(np.array([0, 1]), np.array([[0.75, 0.25], [0.25, 0.75]])) - 0.25) < 1e-9


def _recomputed(cfg, n_boot: int | None) -> pd.DataFrame:  # noqa: ANN001
    """Metrics of a committed model recomputed from its bundled per-case probabilities."""
    cases = pd.read_csv(cfg.folder / "metrics" / "cases.csv", keep_default_na=False)
    frames = []
    for head, labels in cfg.heads.items():
        prefix, col = ("", "label") if head == "type" else (f"{head}_", head)
        y = cases[col].map({name: i for i, name in enumerate(labels)}).to_numpy()
        probs = cases[[f"{prefix}p_{name}" for name in labels]].to_numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if n_boot is None:
                rows = all_metrics(y, probs, labels, prefix)
                frames.append(pd.DataFrame(rows, columns=["metric", "class", "value"]))
            else:
                frames.append(with_bootstrap(y, probs, labels, prefix=prefix, n_boot=n_boot))
    return pd.concat(frames, ignore_index=True)


def _compare(cfg, columns: tuple[str, ...], n_boot: int | None) -> None:  # noqa: ANN001
    bundled = pd.read_csv(cfg.folder / "metrics" / "metrics.csv", keep_default_na=False, na_values=[""])
    bundled["class"] = bundled["class"].fillna("")
    new = _recomputed(cfg, n_boot)
    both = bundled.merge(new, on=["metric", "class"], suffixes=("_bundled", "_sklearn"))
    assert len(both) == len(new) and len(new) >= 19, (cfg.id, len(both), len(new))
    for col in columns:
        a, b = both[f"{col}_bundled"].to_numpy(float), both[f"{col}_sklearn"].to_numpy(float)
        assert np.array_equal(np.isnan(a), np.isnan(b)), (cfg.id, col)
        ok = ~np.isnan(a)
        assert np.max(np.abs(a[ok] - b[ok])) < 1e-6, (cfg.id, col, np.max(np.abs(a[ok] - b[ok])))


def test_point_metrics_reproduce_the_bundled_metrics() -> None:
    for cfg in list_models():
        _compare(cfg, ("value",), None)


@pytest.mark.slow
def test_intervals_reproduce_the_bundled_metrics() -> None:
    for cfg in list_models():
        _compare(cfg, ("value", "ci_low", "ci_high"), 1000)


def test_per_class_undefined_values_are_nan_not_zero() -> None:
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.3, 0.7, 0.0], [0.4, 0.6, 0.0]])
    rows = {(m, c): v for m, c, v in all_metrics(y, probs, ["a", "b", "c"])}
    assert rows[("sensitivity", "c")] != rows[("sensitivity", "c")]  # no case of class c: undefined
    assert rows[("specificity", "c")] == 1.0 and rows[("accuracy", "")] == 1.0


def test_proportions_carry_wilson_intervals_that_reflect_few_cases() -> None:
    """7 of 7 normal images right: a percentile bootstrap gave [1.00, 1.00]; the interval must say how few cases
    stand behind the 1.00 (Wilson: [0.65, 1.00]), while AUC keeps its bootstrap interval."""
    labels = ["adenocarcinoma", "normal"]
    y = np.array([0] * 40 + [1] * 7)
    probs = np.zeros((47, 2))
    probs[np.arange(47), y] = 0.9
    probs[np.arange(47), 1 - y] = 0.1
    probs[:5, :] = [0.3, 0.7]  # 5 adenocarcinomas called normal: normal precision 7 / 12
    m = with_bootstrap(y, probs, labels, n_boot=200).set_index(["metric", "class"])
    sens = m.loc[("sensitivity", "normal")]
    assert sens["value"] == 1.0 and abs(sens["ci_low"] - 0.646) < 0.002 and sens["ci_high"] == 1.0
    prec = m.loc[("precision", "normal")]
    assert abs(prec["value"] - 7 / 12) < 1e-9 and prec["ci_low"] < 7 / 12 < prec["ci_high"]
    spec = m.loc[("specificity", "normal")]  # 35 of 40 adenocarcinomas not called normal
    assert abs(spec["value"] - 35 / 40) < 1e-9 and 0.72 < spec["ci_low"] < 0.75
    any_tumor = m.loc[("any_tumor_sensitivity", "")]
    assert abs(any_tumor["value"] - 35 / 40) < 1e-9 and any_tumor["ci_low"] == spec["ci_low"]
    auc = m.loc[("auc", "normal")]
    assert auc["ci_low"] <= auc["value"] <= auc["ci_high"]


def _explain_rows(cfg) -> pd.DataFrame:  # noqa: ANN001
    """The explanation rows of a committed model recomputed from its bundled per-case explanation table, as
    ``evaluate --explain`` summarises them (same seed, 1000 resamples)."""
    from medimg_demo.eval.explanations import explain_summary
    from medimg_demo.eval.framing import framing_summary
    from medimg_demo.eval.lesions import summarise

    per_case = pd.read_csv(cfg.folder / "metrics" / "explain_cases.csv")
    parts = [explain_summary(per_case)]
    if "frame_call_changed" in per_case:
        parts.append(framing_summary(per_case))
    if "correct" in per_case:  # the lesion measures' cases: annotated tumor images (the others have no "correct")
        lesion_cases = per_case[per_case["correct"].notna()]
        parts.append(summarise(lesion_cases.assign(correct=lesion_cases["correct"].astype(str) == "True")))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.slow
def test_explanation_intervals_reproduce_the_bundled_metrics() -> None:
    """Every bundled explanation row (pointing, erasure, framing, Dice, IoU, faithfulness) is its per-case table
    summarised: value and interval within 1e-6; the shares carry Wilson intervals, so none reads [1.00, 1.00]."""
    for cfg in list_models():
        if not (cfg.folder / "metrics" / "explain_cases.csv").is_file():
            continue
        bundled = pd.read_csv(cfg.folder / "metrics" / "metrics.csv", keep_default_na=False, na_values=[""])
        bundled["class"] = bundled["class"].fillna("")
        bundled = bundled[bundled["metric"].str.startswith("explain_")]
        new = _explain_rows(cfg)
        both = bundled.merge(new, on=["metric", "class"], suffixes=("_bundled", "_new"))
        assert len(both) == len(new) == len(bundled) and len(new) >= 10, (cfg.id, len(both), len(new), len(bundled))
        for col in ("value", "ci_low", "ci_high"):
            a, b = both[f"{col}_bundled"].to_numpy(float), both[f"{col}_new"].to_numpy(float)
            assert np.array_equal(np.isnan(a), np.isnan(b)) and np.nanmax(np.abs(a - b)) < 1e-6, (cfg.id, col)
        shares = both[both["metric"].str.contains("pointing|call_lost|call_kept|frame_|ge_0.5")]
        assert len(shares) and (shares["ci_low_new"] < shares["ci_high_new"]).all(), cfg.id  # never [1.00, 1.00]


def test_a_share_of_cases_carries_a_wilson_interval_other_measures_the_bootstrap() -> None:
    from medimg_demo.eval.metrics import PlanEntry, case_summary, share

    frame = pd.DataFrame({"label": ["a"] * 12 + ["b"] * 8, "hit": [1.0] * 12 + [1.0, 0.0] * 4,
                          "dice": np.linspace(0.5, 0.9, 20), "iou": [0.0] * 12 + [1.0] * 8})
    plan: list[PlanEntry] = [("hits", "hit", frame, share), ("dice", "dice", frame, np.median),
                             ("iou", "iou", frame, np.mean)]
    rows = case_summary(plan, n_boot=200).set_index(["metric", "class"])
    a = rows.loc[("hits", "a")]
    assert a["value"] == 1.0 and abs(a["ci_low"] - 0.757) < 0.001 and a["ci_high"] == 1.0  # 12 of 12: Wilson
    assert rows.loc[("hits", "")]["ci_low"] < 16 / 20 < rows.loc[("hits", "")]["ci_high"]
    dice = rows.loc[("dice", "")]
    assert dice["ci_low"] < dice["value"] < dice["ci_high"] and dice["ci_high"] < 0.9  # a median: bootstrap
    iou = rows.loc[("iou", "a")]  # a mean IoU that happens to be all 0 is not a share: the bootstrap's [0, 0]
    assert iou["value"] == iou["ci_low"] == iou["ci_high"] == 0.0
    with pytest.raises(ValueError, match="yes/no"):
        case_summary([("dice", "dice", frame, share)], n_boot=10)


def test_auc_carries_newcombes_score_interval() -> None:
    """Each class's AUC: Newcombe's method 5, checked against SingleCaseES's NAP interval (an AUC of 0.9167 for 6 x 7
    cases: 95% [0.5973, 0.9860], 90% [0.6591, 0.9822]); a perfect ranking of few cases is not [1, 1]."""
    from medimg_demo.eval.metrics import auc_interval

    low, high = auc_interval(11 / 12, 6, 7)
    assert abs(low - 0.5973193600384168) < 1e-9 and abs(high - 0.9859976893703788) < 1e-9
    low, high = auc_interval(11 / 12, 6, 7, z=1.6448536269514722)
    assert abs(low - 0.6591091902344411) < 1e-9 and abs(high - 0.9822247870934007) < 1e-9
    low, high = auc_interval(1.0, 7, 118)
    assert 0.84 < low < 0.86 and high == 1.0
    assert auc_interval(0.0, 7, 118) == pytest.approx((0.0, 1 - low))  # mirrored
    assert all(np.isnan(auc_interval(0.8, 0, 5)))  # one class only: undefined
    labels = ["adenocarcinoma", "normal"]
    y = np.array([0] * 40 + [1] * 7)
    probs = np.zeros((47, 2))
    probs[np.arange(47), y] = 0.9
    probs[np.arange(47), 1 - y] = 0.1
    rows = with_bootstrap(y, probs, labels, n_boot=100).set_index(["metric", "class"])
    auc = rows.loc[("auc", "normal")]
    assert auc["value"] == 1.0 and 0.7 < auc["ci_low"] < 0.9 and auc["ci_high"] == 1.0  # the bootstrap said [1, 1]
    macro = rows.loc[("macro_auc", "")]
    assert macro["ci_low"] == macro["ci_high"] == 1.0  # an average of AUCs keeps its bootstrap interval
