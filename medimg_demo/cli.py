"""Command line: ``python -m medimg_demo {models,predict,train,evaluate,feedback}``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import MedimgError
from .learn.config import TrainConfig
from .notice import DISCLAIMER
from .options import add_options, from_args

log = logging.getLogger("medimg_demo")


def _cmd_models(args: argparse.Namespace) -> int:
    from .models.registry import get_model, list_models

    models = list_models()
    default_id = get_model().id if models else None
    rows = [
        {
            "id": m.id,
            "task": m.task,
            "labels": m.heads,
            "default": m.id == default_id,
            "default_for_task": m.default,
        }
        for m in models
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['id']:45s} {r['task']:10s} {'(default)' if r['default'] else ''}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from PIL import Image

    from .explain.overlay import overlay
    from .imaging.decode import read_file
    from .predict import get_predictor

    study = read_file(args.path)
    predictor = get_predictor(args.model)
    pred = predictor.run(study, explain=args.heatmap_out is not None)
    if args.heatmap_out is not None and pred.heatmap is not None:
        Image.fromarray(overlay(pred.image, pred.heatmap, args.opacity)).save(args.heatmap_out)
    out = pred.to_json()
    out["disclaimer"] = DISCLAIMER
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"type:  {pred.type_label} ({pred.type_probs[pred.type_label]:.2f})")
        if pred.stage_label is not None:
            print(f"stage: {pred.stage_label} ({pred.stage_probs[pred.stage_label]:.2f})  [{pred.stage_note}]")  # type: ignore[index]
        print(f"pathway: {pred.treatment.summary}\nsource: {pred.treatment.source}\n{DISCLAIMER}")
    return 0


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The training configuration a ``train`` command line asks for (model cards print such a line)."""
    from .manifest import resolve_data_dir

    data = resolve_data_dir(args.data or None, args.task)
    return from_args(TrainConfig, args, data=str(data), model_id=args.model_id or f"{args.task}.{args.arch}_v1")


def _cmd_train(args: argparse.Namespace) -> int:
    from .learn.train import train

    mc = train(train_config_from_args(args))
    print(json.dumps({"model": mc.id, "folder": str(mc.folder), "val_at_selection": mc.raw.get("val_at_selection")}, indent=2))
    return 0


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
    runs = Path(args.runs) if args.runs else runs_dir()
    folder, source = evaluate_cached(cfg, data, args.split, runs, explain=args.explain, n_boot=args.bootstrap,
                                     seed=args.seed, force=args.force)
    metrics = pd.read_csv(folder / "metrics.csv", keep_default_na=False, na_values=[""])
    n_cases = len(pd.read_csv(folder / "cases.csv"))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        metrics.to_csv(args.out, index=False)
    if args.cases_out:
        shutil.copy(folder / "cases.csv", args.cases_out)
    print(f"{cfg.id} on {data.name}/{args.split} ({n_cases} images; {source}: {folder})")
    print(format_table(metrics))
    if args.card:
        from .eval.card import write

        bundled = cfg.weights_path.parent / "metrics"  # ModelError if the config has no folder
        bundled.mkdir(exist_ok=True)
        for name in ("metrics.csv", "cases.csv", "explain_cases.csv"):
            if (folder / name).is_file():
                shutil.copy(folder / name, bundled / name)
        command = f"python -m medimg_demo evaluate --model {cfg.id} --split {args.split}" + (" --explain" if args.explain else "") + " --card"
        log.info("Wrote %s", write(cfg, metrics, args.split, n_cases, command))
    return 0


def _cmd_feedback(args: argparse.Namespace) -> int:
    from . import feedback
    from .paths import feedback_db

    db = Path(args.db) if args.db else feedback_db()
    if args.action == "export":
        if not args.out:
            log.error("feedback export needs --out FILE.csv")
            return 2
        n = feedback.export_csv(db, Path(args.out))
        log.info("Exported %d rows to %s", n, args.out)
        return 0
    summary = feedback.summarise(feedback.read_all(db))
    if args.out:
        summary.to_csv(args.out, index=False)
    print(summary.round(3).set_index("session_id").T.to_string() if len(summary) else "no feedback yet")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medimg_demo", description=f"medimg_demo command line. {DISCLAIMER}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)

    m = sub.add_parser("models", help="list the models in the registry")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_cmd_models)

    pr = sub.add_parser("predict", help="predict type, stage and pathway for one image (PNG, JPEG or DICOM)")
    pr.add_argument("path", type=Path)
    pr.add_argument("--model", default=None, help="model id (default: the registry's default)")
    pr.add_argument("--heatmap-out", type=Path, default=None, help="write the Grad-CAM overlay to this PNG")
    pr.add_argument("--opacity", type=float, default=0.45, help="overlay opacity 0..1")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=_cmd_predict)

    t = sub.add_parser("train", help="fine-tune a pretrained backbone on a data set folder and write models/<id>/")
    add_options(t, TrainConfig)
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="metrics with 95%% bootstrap intervals on a manifest split")
    e.add_argument("--model", default=None)
    e.add_argument("--data", default=None, help="data set folder (default: the model's task folder under the data root)")
    e.add_argument("--split", default="test")
    e.add_argument("--out", default=None, help="metrics CSV (metric, class, value, ci_low, ci_high)")
    e.add_argument("--cases-out", default=None, help="per-image predictions CSV")
    e.add_argument("--bootstrap", type=int, default=1000)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--card", action="store_true", help="also copy the results to models/<id>/metrics/ and write MODEL_CARD.md")
    e.add_argument("--explain", action="store_true", help="also measure heatmap quality (localisation, deletion/insertion, sanity)")
    e.add_argument("--runs", default=None, help="runs folder for the cache and metrics log (default: $MEDIMG_RUNS_DIR or var/runs)")
    e.add_argument("--force", action="store_true", help="recompute even if a cached evaluation exists")
    e.set_defaults(func=_cmd_evaluate)
    f = sub.add_parser("feedback", help="export or summarise the clinician feedback store")
    f.add_argument("action", choices=["export", "summary"])
    f.add_argument("--db", default=None, help="SQLite file (default: $MEDIMG_FEEDBACK_DB or var/feedback.sqlite)")
    f.add_argument("--out", default=None, help="CSV to write (required for export)")
    f.set_defaults(func=_cmd_feedback)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args))
    except MedimgError as exc:
        log.error("%s", exc)
        return 2
