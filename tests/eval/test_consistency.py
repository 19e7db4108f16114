"""Consistency resampling of the ECE: a calibrated model's ECE on few cases is far from zero, and the p-value tells
that apart from real miscalibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medimg_demo.eval.consistency import bin_bands, consistency_rows, ece_consistency, from_metrics
from medimg_demo.models.calibrate import ece, top1_ece


def _sample(n: int, shift: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two-class cases with top-class confidence in [0.55, 1]; right with probability conf - shift."""
    conf = rng.uniform(0.55, 1.0, n)
    right = rng.random(n) < np.clip(conf - shift, 0, 1)
    probs = np.stack([conf, 1 - conf], axis=1)
    y = np.where(right, 0, 1)
    return y, probs


def test_top1_ece_is_the_ece_of_the_same_cases() -> None:
    y, probs = _sample(200, 0.1, np.random.default_rng(3))
    assert top1_ece(probs.max(1), probs.argmax(1) == y) == pytest.approx(ece(y, probs))


def test_calibrated_models_pass_and_overconfident_ones_fail() -> None:
    rng = np.random.default_rng(0)
    calibrated = [ece_consistency(*_sample(120, 0.0, rng), n_sim=300, seed=s).p_value for s in range(30)]
    overconfident = [ece_consistency(*_sample(120, 0.2, rng), n_sim=300, seed=s).p_value for s in range(30)]
    assert np.mean(np.array(calibrated) < 0.05) <= 0.15  # about 5% expected
    assert np.mean(np.array(overconfident) < 0.05) >= 0.8


def test_the_floor_falls_with_more_cases_and_sits_above_zero() -> None:
    rng = np.random.default_rng(1)
    small = ece_consistency(*_sample(60, 0.0, rng), n_sim=400)
    large = ece_consistency(*_sample(2000, 0.0, rng), n_sim=100)
    assert small.median > 2 * large.median > 0
    assert small.low < small.median < small.high
    certain = ece_consistency(np.zeros(10, int), np.tile([1.0, 0.0], (10, 1)), n_sim=50)
    assert certain.observed == 0 and certain.median == 0 and certain.p_value == 1.0


def test_bin_bands_cover_a_calibrated_bins_accuracy() -> None:
    conf = np.concatenate([np.full(100, 0.9), np.full(25, 0.6)])
    lo, hi = bin_bands(conf, np.repeat([1, 0], [100, 25]), n_sim=4000)
    # bins in sorted order: the 0.6 bin of 25 first, then the 0.9 bin of 100 (binomial 95% ranges)
    assert lo[0] == pytest.approx(0.40, abs=0.05) and hi[0] == pytest.approx(0.80, abs=0.05)
    assert lo[1] == pytest.approx(0.84, abs=0.02) and hi[1] == pytest.approx(0.96, abs=0.02)


def test_rows_round_trip_through_the_metrics_table() -> None:
    y, probs = _sample(117, 0.0, np.random.default_rng(2))
    rows = consistency_rows(y, probs, seed=4)
    metrics = pd.concat([pd.DataFrame([{"metric": "ece", "class": "", "value": ece(y, probs), "ci_low": 0.0,
                                        "ci_high": 0.1}]), rows], ignore_index=True)
    direct = ece_consistency(y, probs, seed=4)
    assert from_metrics(metrics, 117) == direct
    assert from_metrics(metrics.iloc[:1], 117) is None  # an evaluation from before the rows existed
    assert "117 images" in direct.sentence() and "95% range" in direct.sentence()
