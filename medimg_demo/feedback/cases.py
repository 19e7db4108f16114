"""Reading sessions: a fixed, seeded list of test cases that every reader of a session reads in the same order."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from ..manifest import read_manifest, split_frame


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
