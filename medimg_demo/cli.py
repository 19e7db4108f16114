"""Command line: ``python -m medimg_demo {models,predict,train,evaluate}``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import DISCLAIMER
from .errors import MedimgError

log = logging.getLogger("medimg_demo")

if TYPE_CHECKING:
    from .train import TrainConfig


def _cmd_models(args: argparse.Namespace) -> int:
    from .registry import get_model, list_models

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

    from .io import read_file
    from .overlay import overlay
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
    from .data import resolve_data_dir
    from .train import TrainConfig

    data = resolve_data_dir(args.data, args.task)
    model_id = args.id or f"{args.task}.{args.arch}_v1"
    return TrainConfig(
        data=str(data),
        task=args.task,
        model_id=model_id,
        out_dir=args.out,
        arch=args.arch,
        pretrained=args.pretrained,
        size=args.size,
        epochs=args.epochs,
        warmup_epochs=args.warmup_epochs,
        batch_size=args.batch_size,
        lr_head=args.lr_head,
        lr_backbone=args.lr_backbone,
        patience=args.patience,
        min_epochs=args.min_epochs,
        freeze_bn=args.freeze_bn,
        label_smoothing=args.label_smoothing,
        seed=args.seed,
        bf16=not args.no_bf16,
        select_bf16=args.select_bf16,
        max_train=args.max_train,
        stage=not args.no_stage,
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    mc = train(train_config_from_args(args))
    print(json.dumps({"model": mc.id, "folder": str(mc.folder), "val_at_selection": mc.raw.get("val_at_selection")}, indent=2))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import shutil

    import pandas as pd

    from .data import resolve_data_dir
    from .evaluate import format_table
    from .paths import runs_dir
    from .performance import evaluate_cached
    from .registry import get_model

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
        from .model_card import write

        assert cfg.folder is not None
        bundled = cfg.folder / "metrics"
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
    t.add_argument("--task", required=True, help="task name, e.g. lung_ct, breast_us, brain_mri")
    t.add_argument("--data", default=None, help="data set folder with manifest.csv (default: $MEDIMG_DATA_DIR/<task> or ../shared/data/<task>)")
    t.add_argument("--id", default=None, help="model id (default: <task>.<arch>_v1)")
    t.add_argument("--out", default="models")
    t.add_argument("--arch", default="tf_efficientnet_lite0")
    t.add_argument("--pretrained", default="auto", choices=["auto", "offline", "hub", "none"])
    t.add_argument("--size", type=int, default=224)
    t.add_argument("--epochs", type=int, default=15, help="full fine-tuning epochs (after warm-up)")
    t.add_argument("--warmup-epochs", type=int, default=2, help="epochs with the backbone frozen")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr-head", type=float, default=1e-3)
    t.add_argument("--lr-backbone", type=float, default=3e-4)
    t.add_argument("--patience", type=int, default=5, help="early stop after this many epochs without val improvement")
    t.add_argument("--min-epochs", type=int, default=4, help="fine-tuning epochs before early stopping may count")
    t.add_argument("--label-smoothing", type=float, default=0.05)
    t.add_argument("--freeze-bn", action="store_true", help="keep ImageNet BatchNorm statistics during fine-tuning")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-bf16", action="store_true", help="train in fp32 (slower) instead of bf16 autocast")
    t.add_argument("--select-bf16", action="store_true",
                   help="score val under bf16 for epoch selection (reproduces models trained before fp32 selection)")
    t.add_argument("--no-stage", action="store_true", help="do not add a stage head even if the manifest has one")
    t.add_argument("--max-train", type=int, default=0, help="cap training images (smoke tests)")
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
