"""Treatment pathways: a plain table (task, type, stage) -> options with their cited guideline.

The table (``tables/treatment_pathways.csv``) is meant to be read and reviewed by clinicians in a
spreadsheet. Its rows are options for a tumor board to discuss, never orders; each row says which
guideline it follows and its review status.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

TABLE_PATH = Path(__file__).with_name("tables") / "treatment_pathways.csv"

PATHWAY_NOTICE = (
    "Options from a cited guideline table for discussion by a multidisciplinary tumor board; "
    "not a treatment order and not a medical device output."
)


@dataclass(frozen=True)
class Pathway:
    task: str
    type: str
    stage: str | None
    summary: str
    options: list[str]
    source: str  # guideline name, version and year in one line

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["notice"] = PATHWAY_NOTICE
        return d


@lru_cache(maxsize=1)
def table() -> dict[tuple[str, str, str], Pathway]:
    """The whole table keyed by (task, type, stage); stage '' where the task has no stage output."""
    rows: dict[tuple[str, str, str], Pathway] = {}
    with open(TABLE_PATH, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            key = (r["task"], r["type"], r["stage"])
            if key in rows:
                raise ValueError(f"Duplicate treatment row {key} in {TABLE_PATH.name}")
            version, year = r["guideline_version"], r["guideline_year"]  # "2024 (2024)" read twice: the year once
            dated = version if year in version else f"{version} ({year})"
            source = f"{r['guideline']} - {dated}; {r['status']}"
            rows[key] = Pathway(
                task=r["task"],
                type=r["type"],
                stage=r["stage"] or None,
                summary=r["summary"],
                options=[o.strip() for o in r["options"].split(";") if o.strip()],
                source=source,
            )
    return rows


def pathway(task: str, tumor_type: str, stage: str | None = None) -> Pathway:
    """The pathway for a model output; a missing row is a bug in the table, so it raises KeyError."""
    key = (task, tumor_type, stage or "")
    try:
        return table()[key]
    except KeyError:
        raise KeyError(f"No treatment row for task={task!r}, type={tumor_type!r}, stage={stage!r}") from None


def pathway_stage(task: str, tumor_type: str, stage: str | None, size_category: dict | None) -> str | None:
    """The stage key of the pathway: a size category (breast T1-T3) where the table has a row for it, else ``stage``."""
    label = (size_category or {}).get("label")
    if label and (task, tumor_type, str(label)) in table():
        return str(label)
    return stage
