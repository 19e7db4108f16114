"""The batch run over a folder: list, skip what the table already holds, score on Ray Data (or in-process),
write one Parquet part per batch as it arrives, and merge the parts into the table at the end.

A killed run loses only the batches in flight: the parts already written are merged by the next run, and every
file whose key (relative path, size, modification time) is in the table or a part is skipped, unless its row was
written by other weights, calibration or gate (``scored_with``) or the file could not be read: those are scored
again, and the newest row of a file wins.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InputError
from .listing import _filesystem, list_files
from .quarantine import DecodeMarks, check_folder, clear, marks_dir
from .ray_run import run_on_ray
from .score import COLUMNS, UNREADABLE, BatchScorer, scored_models, scorer_state

log = logging.getLogger(__name__)

#: Default actors of a local run: one per core up to this many (each holds a model and its decoded batch).
MAX_LOCAL_ACTORS = 4


@dataclass
class BatchSummary:
    """What a run did: rows written per status, files skipped as already done, and its speed."""

    counts: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    rescored: int = 0  # files in the table whose rows another model state (weights, calibration, gate) wrote
    seconds: float = 0.0
    forwards: dict[str, str] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        per = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "nothing new"
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        again = (f" (of them {self.rescored} scored again: their rows came from other weights, calibration or "
                 "gate, or predate that record)") if self.rescored else ""
        return (f"{self.done} files scored ({per}){again}; {self.skipped} skipped as already in the table; "
                f"{self.seconds:.1f} s, {rate:.1f} images/s")


def parts_dir(out: Path) -> Path:
    """Per-batch part files of a run in progress, beside the table."""
    return out.with_name(out.name + ".parts")


def read_blob(path: str, limit: int | None = None) -> bytes:
    """The bytes of one listed file (local path or object-store URI); with ``limit``, at most ``limit`` + 1 of them
    (enough to tell a file over the limit, whatever its listed size said)."""
    n = None if limit is None else limit + 1
    if "://" not in path:  # the listed real path: a link put in its place since is refused (ELOOP), a FIFO unblocked
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise OSError(f"not a regular file ({stat.filemode(os.fstat(f.fileno()).st_mode)[0]})")
            opened = Path(f"/proc/self/fd/{f.fileno()}")
            if opened.exists() and os.readlink(opened) != path:  # a folder above it swapped for a link since
                raise OSError("the file moved since it was listed")
            return f.read(-1 if n is None else n)
    filesystem, inner = _filesystem(path)
    with filesystem.open_input_stream(inner) as f:
        return f.read(n)


def bounded_reader(path: str, size: int) -> Callable[[], bytes | None]:
    """A file's bytes, read when the scorer gets to it (one raw file in memory at a time): a file listed, or read,
    over MAX_BYTES is refused without being read whole; None: it could not be read (an 'unreadable' row)."""
    from ..imaging.decode import MAX_BYTES, too_large

    def read() -> bytes | None:
        if size > MAX_BYTES:
            raise too_large(size)
        try:
            data = read_blob(path, MAX_BYTES)
        except OSError:
            return None
        if len(data) > MAX_BYTES:
            raise too_large()
        return data

    return read


#: How a read failure's row began before it had a status of its own (an 'error' row, then never retried): "The file
#: could not be read (permissions); ..." and later "... (permissions or a storage error); ...".
_OLD_READ_FAILURE = "The file could not be read (permissions"


def _read_keys(out: Path, state: str) -> tuple[set[str], set[str]]:
    """(keys of files done, keys of files whose rows another model state wrote), judged on each file's newest row
    in the table and its parts (the row ``merge`` keeps). A row is done if the current models wrote it
    (``scored_with`` equals ``state``) or the file itself could not be decoded. Rows of other weights, calibration
    or gate, and of tables written before ``scored_with`` existed, are scored again (the second set); files that
    could not be read are retried."""
    import pyarrow.parquet as pq

    newest: dict[str, tuple[str, object]] = {}
    for f in ([out] if out.is_file() else []) + sorted(parts_dir(out).glob("*.parquet")):  # merge's order
        names = set(pq.read_schema(f).names)
        rows = pd.read_parquet(f, columns=[c for c in ("file_key", "status", "scored_with", "reason") if c in names])
        states = rows["scored_with"] if "scored_with" in rows else [None] * len(rows)
        status = rows["status"].astype(str)
        if "reason" in rows:  # read failures of tables written before 'unreadable' existed are retried too
            status = status.mask((status == "error") & rows["reason"].astype(str).str.startswith(_OLD_READ_FAILURE),
                                 UNREADABLE)
        newest.update({str(k): (st, sw) for k, st, sw in zip(rows["file_key"], status, states)})
    done = {k for k, (st, sw) in newest.items() if st == "error" or (st != UNREADABLE and sw == state)}
    stale = {k for k, (st, _) in newest.items() if k not in done and st != UNREADABLE}
    return done, stale


def _write_part(out: Path, frame: pd.DataFrame) -> None:
    folder = parts_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = final.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, final)  # a part is whole or absent


#: The key of the research-use notice in the table's Parquet metadata: a table passed on carries it.
NOTICE_KEY = b"medimg_demo.notice"


def _write_table(table: pd.DataFrame, path: Path) -> None:
    """``table`` as Parquet, with the research-use notice in its file metadata (beside pandas' own)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..notice import DISCLAIMER

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    pq.write_table(arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), NOTICE_KEY: DISCLAIMER.encode()}),
                   path)


