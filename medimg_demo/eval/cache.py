"""Cached evaluations and the tidy metrics log (pandas).

An evaluation is cached under
``runs/cache/<model id>/<weights sha>-<calibration digest>-<manifest sha>-<split>-<layer>[-boot<n>-seed<s>]``
``[-<checks version>-explain]/``; a re-run with the same weights, calibration, data and options reads the cache. Every run (computed or cached) appends its rows to
``runs/metrics_log.csv``: run time, model id, weights sha256, data set, split, metric, class, value,
interval, source. The app only reads caches; it never evaluates a test set on a page load. A folder is written
beside its place and renamed into it whole, so a killed run leaves nothing the cache would take as finished.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..models.config import ModelConfig
from ..probability_text import two_decimals
from ..tasks import get_task
from .evaluate import evaluate
from .gallery import write_gallery

log = logging.getLogger(__name__)

#: A hidden work folder older than this is a run that was killed: removed by the next run of that evaluation.
STALE_WORK_S = 6 * 3600
LOG_COLUMNS = ["run_time_utc", "model_id", "weights_sha256", "dataset", "split", "metric", "class", "value",
               "ci_low", "ci_high", "source"]


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def calibration_tag(cfg: ModelConfig) -> str:
    """A short digest of the model's calibration (temperatures and biases): recalibrating the same weights
    (``calibrate --write``) gives another cache folder, so no stale probabilities are shown."""
    state = json.dumps({"temperature": cfg.temperature, "bias": {h: list(b) for h, b in cfg.bias.items()}}, sort_keys=True)
    return hashlib.sha256(state.encode()).hexdigest()[:8]


#: Version of the explanation checks, part of an explained evaluation's cache key: "rand32" since the deletion and
#: insertion baseline is a random map of 32 px cells (folders computed against the pixel-random order are not read).
EXPLAIN_TAG = "rand32"
#: Version of the intervals, part of every cache key: "newcombe" since proportions carry Wilson score intervals, the
#: explanation shares (pointing hits, calls lost or kept) too, and each class's AUC Newcombe's score interval; folders
#: of percentile-bootstrap shares or AUCs ("1.00 [1.00, 1.00]" on 7 normal lung images) are not read.
METRICS_TAG = "newcombe"


def model_tag(cfg: ModelConfig) -> str:
    """Weights and calibration: the start of every cache folder name of this model (a recalibration changes the
    probabilities and the errors)."""
    return f"{(cfg.weights_sha256 or 'unpinned')[:12]}-{calibration_tag(cfg)}"


def layer_tag(cfg: ModelConfig) -> str:
    """The Grad-CAM layer in a cache folder name: explanation checks and the error gallery's heatmaps depend on it."""
    return "layer" + hashlib.sha256(cfg.target_layer.encode()).hexdigest()[:8]


def gallery_captions(folder: Path, index: pd.DataFrame, name: Callable[[str], str] = str) -> list[tuple[str, str]]:
    """(picture path, caption) of each misclassified case of a gallery ``index``; labels through ``name``."""
    return [(str(folder / r["file"]), f"true {name(r['label'])} - predicted {name(r['pred'])} "
             f"({two_decimals(r['confidence'])})") for _, r in index.iterrows()]


def cache_dir(cfg: ModelConfig, data_dir: Path, split: str, explain: bool, runs: Path, n_boot: int = 1000,
              seed: int = 0) -> Path:
    """The folder of one evaluation: keyed by the weights, calibration, manifest, split, Grad-CAM layer, the
    explanation checks' version and, where not the defaults, the bootstrap count and seed (``--bootstrap 5000`` must
    not be served the 1000-resample intervals, nor another layer the old heatmap checks)."""
    key = f"{model_tag(cfg)}-{_file_sha(data_dir / 'manifest.csv')[:12]}-{split}-{layer_tag(cfg)}-{METRICS_TAG}"
    key += "" if (n_boot, seed) == (1000, 0) else f"-boot{n_boot}-seed{seed}"
    return runs / "cache" / cfg.id / (key + (f"-{EXPLAIN_TAG}-explain" if explain else ""))


