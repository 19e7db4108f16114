"""What the decode marks add to batch scoring: the batch scorer over the same files without marks and with them (a
mark written, replaced and removed around each file's read and decode), interleaved batch by batch, so that a change
in the machine's load moves both alike. The marks go in a new folder under ``--marks-dir`` (default: the system's
temporary folder); give the folder the table will be in, which may be slower (a network share).

    python benchmarks/decode_marks.py /tmp/mixed1000 --model brain_mri.tf_efficientnet_lite1_v2 [--files 320]

Prints the median ms per file of each and their ratio. Timing lives here, not in pytest.
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

from medimg_demo.batch.listing import list_files  # noqa: E402
from medimg_demo.batch.pipeline import bounded_reader  # noqa: E402
from medimg_demo.batch.quarantine import DecodeMarks  # noqa: E402
from medimg_demo.batch.score import BatchScorer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input", type=Path)
    p.add_argument("--model", default=None)
    p.add_argument("--files", type=int, default=320)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--marks-dir", type=Path, default=None, help="where the marks' folder is made")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    files = list_files(args.input)[: args.files]
    scorer = BatchScorer(args.model, threads=1)
    marks = DecodeMarks(Path(tempfile.mkdtemp(prefix="marks_bench_", dir=args.marks_dir)))
    per_file: dict[str, list[float]] = {"without marks": [], "with marks": []}
    for i in range(0, len(files), args.batch):
        chunk = files[i:i + args.batch]
        base = [{"path": rel, "file_key": key, "size_bytes": size} for _, rel, size, key in chunk]
        order = [("without marks", None), ("with marks", marks)]
        for name, m in order if (i // args.batch) % 2 == 0 else order[::-1]:
            blobs = [bounded_reader(path, size) for path, _, size, _ in chunk]
            start = time.perf_counter()
            scorer.score(blobs, base, m)
            per_file[name].append((time.perf_counter() - start) * 1000 / len(chunk))
    plain, marked = (statistics.median(v) for v in per_file.values())
    print(f"{len(files)} files in batches of {args.batch}, model {args.model or 'default'} ({scorer.forwards}), "
          f"marks in {marks.folder.parent}")
    print(f"without marks {plain:.2f} ms/file | with marks {marked:.2f} ms/file | ratio {marked / plain:.3f} "
          "(medians over batches)")


if __name__ == "__main__":
    main()
