"""What a call has meant on the test split, as the Analyse tab shows it under the call: counts by true class of the
bundled test images the model called that class, at the app's abstention threshold."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from medimg_demo.eval.call_record import call_record, record_markdown
from medimg_demo.models.registry import get_model
from medimg_demo.tasks import get_task


def _model(tmp_path: Path, rows: list[tuple[str, str, float]], abstain_below: float = 0.6) -> SimpleNamespace:
    (tmp_path / "metrics").mkdir()
    cases = pd.DataFrame([{"image": f"i{k}.png", "label": t, "pred": p, "p_benign": q if p == "benign" else 1 - q,
                           "p_malignant": q if p == "malignant" else 1 - q} for k, (t, p, q) in enumerate(rows)])
    cases.to_csv(tmp_path / "metrics" / "cases.csv", index=False)
    return SimpleNamespace(id="breast_us.test_v0", folder=tmp_path, gate=SimpleNamespace(abstain_below=abstain_below))


def test_a_call_is_told_with_what_it_was_on_the_test_split(tmp_path: Path) -> None:
    cfg = _model(tmp_path, [("benign", "benign", 0.9), ("benign", "benign", 0.8), ("malignant", "benign", 0.95),
                            ("malignant", "benign", 0.55),  # below the threshold: indeterminate, not a call
                            ("malignant", "malignant", 0.9)])
    rec = call_record(cfg, "benign")
    assert (rec.called, rec.wrong, rec.truth, rec.n_test, rec.indeterminate) == (3, 1, (("benign", 2), ("malignant", 1)),
                                                                                 5, 1)
    text = record_markdown(rec, get_task("breast_us").label_name)
    assert "(5 images, 1 of them indeterminate) this model called 3 images *Benign*: they were 2 Benign, 1 Malignant" \
        in text and "**1 of the 3 (33%) were another class.**" in text and "not a diagnosis" in text
    assert "another class" not in record_markdown(call_record(cfg, "malignant"), str)
    assert "called no image" in record_markdown(call_record(cfg, "normal"), str)
    assert call_record(SimpleNamespace(id="x", folder=tmp_path / "none", gate=None), "benign") is None


def test_the_served_lung_model_says_how_many_of_its_normal_calls_were_cancers() -> None:
    """4 cancers of 118 in the test split are missed; 2 of them are called normal at the app's threshold (the other
    two fall below it and are indeterminate)."""
    cfg = get_model("lung_ct.tf_efficientnet_lite0_v2")
    cases = pd.read_csv(cfg.folder / "metrics" / "cases.csv")
    top = cases[[c for c in cases if c.startswith("p_")]].max(axis=1)
    normal = cases[(cases["pred"] == "normal") & (top >= cfg.gate.abstain_below)]
    rec = call_record(cfg, "normal")
    assert rec.called == len(normal) and rec.wrong == int((normal["label"] != "normal").sum()) >= 1
    assert rec.n_test == len(cases) and rec.indeterminate == int((top < cfg.gate.abstain_below).sum())


def test_a_call_names_the_targets_its_model_misses_on_the_test_split(tmp_path: Path) -> None:
    """A "Normal" call of the default breast model read as reassurance, with nothing under it saying that the model
    misses its malignant-sensitivity target (clinician walkthrough): the classification targets it misses follow
    the record, heatmap targets left to the Performance tab."""
    cfg = _model(tmp_path, [("benign", "benign", 0.9), ("malignant", "malignant", 0.9)])
    cfg.task = "breast_us"
    metrics = pd.DataFrame([("sensitivity", "malignant", 0.70), ("ece", "", 0.03), ("accuracy", "", 0.95),
                            ("explain_pointing_15px", "", 0.10)], columns=["metric", "class", "value"])
    metrics.to_csv(tmp_path / "metrics" / "metrics.csv", index=False)
    rec = call_record(cfg, "benign")
    assert rec.missed == ("Sensitivity: Malignant 0.700 (target >= 0.85)",), rec.missed
    text = record_markdown(rec, get_task("breast_us").label_name)
    assert "**Targets it misses there:** Sensitivity: Malignant 0.700 (target >= 0.85) (Performance tab)." in text
    for model_id in ("lung_ct.tf_efficientnet_lite0_v2", "brain_mri.tf_efficientnet_lite1_v5"):
        served = get_model(model_id)
        m = pd.read_csv(served.folder / "metrics" / "metrics.csv")
        m["class"] = m["class"].fillna("")
        below = [t for t in get_task(served.task).targets if not t.metric.startswith("explain_")
                 for v in m[(m["metric"] == t.metric) & (m["class"] == t.cls)]["value"]
                 if (v > t.threshold if t.lower_is_better else v < t.threshold)]
        assert len(call_record(served, served.type_labels[0]).missed) == len({t.metric for t in below})
        assert bool(below) == (model_id.startswith("lung_ct"))  # lung misses ECE and any-tumor sensitivity, brain none
    lung = get_model("lung_ct.tf_efficientnet_lite0_v2")
    assert call_record(lung, "normal").missed == ("Sensitivity for any tumor (vs no tumor): 0.966 (target >= 0.97)",
                                                 "Expected calibration error (ECE): 0.052 (target <= 0.04)")
