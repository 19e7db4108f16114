"""Eval: evaluation on a manifest split, metrics (scikit-learn) with bootstrap intervals, explanation quality,
the evaluation cache and metrics log, plots, the error gallery and model cards."""

from __future__ import annotations
