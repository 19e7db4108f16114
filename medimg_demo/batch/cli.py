"""The ``batch`` and ``export-onnx`` subcommands (registered by ``medimg_demo.cli``; heavy imports stay lazy)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..options import bounded

log = logging.getLogger("medimg_demo")


def _check_table(out: Path) -> None:
    """``--out`` before any work: a file name in a folder that exists; an existing file must be a batch table (the
    run adds to it), never a folder or another file (before, a traceback after every file had been scored)."""
    from ..cli_files import output_file, shown
    from ..errors import InputError

    output_file(out, [], option="--out", what="the table's file name",  # a .csv name had been given Parquet bytes
                example="results.parquet", suffixes=(".parquet",), overwrite=True)
    if out.exists():
        import pyarrow.parquet as pq

        try:
            names = set(pq.read_schema(out).names)
        except Exception:  # noqa: BLE001 - pyarrow raises ArrowInvalid (an Exception) on anything but Parquet
            names = set()
        if not {"file_key", "status", "path"} <= names:  # a Parquet file of another kind is not added to
            raise InputError(f"--out {shown(out)} exists and is not a batch table: give another file name (the "
                             "file is left as it is).")


def _cmd_batch(args: argparse.Namespace) -> int:
    from ..cli_files import output_folder
    from .pipeline import run_batch

    _check_table(args.out)
    if args.heatmaps is not None:
        output_folder(args.heatmaps, option="--heatmaps")
    try:
        summary = run_batch(args.input, args.model, args.out, heatmaps=args.heatmaps, heatmap_glob=args.heatmap_glob,
                            ray_address=args.ray_address, use_ray=not args.no_ray, concurrency=args.concurrency,
                            batch_size=args.batch_size, keep_paths=not args.no_paths, prefer_onnx=not args.torch,
                            follow_links=args.follow_links)
    except KeyboardInterrupt:  # Ctrl-C: Ray's traceback from a queue's wait had been all it said
        log.warning("Stopped by hand. The batches scored so far are kept: run the same command again to resume.")
        return 130
    from ..notice import DISCLAIMER

    print(summary.line())
    print(DISCLAIMER)  # also in the table's Parquet metadata (pipeline.NOTICE_KEY)
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from ..manifest import resolve_data_dir
    from ..models.export import export_onnx, split_inputs
    from ..models.registry import get_model, list_models

    cfgs = list_models() if args.model == "all" else [get_model(args.model)]
    for cfg in cfgs:
        data = resolve_data_dir(args.data, cfg.task)
        result = export_onnx(cfg, split_inputs(cfg, data, args.split), args.tolerance)
        print(f"{cfg.id}: {result.path.name} {result.path.stat().st_size / 1e6:.1f} MB, sha256 {result.sha256[:12]}, "
              f"max probability difference vs torch {result.max_prob_diff:.2g} over {result.n_images} {args.split} images")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``batch`` and ``export-onnx`` to the CLI's subparsers."""
    b = sub.add_parser("batch", help="score a folder of PNG/JPEG/DICOM files (recursive) into a Parquet table, on Ray")
    b.add_argument("input", metavar="INPUT", help="folder to score, or an object-store URI (s3://bucket/prefix, gs://...; "
                   "pyarrow's file systems); file names are kept as relative paths")
    b.add_argument("--model", default=None, help="model id, or 'auto' to let the gates pick the task per image")
    b.add_argument("--out", type=Path, required=True, help="the Parquet table (a rerun skips files already in it)")
    b.add_argument("--heatmaps", type=Path, default=None, help="write Grad-CAM overlays of answered images here, "
                   "named by the image hash")
    b.add_argument("--heatmap-glob", default=None, help="only for relative paths matching this pattern, e.g. 'a/*.dcm'")
    b.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: local Ray, in-process)")
    b.add_argument("--no-ray", action="store_true", help="score in this process, without Ray")
    b.add_argument("--concurrency", type=bounded(int, 1, 1024), default=None, help="Ray actors, each loading the "
                   "model once and running ONNX Runtime on its share of the cores (default: one per core locally, 1 "
                   "on a cluster)")
    b.add_argument("--batch-size", type=bounded(int, 1, 100_000), default=32)
    b.add_argument("--follow-links", action="store_true", help="follow symbolic links to folders and out of INPUT "
                   "(default: skipped and counted; a link to a file inside INPUT is always scored)")
    b.add_argument("--no-paths", action="store_true", help="leave the path column empty (file names may carry PHI)")
    b.add_argument("--torch", action="store_true", help="use the torch forward even where an ONNX forward is pinned")
    b.set_defaults(func=_cmd_batch)
    e = sub.add_parser("export-onnx", help="export a model's forward to ONNX, verified against torch on its test split")
    e.add_argument("--model", default=None, help="model id, or 'all' (default: the registry's default)")
    e.add_argument("--data", default=None, help="the model's data set folder (default: <data root>/<task>)")
    e.add_argument("--split", default="test")
    e.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed probability difference")
    e.set_defaults(func=_cmd_export_onnx)
