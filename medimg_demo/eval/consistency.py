"""Is a calibration error real, or what a calibrated model would also score on this few images?

The ECE of a finite test set is biased upwards and noisy: with 117 images of moderate confidence, even a perfectly
calibrated model scores an ECE well above zero. Consistency resampling (Broecker and Smith, Weather and Forecasting
22, 2007; used for ECE by Vaicenavicius et al., AISTATS 2019) measures that floor: draw the test set's top-class
confidences with replacement, let each case be right with exactly its confidence (a perfectly calibrated model),
and score the ECE of each draw the same way. The observed ECE is then read against that distribution:

- ``ece_if_calibrated``: its median, with its 2.5 and 97.5 percentiles;
- ``ece_consistency_p``: the share of draws scoring at least the observed ECE (small: miscalibration the sample size
  does not explain).

The same draws, kept per bin of the reliability diagram, give the band a calibrated model's bin accuracy falls in
(:func:`bin_bands`). The targets are unchanged: this says how to read a miss, it does not excuse one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..models.calibrate import ece, top1_ece

#: Resamples per evaluation: the p-value's standard error is at most 0.011.
N_SIM = 2000


@dataclass(frozen=True)
class Consistency:
    observed: float  # the test set's ECE
    median: float  # median ECE of a perfectly calibrated model with these confidences, on this many cases
    low: float  # its 2.5th percentile
    high: float  # its 97.5th percentile
    p_value: float  # share of calibrated draws with an ECE at least the observed one
    n: int

    def sentence(self) -> str:
        """One line a reader can act on."""
        head = (f"ECE {self.observed:.3f}; a perfectly calibrated model with these confidences would score "
                f"{self.median:.3f} on {self.n} images (95% range {self.low:.3f} to {self.high:.3f})")
        if self.p_value < 0.05:
            p = "p " + (small_p(self.p_value) or f"= {self.p_value:.3f}")
            return f"{head}: {p}, more miscalibration than this sample size explains."
        return f"{head}: p = {self.p_value:.2f}, within what this sample size alone produces."


def small_p(p_value: float) -> str | None:
    """"< 0.001" for a resampling p below what its draws resolve (never "0"); None otherwise."""
    return "< 0.001" if p_value < 0.001 else None


def ece_consistency(y: np.ndarray, probs: np.ndarray, n_sim: int = N_SIM, seed: int = 0) -> Consistency:
    """Consistency resampling of the top-class ECE (15 equal-width bins, as :func:`ece`)."""
    y, probs = np.asarray(y), np.asarray(probs, dtype=float)
    if len(y) == 0:
        raise ValueError("no cases: an ECE needs at least one case")
    conf = probs.max(1)
    rng = np.random.default_rng(seed)
    sims = np.empty(n_sim)
    for s in range(n_sim):
        c = conf[rng.integers(0, len(conf), len(conf))]
        right = rng.random(len(c)) < c
        sims[s] = top1_ece(c, right)
    observed = ece(y, probs)
    return Consistency(observed=float(observed), median=float(np.median(sims)), low=float(np.percentile(sims, 2.5)),
                       high=float(np.percentile(sims, 97.5)), p_value=float((sims >= observed - 1e-12).mean()), n=len(y))


def bin_bands(conf: np.ndarray, bins: np.ndarray, n_sim: int = N_SIM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """For each bin id in ``np.unique(bins)`` (sorted): the 2.5th and 97.5th percentiles of the bin's accuracy if
    every case were right with exactly its confidence (the consistency bars of a reliability diagram)."""
    rng = np.random.default_rng(seed)
    ids = np.unique(bins)
    lows, highs = np.empty(len(ids)), np.empty(len(ids))
    for i, b in enumerate(ids):
        c = conf[bins == b]
        acc = (rng.random((n_sim, len(c))) < c).mean(axis=1)
        lows[i], highs[i] = np.percentile(acc, [2.5, 97.5])
    return lows, highs


def consistency_rows(y: np.ndarray, probs: np.ndarray, prefix: str = "", seed: int = 0) -> pd.DataFrame:
    """``<prefix>ece_if_calibrated`` (median, 95% range) and ``<prefix>ece_consistency_p`` as metric rows."""
    c = ece_consistency(y, probs, seed=seed)
    nan = float("nan")
    return pd.DataFrame([
        {"metric": f"{prefix}ece_if_calibrated", "class": "", "value": c.median, "ci_low": c.low, "ci_high": c.high},
        {"metric": f"{prefix}ece_consistency_p", "class": "", "value": c.p_value, "ci_low": nan, "ci_high": nan},
    ])


def from_metrics(metrics: pd.DataFrame, n: int, prefix: str = "") -> Consistency | None:
    """The :class:`Consistency` an evaluation's metric rows hold; None for an evaluation made before they existed."""
    m = metrics[metrics["class"].fillna("") == ""].set_index("metric")
    keys = [f"{prefix}ece", f"{prefix}ece_if_calibrated", f"{prefix}ece_consistency_p"]
    if not all(k in m.index for k in keys):
        return None
    obs, cal, p = (m.loc[k] for k in keys)
    return Consistency(observed=float(obs["value"]), median=float(cal["value"]), low=float(cal["ci_low"]),
                       high=float(cal["ci_high"]), p_value=float(p["value"]), n=n)


#: Rows that read as a comment on the ECE, in the order the overall table shows them right under it.
ECE_COMPANIONS = ("ece_uncalibrated", "ece_if_calibrated", "ece_consistency_p")


def order_under_ece(keys: list[str]) -> list[int]:
    """Row order that moves each ``<prefix>ece_uncalibrated``, ``ece_if_calibrated`` and ``ece_consistency_p`` right
    under its ``<prefix>ece`` row (in that order); rows without an ECE row of their prefix stay where they are."""
    present = set(keys)
    moves: list[tuple[int, int, str]] = []  # (rank among the companions, row index, prefix)
    for i, key in enumerate(keys):
        for rank, suffix in enumerate(ECE_COMPANIONS):
            prefix = key.removesuffix(suffix)
            if key.endswith(suffix) and prefix + "ece" in present:
                moves.append((rank, i, prefix))
                break
    moved = {i for _, i, _ in moves}
    order = [i for i in range(len(keys)) if i not in moved]
    for _, i, prefix in sorted(moves):
        mine = {prefix + "ece", *(prefix + c for c in ECE_COMPANIONS)}
        order.insert(max(j for j, pos in enumerate(order) if keys[pos] in mine) + 1, i)
    return order
