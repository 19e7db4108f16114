"""A reading session's own-row reads vs reading every feedback row, on a store of a busy reading room.

Usage: python benchmarks/feedback_session_reads.py [--rows 20000] [--repeat 30]

Each unaided answer checks whether this reader already answered the case from another tab, and each session start
finds where the reader left off. Both used to read the whole feedback table and filter it in pandas; they now ask
the database for the session's rows (``feedback.read_matching``, served by the ``(session_id, reader, case_id)``
index). This fills a fresh store with ``--rows`` rows (sessions of 20 cases, 10 readers, two phases) and times both
reads side by side, alternating, in one run. Prints the median milliseconds of each and their ratio.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medimg_demo import feedback  # noqa: E402
from medimg_demo.feedback import sqlite_store  # noqa: E402

log = logging.getLogger("feedback_session_reads")


def fill(db: Path, rows: int) -> None:
    """``rows`` feedback rows in one transaction (the store's own insert would take minutes at this size)."""
    feedback.open_store(db).read_all()  # creates the schema
    cols = ["created_utc", "reader", "image_sha256", "phase", "session_id", "case_id", "model_id"]
    values = [("2026-11-28T00:00:00.000+00:00", f"reader{i % 10:02d}", "a" * 64, ("unaided", "aided")[i // 10 % 2],
               f"session-{i // 400:05d}", f"case{i // 20 % 20:02d}", "lung_ct.tf_efficientnet_lite0_v2")
              for i in range(rows)]
    with sqlite_store._connection(db) as con:
        con.executemany(f"INSERT INTO feedback ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})", values)
        con.commit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "feedback.sqlite"
        fill(db, args.rows)
        want = {"session_id": "session-00007", "reader": "reader03", "case_id": "case05", "phase": "unaided"}
        full_ms, narrow_ms = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            df = feedback.read_all(db)
            for k, v in want.items():
                df = df[df[k] == v]
            full_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            got = feedback.read_matching(db, **want)
            narrow_ms.append((time.perf_counter() - t) * 1000)
            if len(got) != len(df):
                raise SystemExit(f"The two reads disagree: {len(got)} rows vs {len(df)}.")
        full, narrow = statistics.median(full_ms), statistics.median(narrow_ms)
        log.info("store: %d rows (SQLite); matching rows: %d; %d repeats", args.rows, len(got), args.repeat)
        log.info("read every row, filter in pandas: median %.1f ms", full)
        log.info("read the session's rows (read_matching): median %.2f ms", narrow)
        log.info("ratio: %.0fx", full / narrow)


if __name__ == "__main__":
    main()
