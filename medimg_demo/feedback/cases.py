"""Reading sessions: a fixed, seeded list of test cases that every reader of a session reads in the same order."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, MedimgError
from ..manifest import read_manifest, split_frame
from ..models.registry import get_model

#: Bounds of a session's size and seed (the page offers 1-200 cases; a seed is stored as a 32-bit integer).
MAX_CASES = 200
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class Case:
    case_id: str  # "<task>/<split>/<image path>" - a data set path, never patient data
    path: Path
    label: str
    stage: str | None


def case_list(data_dir: Path, task: str, n_cases: int = 20, seed: int = 0, split: str = "test") -> list[Case]:
    """``n_cases`` cases drawn class by class in turn (as even as the classes allow), shuffled with ``seed``."""
    df = split_frame(read_manifest(data_dir), split)
    rng = random.Random(seed)
    pools = {label: sorted(g["image"].tolist()) for label, g in df.groupby("label")}
    for images in pools.values():
        rng.shuffle(images)
    picked: list[str] = []
    labels = sorted(pools)
    while len(picked) < min(n_cases, len(df)):
        for label in labels:
            if pools[label] and len(picked) < n_cases:
                picked.append(pools[label].pop())
    rng.shuffle(picked)
    by_image = df.set_index("image")
    cases = []
    for image in picked:
        row = by_image.loc[image]
        stage = str(row["stage"]) if "stage" in by_image.columns and row["stage"] else None
        cases.append(Case(case_id=f"{task}/{split}/{image}", path=data_dir / image, label=str(row["label"]), stage=stage))
    return cases


def session_size(data_root: Path, model_id: str, n_cases: int) -> int:
    """How many cases a session of ``n_cases`` with this model has: as many as asked for, or as the test split of the
    model's task holds where that is fewer (a 200-case lung session has 125). Where the model or its data are gone,
    the number asked for."""
    try:
        return min(n_cases, _test_split_size(Path(data_root) / get_model(model_id).task))
    except (MedimgError, OSError):
        return n_cases


@functools.lru_cache(maxsize=8)
def _test_split_size(folder: Path) -> int:
    return len(split_frame(read_manifest(folder), "test"))


def check_parameters(n_cases: int, seed: int) -> None:
    """Refuse a session size or seed out of bounds (an API client may send any whole number)."""
    if not 1 <= n_cases <= MAX_CASES:
        raise InputError(f"A session reads 1 to {MAX_CASES} cases; {n_cases} were asked for.")
    if not 0 <= seed <= MAX_SEED:
        raise InputError(f"The seed must be a whole number from 0 to {MAX_SEED:,}.")


def mismatch(started: dict[str, object], model_id: str, n_cases: int, seed: int,
             model_name: Callable[[str], str | None] = lambda _: None) -> InputError | None:
    """The refusal of a start whose model, size or seed differ from those the session was first started with (a
    second study pooled into the first one's table), or None. ``model_name``: the model as the page lists it."""
    stored = (started["model_id"], int(started["n_cases"]), int(started["seed"]))  # type: ignore[call-overload]
    if stored == (model_id, n_cases, seed):
        return None
    model = str(started["model_id"])
    shown = f"{name} ({model})" if (name := model_name(model)) else model
    return InputError(f"This session was started with the model {shown}, {started['n_cases']} cases and seed "
                      f"{started['seed']}: choose those to join it, or give a new session a name of its own.")