def append_log(runs: Path, cfg: ModelConfig, dataset: str, split: str, metrics: pd.DataFrame, source: str) -> Path:
    """Append one evaluation's metrics to the tidy log (created with a header on first use)."""
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / "metrics_log.csv"
    rows = metrics.copy()
    rows.insert(0, "run_time_utc", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    rows.insert(1, "model_id", cfg.id)
    rows.insert(2, "weights_sha256", cfg.weights_sha256 or "")
    rows.insert(3, "dataset", dataset)
    rows.insert(4, "split", split)
    rows["source"] = source
    with open(path, "a", newline="") as fh:  # runs of the app and the CLI append side by side: one at a time,
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # and the header only by whoever finds the file empty
        try:
            rows[LOG_COLUMNS].to_csv(fh, header=fh.seek(0, os.SEEK_END) == 0, index=False)
            fh.flush()
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return path


def evaluate_cached(cfg: ModelConfig, data_dir: Path, split: str, runs: Path, explain: bool = False,
                    n_boot: int = 1000, seed: int = 0, force: bool = False) -> tuple[Path, str]:
    """The cache folder of this evaluation, computing it only if needed. Returns (folder, 'cache' | 'computed')."""
    if split == "val":  # before the cache too: no in-sample val figures, computed or cached
        cfg.refuse_in_sample_val("evaluating", "evaluate it on test")
    folder = cache_dir(cfg, data_dir, split, explain, runs, n_boot, seed)
    metrics_path = folder / "metrics.csv"
    if metrics_path.is_file() and not force:
        append_log(runs, cfg, data_dir.name, split, pd.read_csv(metrics_path, keep_default_na=False, na_values=[""]), "cache")
        return folder, "cache"
    ev = evaluate(cfg, data_dir, split, n_boot=n_boot, seed=seed, explain=explain)
    folder.parent.mkdir(parents=True, exist_ok=True)
    for left in folder.parent.glob(f".{folder.name}.*"):  # work folders of runs killed (SIGKILL, OOM) long ago
        if left.is_dir() and time.time() - left.stat().st_mtime > STALE_WORK_S:
            shutil.rmtree(left, ignore_errors=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        ev.metrics.to_csv(work / "metrics.csv", index=False)
        ev.cases.to_csv(work / "cases.csv", index=False)
        if ev.explain_cases is not None:
            ev.explain_cases.to_csv(work / "explain_cases.csv", index=False)
        write_gallery(cfg, data_dir, ev.cases, work / "gallery")
        _publish(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    append_log(runs, cfg, data_dir.name, split, ev.metrics, "computed")
    return folder, "computed"


def _publish(work: Path, folder: Path) -> None:
    """Put a whole evaluation folder in place in one rename: a run killed while writing leaves no folder that looks
    finished (metrics but no cases or gallery, which the cache would then serve for ever), and the app never reads
    one half-written. A folder already there (``--force``, or another run that finished first) is replaced."""
    work.chmod(folder.parent.stat().st_mode & 0o777)  # mkdtemp makes it 0700; as its parent, as before
    old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
    try:
        folder.rename(old)
    except FileNotFoundError:
        pass
    try:
        os.replace(work, folder)
    except OSError:  # another run of the same evaluation put its folder there meanwhile: the same figures
        if not (folder / "metrics.csv").is_file():
            raise
        log.info("Another run finished %s first; its folder is kept.", folder.name)
    shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class Results:
    folder: Path
    metrics: pd.DataFrame
    cases: pd.DataFrame | None
    explain_cases: pd.DataFrame | None
    gallery: list[tuple[str, str]]  # (png path, caption)


def find_results(cfg: ModelConfig, runs: Path) -> Results | None:
    """The newest cached evaluation of this model's current weights (preferring one with explanations), else the
    metrics bundled in ``models/<id>/metrics``; None if neither exists. A folder being replaced (``--force``) is
    absent for an instant: the search is then made again."""
    for attempt in range(3):
        try:
            return _find_results(cfg, runs)
        except FileNotFoundError:
            if attempt == 2:
                raise
            time.sleep(0.05)
    return None


def _within(run: Path, bundled: Path, tol: float = 1e-6) -> bool:
    """Whether every figure of a cached run (plain: no explanation rows) is in the bundled metrics with the same value:
    a plain ``evaluate --split test`` of unchanged weights and calibration had replaced the bundled figures on the
    Performance tab and dropped their explanation rows (numbers review, thirty-eighth session)."""
    def figures(folder: Path) -> pd.Series:
        m = pd.read_csv(folder / "metrics.csv", keep_default_na=False, na_values=[""])
        m = m[~m["metric"].str.startswith("explain_")]
        return pd.Series(m["value"].to_numpy(dtype=float), index=pd.MultiIndex.from_frame(m[["metric", "class"]]
                                                                                        .astype(str)))
    ran, kept = figures(run), figures(bundled)
    if len(ran) == 0 or not ran.index.isin(kept.index).all():
        return False
    diff = (ran - kept.loc[ran.index]).abs()
    return bool(((diff <= tol) | (ran.isna() & kept.loc[ran.index].isna())).all())


def _find_results(cfg: ModelConfig, runs: Path) -> Results | None:
    base = runs / "cache" / cfg.id
    prefix = model_tag(cfg)
    # only this configuration's default runs (not a --bootstrap 10 trial, another layer or older explanation checks)
    tag = f"{layer_tag(cfg)}-{METRICS_TAG}"
    patterns = (f"{prefix}-*-test-{tag}", f"{prefix}-*-test-{tag}-{EXPLAIN_TAG}-explain")
    found = [p for pattern in patterns for p in base.glob(pattern)] if base.is_dir() else []
    candidates = sorted(found, key=lambda p: (p.name.endswith("-explain"), p.stat().st_mtime))
    bundled = cfg.folder / "metrics" if cfg.folder else None
    bundled = bundled if bundled and (bundled / "metrics.csv").is_file() else None
    folder = candidates[-1] if candidates else bundled
    if folder is None:
        return None
    if bundled is not None and not folder.name.endswith("-explain") and _within(folder, bundled):
        folder = bundled  # a plain run of the same figures: the bundled ones hold its rows and the explanation rows

    def read(name: str) -> pd.DataFrame | None:
        p = folder / name
        return pd.read_csv(p, keep_default_na=False, na_values=[""]) if p.is_file() else None

    index = read("gallery/index.csv")
    gallery = [] if index is None else gallery_captions(folder / "gallery", index, get_task(cfg.task).label_name)
    metrics = read("metrics.csv")
    if metrics is None:
        raise FileNotFoundError(folder / "metrics.csv")
    return Results(folder=folder, metrics=metrics, cases=read("cases.csv"), explain_cases=read("explain_cases.csv"), gallery=gallery)
