"""The figures the README quotes for the committed models are the ones their bundled test metrics hold: the models
table (accuracy and macro AUC with their intervals) and the calibration table (ECE with its interval, what a
calibrated model would score, p). A model re-evaluated without its README row updated fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medimg_demo.eval.consistency import small_p
from medimg_demo.models.registry import list_models
from medimg_demo.report.pdf import bundled_metrics

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _metrics(model_id: str) -> dict[str, tuple[float, float, float]]:
    df, _ = bundled_metrics({m.id: m for m in list_models()}[model_id])
    assert df is not None, f"{model_id} has no bundled metrics"
    overall = df[df["class"].isna()]
    return {r.metric: (r.value, r.ci_low, r.ci_high) for r in overall.itertuples()}


def _table_rows(first_cell: str) -> list[list[str]]:
    rows = [line for line in README.splitlines() if re.match(rf"\|\s*{first_cell}", line)]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in rows]


def test_models_table_matches_bundled_metrics() -> None:
    rows = {re.search(r"`([^`]+)`", r[0]).group(1): r for r in _table_rows(r"`(lung_ct|breast_us|brain_mri)\.")}
    assert set(rows) == {m.id for m in list_models()}, "every committed model has one row in the README's table"
    for model_id, row in rows.items():
        m = _metrics(model_id)
        value, low, high = m["accuracy"]
        assert row[3] == f"{value:.3f} [{low:.3f}, {high:.3f}]", model_id
        value, low, high = m["macro_auc"]
        assert row[4] == f"{value:.3f} [{low:.3f}, {high:.3f}]", model_id


@pytest.mark.parametrize("name, model_id", [
    ("lung v2", "lung_ct.tf_efficientnet_lite0_v2"),
    ("breast v2 + BCTS", "breast_us.tf_efficientnet_lite1_v2"),
    ("brain v5", "brain_mri.tf_efficientnet_lite1_v5"),
])
def test_calibration_table_matches_bundled_metrics(name: str, model_id: str) -> None:
    rows = _table_rows(re.escape(name) + r"\s*\|")
    assert len(rows) == 1, f"one README calibration row for {name}"
    row, m = rows[0], _metrics(model_id)
    value, low, high = m["ece"]
    assert row[1] == f"{value:.3f} [{low:.3f}, {high:.3f}]", name
    value, low, high = m["ece_if_calibrated"]
    assert row[2] == f"{value:.3f} [{low:.3f}, {high:.3f}]", name
    p = m["ece_consistency_p"][0]
    assert row[3] == (small_p(p) or f"{p:.2f}"), name


@pytest.mark.parametrize("name, model_id", [
    ("lung v2", "lung_ct.tf_efficientnet_lite0_v2"),
    ("breast v2", "breast_us.tf_efficientnet_lite1_v2"),
    ("brain v5", "brain_mri.tf_efficientnet_lite1_v5"),
])
def test_heatmap_faithfulness_table_matches_bundled_metrics(name: str, model_id: str) -> None:
    """Deletion and insertion AUC, heatmap order and the random map's, as the README's table quotes them."""
    rows = _table_rows(r"Grad-CAM of " + re.escape(name) + r"\s*\|")
    assert len(rows) == 1, f"one README faithfulness row for {name}"
    row, m = rows[0], _metrics(model_id)
    cell = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in (m[f"explain_{k}"] for k in
            ("deletion_auc", "deletion_auc_random", "insertion_auc", "insertion_auc_random"))]
    assert row[1] == cell[0] and row[2].startswith(cell[1]) and row[3] == cell[2] and row[4].startswith(cell[3]), name
