"""What a call has meant on the test split: of the bundled test images a model called X, how many were each class.

A clinician reading "Benign 99%" could not tell that 4 of the 62 images the default breast model called benign on
its test split were malignant, nor that 2 of the lung model's 9 "Normal" test calls were cancers: the per-class
tables are on another tab, by true class (clinician walkthrough, thirty-ninth session). The record is read from the model's
bundled per-case test predictions (``models/<id>/metrics/cases.csv``, made by ``evaluate --split test`` with the
committed weights), and a call counts as the app makes it: the calibrated top class, at or above the gate's
abstention threshold (below it the app answers "indeterminate"). The gate's refusal of images unlike the training
data is not in those files: the record counts every test image the threshold lets through.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..models.config import ModelConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallRecord:
    """The test images a model called ``label`` (``called``) and their true classes (``truth``, most first)."""

    label: str
    called: int
    truth: tuple[tuple[str, int], ...]
    n_test: int
    indeterminate: int  # test images below the abstention threshold: no call
    missed: tuple[str, ...] = ()  # the task's classification targets this model misses on that split

    @property
    def wrong(self) -> int:
        return self.called - dict(self.truth).get(self.label, 0)


@functools.lru_cache(maxsize=32)
def _calls(path: Path, mtime: float, abstain_below: float) -> tuple[dict[str, dict[str, int]], int, int]:
    """{called label: {true label: count}} of the calls at or above ``abstain_below``, the number of test images and
    of those below it (``mtime``: a rewritten file is read again)."""
    cases = pd.read_csv(path)
    probs = cases[[c for c in cases.columns if c.startswith("p_")]]
    called = cases[probs.max(axis=1) >= abstain_below]
    table = pd.crosstab(called["pred"], called["label"])
    calls = {str(p): {str(t): int(n) for t, n in row.items() if n} for p, row in table.iterrows()}
    return calls, len(cases), len(cases) - len(called)


def call_record(cfg: ModelConfig, label: str) -> CallRecord | None:
    """The record of ``label`` calls on the test split, or None where the model has no bundled per-case results (a
    model under evaluation) or they cannot be read."""
    path = cfg.folder / "metrics" / "cases.csv" if cfg.folder else None
    if path is None or not path.is_file():
        return None
    try:
        calls, n_test, indeterminate = _calls(path, path.stat().st_mtime, cfg.gate.abstain_below if cfg.gate else 0.0)
    except (OSError, ValueError, KeyError) as exc:  # a damaged file: the result is shown without its record
        log.warning("Test record of %s not read (%s)", cfg.id, type(exc).__name__)
        return None
    truth = calls.get(label, {})
    ordered = sorted(truth.items(), key=lambda kv: (kv[0] != label, -kv[1], kv[0]))
    return CallRecord(label=label, called=sum(truth.values()), truth=tuple(ordered), n_test=n_test,
                      indeterminate=indeterminate, missed=_missed(cfg))


def _missed(cfg: ModelConfig) -> tuple[str, ...]:
    """The classification targets (accuracy, AUC, sensitivities, calibration) the model's bundled test metrics miss,
    as the Performance tab names them; () where there are none to read."""
    path = cfg.folder / "metrics" / "metrics.csv" if cfg.folder else None
    if path is None or not path.is_file():
        return ()
    try:
        return _missed_in(path, path.stat().st_mtime, cfg.task)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("Test metrics of %s not read (%s)", cfg.id, type(exc).__name__)
        return ()


@functools.lru_cache(maxsize=32)
def _missed_in(path: Path, mtime: float, task: str) -> tuple[str, ...]:
    from ..tasks import get_task
    from .targets import missed_targets  # with the tables' names (matplotlib, torch): once a record is asked for

    spec = get_task(task)
    targets = [t for t in spec.targets if not t.metric.startswith("explain_")]  # the call's, not the heatmap's
    return tuple(missed_targets(pd.read_csv(path), targets, spec.label_names))


def record_text(rec: CallRecord | None, name: Callable[[str], str], *, strong: tuple[str, str] = ("**", "**"),
                em: tuple[str, str] = ("*", "*")) -> str:
    """One sentence for beside the call: how often this call was right on the test split, and what it was when not
    ("" when there is no record). ``name``: the task's readable class names; ``strong``/``em``: the mark-up (Markdown by
    default; the PDF report gives reportlab's tags)."""
    if rec is None:
        return ""
    called = f"{em[0]}{name(rec.label)}{em[1]}"
    split = f"On its test split ({rec.n_test} images, {rec.indeterminate} of them indeterminate)"
    if not rec.called:
        return f"{split} this model called no image {called}: this call has no test record."
    parts = ", ".join(f"{n} {name(t)}" for t, n in rec.truth)
    wrong = (f" {strong[0]}{rec.wrong} of the {rec.called} ({rec.wrong / rec.called:.0%}) were another class."
             f"{strong[1]}" if rec.wrong else "")
    missed = (f" {strong[0]}Targets it misses there:{strong[1]} {'; '.join(rec.missed)} (Performance tab)."
              if rec.missed else "")
    return (f"{split} this model called {rec.called} images {called}: they were {parts}.{wrong}{missed} Research "
            "use: a call is not a diagnosis.")


def record_markdown(rec: CallRecord | None, name: Callable[[str], str]) -> str:
    """:func:`record_text` as the Analyse tab shows it, under the call ("" without a record)."""
    text = record_text(rec, name)
    return f"<small>{text}</small>" if text else ""
