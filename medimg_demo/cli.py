"""Command line: ``python -m medimg_demo {models,predict,report,deidentify,train,evaluate,feedback,deploy}``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .cli_files import OneLineFormatter
from .errors import MedimgError, on_the_command_line
from .learn.config import TrainConfig
from .notice import DISCLAIMER
from .options import add_options, bounded, from_args

log = logging.getLogger("medimg_demo")


def _cmd_models(args: argparse.Namespace) -> int:
    from .models.registry import get_model, list_models, task_models

    models = list_models()
    default_id = get_model().id if models else None
    served = {m.id for m in task_models()}  # what the app and auto serve per task (its default, else its first)
    rows = [{"id": m.id, "task": m.task, "labels": m.heads, "default": m.id == default_id, "default_for_task": m.default}
             for m in models]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:  # which model each task serves (the app's and auto's choice), and the labels each head names
        print(f"{'id':40s} {'task':10s} {'served':22s} labels")
        for r in rows:
            serves = ", ".join(w for w, on in (("yes", r["id"] in served), ("default --model", r["default"])) if on)
            labels = "; ".join(f"{head}: {', '.join(names)}" for head, names in r["labels"].items())
            print(f"{r['id']:40s} {r['task']:10s} {serves:22s} {labels}")
    return 0


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The training configuration a ``train`` command line asks for (model cards print such a line)."""
    from .manifest import resolve_data_dir

    data = resolve_data_dir(args.data or None, args.task)
    return from_args(TrainConfig, args, data=str(data), model_id=args.model_id or f"{args.task}.{args.arch}_v1")


def _cmd_train(args: argparse.Namespace) -> int:
    from .learn.train import train

    mc = train(train_config_from_args(args))
    scores = {k: mc.raw[k] for k in ("val_at_selection", "held_out_at_last_epoch") if k in mc.raw}
    print(json.dumps({"model": mc.id, "folder": str(mc.folder), **scores}, indent=2))
    return 0


def _evaluate_outputs(args: argparse.Namespace, data: Path) -> dict[str, Path]:
    """``--out`` and ``--cases-out`` checked as every command's output files are (``cli_files.output_file``): a CSV
    in a folder that exists, not a link, not one of the data set's own tables (``--out manifest.csv`` had replaced
    the manifest), not each other, and not an existing file without ``--overwrite``."""
    from .cli_files import output_file

    tables = list(data.rglob("*.csv")) if data.is_dir() and (args.out or args.cases_out) else []
    outs: dict[str, Path] = {}
    for key, option, example in (("out", "--out", "metrics.csv"), ("cases_out", "--cases-out", "cases.csv")):
        if getattr(args, key):
            outs[key] = output_file(Path(getattr(args, key)), [*tables, *outs.values()], option=option,
                                    what="a CSV file name", example=example, suffixes=(".csv",),
                                    overwrite=args.overwrite, inputs_are="that table")
    return outs


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import shutil

    import pandas as pd

    from .eval.cache import evaluate_cached
    from .eval.evaluate import format_table
    from .manifest import resolve_data_dir
    from .models.registry import get_model
    from .paths import runs_dir

    cfg = get_model(args.model)
    data = resolve_data_dir(args.data, cfg.task)
    outs = _evaluate_outputs(args, data)  # checked before the evaluation (minutes), as predict and report do
    runs = Path(args.runs) if args.runs else runs_dir()
    folder, source = evaluate_cached(cfg, data, args.split, runs, explain=args.explain, n_boot=args.bootstrap,
                                     seed=args.seed, force=args.force)
    metrics = pd.read_csv(folder / "metrics.csv", keep_default_na=False, na_values=[""])
    n_cases = len(pd.read_csv(folder / "cases.csv"))
    if "out" in outs:
        metrics.to_csv(outs["out"], index=False)
    if "cases_out" in outs:
        try:
            shutil.copyfile(folder / "cases.csv", outs["cases_out"])
        except shutil.SameFileError:  # --cases-out named the cached table itself: it already holds the cases
            pass
    print(f"{cfg.id} on {data.name}/{args.split} ({n_cases} images; {source}: {folder})")
    print(format_table(metrics))
    if args.card:
        from .eval.card import write

        command = f"python -m medimg_demo evaluate --model {cfg.id} --split {args.split}" + (" --explain" if args.explain else "") + " --card"
        log.info("Wrote %s", write(cfg, metrics, args.split, n_cases, command, results=folder))
    return 0