def merge(out: Path, drop_paths: bool = False) -> int:
    """Fold the part files into the table (the newest row per file key wins); returns the table's row count.
    ``drop_paths`` (``--no-paths``): no row keeps a file name, an earlier run's neither (they had stayed)."""
    parts = sorted(parts_dir(out).glob("*.parquet"))
    named_before = drop_paths and out.is_file() and pd.read_parquet(out, columns=["path"])["path"].notna().any()
    if not parts and not named_before:  # nothing to add (a table of an earlier version gains its notice next time)
        return len(pd.read_parquet(out, columns=["file_key"])) if out.is_file() else 0
    frames = ([pd.read_parquet(out)] if out.is_file() else []) + [pd.read_parquet(p) for p in parts]
    table = pd.concat(frames, ignore_index=True).drop_duplicates("file_key", keep="last")
    named = table["path"].notna()  # a file changed since its row was written: only its newest row stays
    table = pd.concat([table[named].drop_duplicates("path", keep="last"), table[~named]], ignore_index=True)
    if drop_paths and table["path"].notna().any():
        log.info("--no-paths: %d file names an earlier run wrote removed from the table", table["path"].notna().sum())
        table["path"] = None
    tmp = out.with_name(out.name + ".tmp")
    _write_table(table, tmp)
    os.replace(tmp, out)
    for p in parts:
        p.unlink()
    if parts:
        parts_dir(out).rmdir()
    return len(table)


class PredictorActor:
    """A Ray Data actor: loads the model(s) once, then reads and scores whole batches of listed files (and writes
    asked-for heatmaps). A batch holds the listing's columns (path, rel, key, size), not the bytes: files are read
    here, in the actor's process, so the driver never holds them and no read stage is needed."""

    def __init__(self, model: str | None, registry: str | None = None, heatmaps: str | None = None,
                 heatmap_glob: str | None = None, prefer_onnx: bool = True, keep_paths: bool = True,
                 threads: int | None = None, marks: str | None = None) -> None:
        self.scorer = BatchScorer(model, prefer_onnx=prefer_onnx, registry=Path(registry) if registry else None,
                                  threads=threads)
        self.marks = DecodeMarks(marks) if marks else None  # None on a cluster: the folder is the driver's
        self.keep_paths = keep_paths
        self.heatmaps, self.glob = (Path(heatmaps) if heatmaps else None), heatmap_glob

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        base = [{"path": rel, "file_key": key, "size_bytes": int(size)}
                for rel, key, size in zip(batch["rel"], batch["key"], batch["size"])]
        # read one by one as they are decoded: an 'unreadable' row lets the run go on (the next run retries it)
        blobs = [bounded_reader(str(path), int(size)) for path, size in zip(batch["path"], batch["size"])]
        rows, studies = self.scorer.score(blobs, base, self.marks)
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


