"""The tidy metrics log: appended by the app and the CLI side by side, it keeps one header and whole rows."""

from __future__ import annotations

import multiprocessing
import types
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from medimg_demo.eval.cache import LOG_COLUMNS, append_log

ROWS = 3000


def _append(runs: str, worker: int, times: int, start: Any) -> None:
    cfg = types.SimpleNamespace(id=f"lung_ct.w{worker}", weights_sha256="a" * 64)
    metrics = pd.DataFrame({"metric": [f"m{i}" for i in range(ROWS)], "class": "", "value": 0.5, "ci_low": 0.4,
                            "ci_high": 0.6})  # large enough for pandas to write each append in several pieces
    start.wait()
    for _ in range(times):
        append_log(Path(runs), cfg, "lung_ct", "test", metrics, "computed")  # type: ignore[arg-type]


@pytest.mark.slow  # three spawned interpreters import the package: about 9 s; .ci/run runs it
def test_runs_appending_at_once_write_one_header_and_whole_rows(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(3)
    procs = [ctx.Process(target=_append, args=(str(tmp_path), w, 4, start)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    text = (tmp_path / "metrics_log.csv").read_text()
    assert text.count("run_time_utc") == 1
    log = pd.read_csv(tmp_path / "metrics_log.csv")
    assert list(log.columns) == LOG_COLUMNS and len(log) == 3 * 4 * ROWS
    assert log.groupby("model_id").size().to_dict() == {f"lung_ct.w{w}": 4 * ROWS for w in range(3)}
    assert (log["value"] == 0.5).all() and log["metric"].str.fullmatch(r"m\d+").all()