def _feedback_files(args: argparse.Namespace) -> tuple[object, Path | None]:
    """The store named by ``--db`` (a SQLite file that exists and is one, or a URL) and ``--out`` checked as every
    command's output files are: ``export --db store.sqlite --out store.sqlite`` had replaced the whole feedback
    database with its CSV, and any existing file was overwritten without a word."""
    from . import feedback
    from .cli_files import output_file, shown
    from .errors import InputError
    from .paths import feedback_store

    db = feedback.existing_location(args.db or None)  # SQLite file or postgresql:// URL; None: env, else default
    where = feedback_store() if db is None else db  # the default store is protected from --out as well
    local = None if feedback.is_url(where) else Path(where)
    if args.db and local is not None:
        try:
            with open(local, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise InputError(f"--db {shown(local)} cannot be read ({exc.strerror or type(exc).__name__}).") from None
        if head and head != b"SQLite format 3\x00":
            raise InputError(f"--db {shown(local)} is not a feedback store (a SQLite file): give the app's "
                             "feedback.sqlite, or a postgresql:// URL.")
    stores = [] if local is None else [local, *(local.with_name(local.name + x) for x in ("-wal", "-shm", "-journal"))]
    out = None if not args.out else output_file(Path(args.out), stores, option="--out", what="a CSV file name",
                                                example="feedback.csv", suffixes=(".csv",), overwrite=args.overwrite,
                                                inputs_are="the feedback store")
    return db, out


def _cmd_feedback(args: argparse.Namespace) -> int:
    from . import feedback

    db, out = _feedback_files(args)
    if args.action == "export":
        if out is None:
            log.error("feedback export needs --out FILE.csv")
            return 2
        n = feedback.export_csv(db, out)
        log.info("Exported %d rows to %s", n, out)
        return 0
    summary = feedback.summarise(feedback.read_all(db))
    if out is not None:
        feedback.write_csv(summary, out)  # session names are typed by readers: formulas neutralised
    # as objects: a transposed table of counts and rates had printed every count as a float (1.0)
    print(summary.round(3).astype(object).set_index("session_id").T.to_string() if len(summary) else "no feedback yet")
    return 0


def _cmd_deidentify(args: argparse.Namespace) -> int:
    """Write a PS3.15 Annex E de-identified copy; warnings are logged, attribute values and the input name never."""
    from .cli_files import input_file, output_file
    from .imaging.deid import deidentify_file

    output_file(args.out, [args.path], option="--out", what="the copy's file name",
                example="deidentified.dcm", overwrite=args.overwrite)
    result = deidentify_file(input_file(args.path), args.out)
    for warning in result.warnings:
        log.warning("%s", warning)
    if not result.has_pixels:
        log.warning("The copy holds no pixel data: the file had none (a header-only export, a JPIP-referenced file, "
                    "or a file cut short before its pixels).")
    log.info("De-identified copy written (Patient Identity Removed: %s)", "YES" if result.identity_removed else "NO")
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    from .deploy import deploy, plan

    if args.dry_run:
        print("\n".join(plan(args.space, oauth=args.oauth)))
        return 0
    print(deploy(args.space, private=args.private, oauth=args.oauth))
    return 0


def _cmd_gate(args: argparse.Namespace) -> int:
    from .eval.gate_report import fit_gate
    from .manifest import resolve_data_dir
    from .models.registry import get_model
    from .paths import data_root

    cfg = get_model(args.model)
    report = fit_gate(cfg, resolve_data_dir(args.data, cfg.task), data_root(), method=args.method, seed=args.seed)
    print(report.ood[report.ood["set"].isin(["in-distribution", "all OOD"])].round(4).to_string(index=False))
    print(report.selective.round(4).to_string(index=False))
    print(f"{cfg.id}: gate {report.method}, threshold {report.threshold:.4g}, abstain below {report.abstain_below:.3f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medimg_demo", description=f"medimg_demo command line. {DISCLAIMER}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)

    m = sub.add_parser("models", help="list the models in the registry")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_cmd_models)
    from .cli_predict import add_commands as add_predict_commands  # predict, report

    add_predict_commands(sub)

    t = sub.add_parser("train", help="fine-tune a pretrained backbone on a data set folder and write models/<id>/")
    add_options(t, TrainConfig)
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="metrics with 95%% intervals on a manifest split")
    e.add_argument("--model", default=None, help="model id, as `models` lists them (default: the registry's default)")
    e.add_argument("--data", default=None, help="data set folder (default: the model's task folder under the data root)")
    e.add_argument("--split", default="test", help="the manifest's split to measure (default test; val, train or "
                   "another the manifest names)")
    e.add_argument("--out", default=None, help="metrics CSV (metric, class, value, ci_low, ci_high); its folder must "
                   "exist")
    e.add_argument("--cases-out", default=None, help="per-image predictions CSV; its folder must exist")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out or --cases-out file")
    e.add_argument("--bootstrap", type=bounded(int, 10, 100_000), default=1000,
                   help="bootstrap resamples for the intervals of AUC, F1 and ECE (default 1000)")
    e.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    e.add_argument("--card", action="store_true", help="also copy the results to models/<id>/metrics/ and write MODEL_CARD.md")
    e.add_argument("--explain", action="store_true", help="also measure heatmap quality (localisation, deletion/insertion, sanity)")
    e.add_argument("--runs", default=None, help="runs folder for the cache and metrics log (default: $MEDIMG_RUNS_DIR or var/runs)")
    e.add_argument("--force", action="store_true", help="recompute even if a cached evaluation exists")
    e.set_defaults(func=_cmd_evaluate)
    g = sub.add_parser("gate", help="fit a model's out-of-distribution gate (train), thresholds (val), measure (test)")
    g.add_argument("--model", default=None, help="model id (default: the registry's default)")
    g.add_argument("--data", default=None, help="the model's data set folder (default: <data root>/<task>)")
    g.add_argument("--method", default="auto", help="auto (best on val), mahalanobis, knn, energy or msp")
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=_cmd_gate)
    f = sub.add_parser("feedback", help="export or summarise the clinician feedback store")
    f.add_argument("action", choices=["export", "summary"])
    f.add_argument("--db", default=None, metavar="PATH_OR_URL",
                   help="SQLite file or postgresql:// URL (default: the app's store: $MEDIMG_DB_URL, else "
                        "$MEDIMG_FEEDBACK_DB, else feedback.sqlite in $MEDIMG_STATE_DIR, else on a Space's "
                        "/data volume, else var/feedback.sqlite)")
    f.add_argument("--out", default=None, help="CSV to write (required for export; its folder must exist)")
    f.add_argument("--overwrite", action="store_true", help="replace an existing --out file (never the store)")
    f.set_defaults(func=_cmd_feedback)

    di = sub.add_parser("deidentify", help="write a de-identified copy of a DICOM file (PS3.15 Annex E basic profile)")
    di.add_argument("path", type=Path, metavar="IN", help="the DICOM file (never changed)")
    di.add_argument("--out", type=Path, required=True, help="where to write the de-identified copy (its folder must "
                    "exist)")
    di.add_argument("--overwrite", action="store_true", help="replace an existing --out file (never the input)")
    di.set_defaults(func=_cmd_deidentify)

    d = sub.add_parser("deploy", help="upload app, package, models, requirements, README to a HF Space")
    d.add_argument("--space", required=True, help="the Space, OWNER/NAME (created if missing)")
    d.add_argument("--private", action="store_true", help="create the Space private (refuse an existing public one)")
    d.add_argument("--oauth", action="store_true", help="upload the README with hf_oauth: true (Hugging Face logins)")
    d.add_argument("--dry-run", action="store_true", help="print the files to upload, one per line; no network")
    d.set_defaults(func=_cmd_deploy)
    from .batch.cli import add_commands  # batch, export-onnx
    from .learn.cli import add_commands as add_learn_commands  # calibrate

    add_commands(sub)
    add_learn_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    try:
        return int(args.func(args))
    except MedimgError as exc:
        log.error("%s", on_the_command_line(str(exc)))  # the decoders' refusals are worded for the app
        return 2