def run_batch(input_dir: str | Path, model: str | None, out: Path, *, heatmaps: Path | None = None,
              heatmap_glob: str | None = None, ray_address: str | None = None, use_ray: bool = True,
              concurrency: int | None = None, batch_size: int = 32, keep_paths: bool = True,
              registry: Path | None = None, prefer_onnx: bool = True, follow_links: bool = False) -> BatchSummary:
    """Score every new file under ``input_dir`` (a folder or an object-store URI such as ``s3://bucket/prefix``)
    into the Parquet table ``out``; see the module docstring (and :mod:`.listing` for ``follow_links``)."""
    start = time.perf_counter()
    check_folder(out)  # a link or a file in the marks folder's place is refused before any work
    summary = BatchSummary()
    # a wrong id is a ModelError here, not a Ray actor that fails and retries without end
    state = scorer_state(scored_models(model, registry))
    own = (out, out.with_name(out.name + ".tmp"), parts_dir(out), marks_dir(out),
           *([heatmaps] if heatmaps is not None else []))
    files = list_files(input_dir, exclude=own, follow_links=follow_links)
    done, stale = _read_keys(out, state)
    todo = [f for f in files if f[3] not in done]
    summary.skipped = len(files) - len(todo)
    log.info("%d files found, %d of them already in the table: scoring %d", len(files), summary.skipped, len(todo))
    summary.rescored = sum(f[3] in stale for f in todo)
    if summary.rescored:
        log.info("%d files of the table were scored by other weights, calibration or gate (or before rows recorded "
                 "it): scoring them again",
                 summary.rescored)
    kwargs = dict(model=model, registry=str(registry) if registry else None,
                  heatmaps=str(heatmaps) if heatmaps else None, heatmap_glob=heatmap_glob, prefer_onnx=prefer_onnx,
                  keep_paths=keep_paths, marks=None if ray_address and use_ray else str(marks_dir(out)))
    listing = pd.DataFrame(todo, columns=["path", "rel", "size", "key"])
    _score(listing, kwargs, out, summary, ray_address, use_ray, concurrency, batch_size)
    merge(out, drop_paths=not keep_paths)
    clear(out)  # every listed file has its row: no decode mark is needed any more
    summary.seconds = time.perf_counter() - start
    return summary


def _score(listing: pd.DataFrame, kwargs: dict[str, Any], out: Path, summary: BatchSummary, ray_address: str | None,
           use_ray: bool, concurrency: int | None, batch_size: int) -> None:
    """Score the listed files on Ray (or in this process), each batch written as a part as it arrives."""
    if len(listing) and use_ray:
        # locally: one actor per core, each running ONNX Runtime on one thread, so that one actor decodes while the
        # other runs its forward (measured: benchmarks/batch_throughput.py --actors 1,2); on a cluster Ray places them
        cores = os.cpu_count() or 1
        concurrency = concurrency or (1 if ray_address else min(cores, MAX_LOCAL_ACTORS))
        kwargs["threads"] = None if ray_address else max(1, cores // concurrency)

        def arrived(frame: pd.DataFrame) -> None:
            _write_part(out, frame)
            summary.counts.update(frame["status"])

        run_on_ray(listing, PredictorActor, kwargs, arrived, ray_address, concurrency, batch_size)
    elif len(listing):
        actor = PredictorActor(**kwargs)  # type: ignore[arg-type]
        summary.forwards = actor.scorer.forwards
        from tqdm import tqdm

        with tqdm(total=len(listing), desc="batch (no Ray)", unit="file", mininterval=1.0) as bar:
            for i in range(0, len(listing), batch_size):
                frame = actor(listing.iloc[i:i + batch_size])
                _write_part(out, frame)
                summary.counts.update(frame["status"])
                bar.update(len(frame))

