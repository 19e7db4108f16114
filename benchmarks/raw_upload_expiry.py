"""Expiring unused raw uploads, and finding one among them, with many pending: the former way (every entry of
Gradio's set resolved for each upload looked up: quadratic when expiring) against ``uploads.spellings`` and
``uploads.expire_raw_uploads`` (entries matched by their folder and name first, resolved once a pass), side by side.

A live hostile run left 14,000 unused uploads; the app's reaper then spent 20 minutes at 96% of a core removing them.

Usage: python benchmarks/raw_upload_expiry.py [--n 3000]
Prints the time of one lookup and of expiring all ``--n`` uploads, each way, and their ratios.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medimg_demo.web import uploads  # noqa: E402


def _pending(root: str, n: int) -> set[str]:
    made = set()
    for _ in range(n):
        folder = os.path.join(root, secrets.token_hex(32))
        os.mkdir(folder)
        path = os.path.join(folder, "uuuu.dcm")  # masked names are alike: the folder tells uploads apart
        open(path, "wb").close()
        made.add(path)
    return made


def _former_lookup(uploaded: set[str], path: str) -> list[str]:
    target = os.path.realpath(path)
    return [p for p in list(uploaded) if os.path.realpath(p) == target]


def _former_expire(uploaded: set[str]) -> int:
    removed = 0
    for p in list(uploaded):  # each expired entry scanned the whole set again
        os.unlink(p)
        for q in _former_lookup(uploaded, p):
            uploaded.discard(q)
        removed += 1
    return removed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="pending uploads (default 3000)")
    args = ap.parse_args()
    results = {}
    for way, lookup, expire in (("former", _former_lookup, _former_expire),
                                ("now", uploads.spellings, lambda s: uploads.expire_raw_uploads(s, ttl_s=-1))):
        with tempfile.TemporaryDirectory() as root:
            pending = _pending(root, args.n)
            probe = sorted(pending)[len(pending) // 2]
            t0 = time.perf_counter()
            for _ in range(20):
                assert len(lookup(pending, probe)) == 1
            one = (time.perf_counter() - t0) / 20
            t0 = time.perf_counter()
            assert expire(pending) == args.n and not pending
            results[way] = (one, time.perf_counter() - t0)
    for way, (one, all_) in results.items():
        print(f"{way:7} one lookup among {args.n}: {one * 1000:7.2f} ms; expiring all {args.n}: {all_:7.2f} s")
    (f1, fa), (n1, na) = results["former"], results["now"]
    print(f"ratio: lookup {f1 / n1:.0f}x, expiry {fa / na:.0f}x faster now")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
