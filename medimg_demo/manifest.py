"""A data set folder: ``manifest.csv`` (image, label, split, ...) beside its images. pandas only, no torch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .errors import DataError
from .paths import data_root

REQUIRED_COLUMNS = ("image", "label", "split")


def resolve_data_dir(data: str | Path | None, task: str | None) -> Path:
    """A data set folder (with manifest.csv) from ``--data`` (a set folder or a root holding ``task``/)."""
    base = Path(data) if data else data_root()
    if (base / "manifest.csv").is_file():
        return base
    if task and (base / task / "manifest.csv").is_file():
        return base / task
    sets = sorted(p.parent.name for p in base.glob("*/manifest.csv")) if base.is_dir() else []
    raise DataError(
        f"No manifest.csv in {base}" + (f" or {base / task}" if task else "")
        + "; pass --data with a data set folder or set MEDIMG_DATA_DIR"
        + (f" (the data sets there: {', '.join(sets)})." if sets else ".")
    )


def read_manifest(folder: Path) -> pd.DataFrame:
    """The manifest as strings (empty cells stay empty strings); a clear DataError if it is missing or short."""
    path = folder / "manifest.csv"
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as exc:
        raise DataError(f"Cannot read {path}: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks the column(s) {missing}; it needs {list(REQUIRED_COLUMNS)} (and optionally 'stage').")
    return df


def split_frame(df: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of one split, re-indexed; a DataError naming the splits there are if it has none."""
    out = df[df["split"] == split].reset_index(drop=True)
    if out.empty:
        raise DataError(f"Split {split!r} has no rows; the manifest has splits {sorted(df['split'].unique())}.")
    return out
