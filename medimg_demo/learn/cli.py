"""The ``calibrate`` subcommand (registered by ``medimg_demo.cli``; torch is imported only when it runs)."""

from __future__ import annotations

import argparse


def _cmd_bcts(args: argparse.Namespace) -> int:
    from ..models.registry import get_model
    from .bcts import MIN_GAIN, fit_bcts, write_bcts

    cfg = get_model(args.model)
    result = fit_bcts(cfg, data=args.data, folds=args.folds or 5)
    print(result.comparison.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"{cfg.id}: {result.n_cases} val cases, {result.repeats} x {result.folds}-fold cross-validation within val")
    print(f"BCTS on all of val: temperature {result.fitted.temperature}, bias {list(result.fitted.bias or ())} "
          f"(labels {cfg.type_labels}); temperature only: {result.temperature_only.temperature}")
    print(f"held-out NLL gain of BCTS: {result.gain:.1%} (recommended at {MIN_GAIN:.0%} or more): "
          + ("recommended" if result.recommended else "not recommended")
          + (f" (the temperature sits on its bound {result.fitted.temperature}: val is nearly separable)"
             if result.on_bound else ""))
    if not args.write:
        return 0
    if not result.recommended and not args.force:
        print("not written: BCTS is not recommended for this model (see above); --force writes anyway")
        return 1
    path = write_bcts(cfg, result)
    print(f"wrote the temperature and bias to {path.parent.name}/config.json; now refit the gate (gate --model {cfg.id}) "
          f"and re-evaluate (evaluate --model {cfg.id} --split test --explain --card)")
    return 0


def _cmd_drift(args: argparse.Namespace) -> int:
    from ..models.registry import get_model
    from .cv_calibrate import write_calibration
    from .drift_calibration import COPIES, fit_drift_temperature

    cfg = get_model(args.model)
    result = fit_drift_temperature(cfg, data=args.data, copies=COPIES if args.copies is None else args.copies)
    for head, t in result.temperature.items():
        print(f"{head}: temperature {t} on val + {result.copies} perturbed copies ({result.n_cases} cases); val "
              f"alone {result.val_only[head]}")
    print(f"{cfg.id}: type accuracy {result.val_accuracy:.3f} on val, {result.perturbed_accuracy:.3f} on its "
          "perturbed copies (a temperature changes no call)")
    if not args.write:
        return 0
    path = write_calibration(cfg, result)
    print(f"wrote the temperature to {path.parent.name}/config.json; now refit the gate (gate --model {cfg.id}) "
          f"and re-evaluate (evaluate --model {cfg.id} --split test --explain --card --force)")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from ..models.registry import get_model
    from .cv_calibrate import cross_val_temperature, summary_frame, write_calibration

    if args.predictions_out and args.method != "cv-temperature":
        print("--predictions-out keeps the cross-validation's out-of-fold logits: it goes with --method cv-temperature")
        return 2
    if args.copies is not None and args.method != "drift":
        print("--copies is the number of perturbed copies of val: it goes with --method drift")
        return 2
    if args.method == "drift":
        if args.folds or args.full_schedule:
            print("--method drift fits on val and perturbed copies of it: --folds and --full-schedule do not apply")
            return 2
        return _cmd_drift(args)
    if args.method == "bcts":
        return _cmd_bcts(args)
    cfg = get_model(args.model)
    args.folds = args.folds or 3
    result = cross_val_temperature(cfg, folds=args.folds, data=args.data, full_schedule=args.full_schedule)
    print(summary_frame(result).to_string(index=False))
    print(f"{cfg.id}: {result.n_cases} calibration cases ({args.folds}-fold out-of-fold train + val); out-of-fold "
          f"accuracy {result.oof_accuracy:.3f}, val {result.val_accuracy:.3f}")
    print(f"fold models' val accuracy {[round(a, 3) for a in result.fold_val_accuracy]}")
    if args.predictions_out and result.predictions is not None:
        result.predictions.to_csv(args.predictions_out, index=False)
        print(f"wrote {len(result.predictions)} raw logits (out-of-fold train; fold -1: this model on val) to "
              f"{args.predictions_out}")
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
    c = sub.add_parser("calibrate", help="recalibrate a trained model: cross-validated temperature (re-train the "
                       "model's recipe on K folds of train and fit the temperature on out-of-fold + val logits; minutes "
                       "per fold); with --method bcts, a temperature plus one offset per class fitted on val "
                       "(seconds), compared with temperature scaling by cross-validation within val; with --method "
                       "drift, a temperature on val plus perturbed copies of it (seconds)")
    c.add_argument("--method", choices=["cv-temperature", "bcts", "drift"], default="cv-temperature",
                   help="cv-temperature (default); bcts: bias-corrected temperature scaling (Alexandari et al., "
                        "2020); drift: a temperature on val plus copies of val perturbed by the task's "
                        "source-artefact augmentation (Tomani et al., 2021; seconds)")
    c.add_argument("--copies", type=int, default=None, help="drift: perturbed copies of val (default 5)")
    c.add_argument("--model", default=None, help="model id (default: the registry's default)")
    c.add_argument("--data", default=None, help="the model's data set folder (default: <data root>/<task>)")
    c.add_argument("--folds", type=_folds, default=None,
                   help="cv-temperature: folds of train, at least 2, each trains the full recipe once (default 3); "
                        "bcts: folds of val for the comparison (default 5)")
    c.add_argument("--full-schedule", action="store_true",
                   help="cv-temperature: fold models run every epoch of the recipe (no early stop; the epoch is still "
                        "selected on val), as a served model whose selected epoch is near the end did")
    c.add_argument("--predictions-out", default=None, metavar="CSV",
                   help="cv-temperature: also write every calibration case's raw logits (out-of-fold train images with "
                        "their fold; val by the served model as fold -1), e.g. to study a decision threshold")
    c.add_argument("--write", action="store_true", help="pin the fitted calibration in the model's config.json")
    c.add_argument("--force", action="store_true", help="write even when the fold models trail the served model "
                   "(cv-temperature) or BCTS does not beat temperature scaling on held-out val cases (bcts)")
    c.set_defaults(func=_cmd_calibrate)
