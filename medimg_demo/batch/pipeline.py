"""The batch run over a folder: list, skip what the table already holds, score on Ray Data (or in-process),
write one Parquet part per batch as it arrives, and merge the parts into the table at the end.

A killed run loses only the batches in flight: the parts already written are merged by the next run, and every
file whose key (relative path, size, modification time) is in the table or a part is skipped.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InputError
from .score import COLUMNS, BatchScorer

log = logging.getLogger(__name__)


@dataclass
class BatchSummary:
    """What a run did: rows written per status, files skipped as already done, and its speed."""

    counts: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    seconds: float = 0.0
    forwards: dict[str, str] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        per = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "nothing new"
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.done} files scored ({per}); {self.skipped} skipped as already in the table; "
                f"{self.seconds:.1f} s, {rate:.1f} images/s")


def parts_dir(out: Path) -> Path:
    """Per-batch part files of a run in progress, beside the table."""
    return out.with_name(out.name + ".parts")


def list_files(root: Path) -> list[tuple[Path, str, int, str]]:
    """Every non-hidden file under ``root`` (recursive; format sniffed later): (path, relative, size, key)."""
    if not root.is_dir():
        raise InputError("The batch input must be a folder of PNG, JPEG or DICOM files; it does not exist.")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            st = path.stat()
            rel = path.relative_to(root).as_posix()
            key = hashlib.sha256(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32]
            found.append((path, rel, st.st_size, key))
    return found


def _read_keys(out: Path) -> set[str]:
    keys: set[str] = set()
    for f in ([out] if out.is_file() else []) + sorted(parts_dir(out).glob("*.parquet")):
        keys.update(pd.read_parquet(f, columns=["file_key"])["file_key"].astype(str))
    return keys


def _write_part(out: Path, frame: pd.DataFrame) -> None:
    folder = parts_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = final.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, final)  # a part is whole or absent


def merge(out: Path) -> int:
    """Fold the part files into the table (the newest row per file key wins); returns the table's row count."""
    parts = sorted(parts_dir(out).glob("*.parquet"))
    if not parts:
        return len(pd.read_parquet(out, columns=["file_key"])) if out.is_file() else 0
    frames = ([pd.read_parquet(out)] if out.is_file() else []) + [pd.read_parquet(p) for p in parts]
    table = pd.concat(frames, ignore_index=True).drop_duplicates("file_key", keep="last")
    named = table["path"].notna()  # a file changed since its row was written: only its newest row stays
    table = pd.concat([table[named].drop_duplicates("path", keep="last"), table[~named]], ignore_index=True)
    tmp = out.with_name(out.name + ".tmp")
    table.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    for p in parts:
        p.unlink()
    parts_dir(out).rmdir()
    return len(table)


class PredictorActor:
    """A Ray Data actor: loads the model(s) once, then scores whole batches (and writes asked-for heatmaps)."""

    def __init__(self, model: str | None, meta: dict[str, dict[str, Any]], registry: str | None = None,
                 heatmaps: str | None = None, heatmap_glob: str | None = None, prefer_onnx: bool = True,
                 keep_paths: bool = True) -> None:
        self.scorer = BatchScorer(model, prefer_onnx=prefer_onnx, registry=Path(registry) if registry else None)
        self.meta, self.keep_paths = meta, keep_paths
        self.heatmaps, self.glob = (Path(heatmaps) if heatmaps else None), heatmap_glob

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        base = [dict(self.meta[str(p)]) for p in batch["path"]]
        rows, studies = self.scorer.score(list(batch["bytes"]), base)
        if self.heatmaps is not None:
            for row, study in zip(rows, studies):
                if row["status"] == "ok" and (self.glob is None or fnmatch.fnmatch(row["path"], self.glob)):
                    _heatmap(self.heatmaps, row, study, self.scorer.configs[row["model_id"]])
        if not self.keep_paths:
            for row in rows:
                row["path"] = None
        return pd.DataFrame(rows, columns=list(COLUMNS))


def _heatmap(folder: Path, row: dict[str, Any], study: Any, cfg: Any) -> None:
    """Captum Grad-CAM of the shown class, as the app computes it, saved as <image sha256>.png (never the name)."""
    from PIL import Image

    from ..explain.overlay import overlay
    from ..predict import get_predictor

    pred = get_predictor(cfg).run(study, explain=True, target=row["type_label"])
    if pred.heatmap is not None:
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(overlay(pred.image, pred.heatmap)).save(folder / f"{row['image_sha256']}.png")


def run_batch(input_dir: Path, model: str | None, out: Path, *, heatmaps: Path | None = None,
              heatmap_glob: str | None = None, ray_address: str | None = None, use_ray: bool = True,
              concurrency: int = 1, batch_size: int = 32, keep_paths: bool = True, registry: Path | None = None,
              prefer_onnx: bool = True) -> BatchSummary:
    """Score every new file under ``input_dir`` into the Parquet table ``out``; see the module docstring."""
    start = time.perf_counter()
    summary = BatchSummary()
    files = list_files(input_dir)
    done = _read_keys(out)
    todo = [f for f in files if f[3] not in done]
    summary.skipped = len(files) - len(todo)
    unreadable = [f for f in todo if not os.access(f[0], os.R_OK)]
    if unreadable:  # an error row each; the run goes on with the rest
        todo = [f for f in todo if f not in unreadable]
        frame = pd.DataFrame([{c: None for c in COLUMNS} | {"path": rel if keep_paths else None, "file_key": key,
                               "size_bytes": size, "status": "error", "reason": "The file could not be read "
                               "(permissions); make it readable and run again."} for _, rel, size, key in unreadable],
                             columns=list(COLUMNS))
        _write_part(out, frame)
        summary.counts.update(frame["status"])
    meta = {str(p): {"path": rel, "file_key": key, "size_bytes": size} for p, rel, size, key in todo}
    kwargs = dict(model=model, meta=meta, registry=str(registry) if registry else None,
                  heatmaps=str(heatmaps) if heatmaps else None, heatmap_glob=heatmap_glob, prefer_onnx=prefer_onnx,
                  keep_paths=keep_paths)
    if todo and use_ray:
        _run_ray(todo, kwargs, out, summary, ray_address, concurrency, batch_size)
    elif todo:
        actor = PredictorActor(**kwargs)  # type: ignore[arg-type]
        summary.forwards = actor.scorer.forwards
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            frame = actor(pd.DataFrame({"path": [str(p) for p, *_ in chunk], "bytes": [p.read_bytes() for p, *_ in chunk]}))
            _write_part(out, frame)
            summary.counts.update(frame["status"])
    merge(out)
    summary.seconds = time.perf_counter() - start
    return summary


def _run_ray(todo: list[tuple[Path, str, int, str]], kwargs: dict[str, Any], out: Path, summary: BatchSummary,
             address: str | None, concurrency: int, batch_size: int) -> None:
    import ray

    started = not ray.is_initialized()
    if started and address:
        ray.init(address=address, log_to_driver=False)
    elif started:  # local, in-process: nothing to install or start by hand, nothing listening beyond this host
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.read_binary_files([str(p) for p, *_ in todo], include_paths=True)
        ds = ds.map_batches(PredictorActor, fn_constructor_kwargs=kwargs,
                            compute=ray.data.ActorPoolStrategy(size=concurrency),
                            batch_size=batch_size, batch_format="pandas", num_cpus=1)
        for frame in ds.iter_batches(batch_size=None, batch_format="pandas"):
            _write_part(out, frame)
            summary.counts.update(frame["status"])
    finally:
        if started:
            ray.shutdown()
