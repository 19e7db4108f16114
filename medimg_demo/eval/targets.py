"""Whether the test metrics meet a task's targets (``tasks.Target``): one verdict per target, and the targets missed or
not measured, named in one line each (the Performance tab's header and tables)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .plots import _name, metric_name  # a class's readable name, as the tables give it


def meets(target: Any, value: float) -> bool:  # noqa: ANN401 - a tasks.Target
    """Whether ``value`` meets the target (at most its threshold for ECE, else at least)."""
    return value <= target.threshold if target.lower_is_better else value >= target.threshold


def verdict(target: Any, value: float) -> str:  # noqa: ANN401
    """">= 0.85: ✗ missed by 0.076" or ">= 0.88: ✓ met" (a target's threshold and whether the value meets it; the
    marks, because a missed target in the same grey text as a met one was read past: clinician walkthrough)."""
    gap = "✓ met" if meets(target, value) else f"✗ missed by {abs(value - target.threshold):.3f}"
    return f"{'<=' if target.lower_is_better else '>='} {target.threshold:g}: {gap}" if np.isfinite(value) else ""


def _value(metrics: pd.DataFrame, target: Any) -> float:  # noqa: ANN401
    cls = metrics["class"].fillna("").astype(str)
    hit = metrics[(metrics["metric"] == target.metric) & (cls == target.cls)]
    return float(hit["value"].iloc[0]) if len(hit) else float("nan")


def missed_targets(metrics: pd.DataFrame, targets: Sequence[Any], names: Mapping[str, str] | None = None,
                   label: Callable[[str], str] = metric_name) -> list[str]:
    """One entry per measure with a target the test metrics miss, its classes together, in the targets' order:
    "Sensitivity: Malignant 0.774 (target >= 0.85)" (``label``: a measure's readable name)."""
    grouped: dict[str, list[str]] = {}
    for t in targets:
        value = _value(metrics, t)
        if np.isfinite(value) and not meets(t, value):
            who = f"{_name(names, t.cls)} " if t.cls else ""
            aim = f"{'<=' if t.lower_is_better else '>='} {t.threshold:g}"
            grouped.setdefault(t.metric, []).append(f"{who}{value:.3f} (target {aim})")
    return [f"{label(metric)}: {', '.join(parts)}" for metric, parts in grouped.items()]


def unmeasured_targets(metrics: pd.DataFrame, targets: Sequence[Any], names: Mapping[str, str] | None = None,
                       label: Callable[[str], str] = metric_name) -> list[str]:
    """The readable names of ``targets`` the metrics hold no value for (an evaluation without ``--explain``, or an
    older model's): neither met nor missed, and said so rather than left out of "every target met"."""
    return [label(t.metric) + (f": {_name(names, t.cls)}" if t.cls else "") for t in targets
            if not np.isfinite(_value(metrics, t))]
