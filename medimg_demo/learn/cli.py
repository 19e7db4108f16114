"""The ``calibrate`` subcommand (registered by ``medimg_demo.cli``; torch is imported only when it runs)."""

from __future__ import annotations

import argparse


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from ..models.registry import get_model
    from .cv_calibrate import cross_val_temperature, summary_frame, write_calibration

    cfg = get_model(args.model)
    result = cross_val_temperature(cfg, folds=args.folds, data=args.data)
    print(summary_frame(result).to_string(index=False))
    print(f"{cfg.id}: {result.n_cases} calibration cases ({args.folds}-fold out-of-fold train + val); out-of-fold "
          f"accuracy {result.oof_accuracy:.3f}, val {result.val_accuracy:.3f}")
    print(f"fold models' val accuracy {[round(a, 3) for a in result.fold_val_accuracy]}")
    if not args.write:
        return 0
    if result.folds_trail and not args.force:
        print("not written: the fold models trail the served model on val (see the warning); --force writes anyway")
        return 1
    path = write_calibration(cfg, result)
    print(f"wrote the temperature to {path.parent.name}/config.json; now refit the gate (gate --model {cfg.id}) "
          f"and re-evaluate (evaluate --model {cfg.id} --split test --explain --card --force)")
    return 0


def _folds(text: str) -> int:
    k = int(text)
    if k < 2:
        raise argparse.ArgumentTypeError("--folds must be at least 2")
    return k


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``calibrate`` to the CLI's subparsers."""
    c = sub.add_parser("calibrate", help="cross-validated temperature: re-train the model's recipe on K folds of train "
                       "and fit the temperature on out-of-fold + val logits (minutes per fold)")
    c.add_argument("--model", default=None, help="model id (default: the registry's default)")
    c.add_argument("--data", default=None, help="the model's data set folder (default: <data root>/<task>)")
    c.add_argument("--folds", type=_folds, default=3, help="folds of train, at least 2 (each trains the full recipe once)")
    c.add_argument("--write", action="store_true", help="pin the fitted temperature in the model's config.json")
    c.add_argument("--force", action="store_true", help="write even when the fold models trail the served model")
    c.set_defaults(func=_cmd_calibrate)
