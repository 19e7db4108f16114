"""The ``predict`` and ``report`` subcommands (registered by ``medimg_demo.cli``; torch is imported only when they
run). Every output is checked before a model runs (:mod:`.cli_files`): an input is never overwritten, an existing
file only with ``--overwrite``, and a prediction already made is printed even when writing its files fails."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .cli_files import input_file, new_file, output_file, output_folder
from .errors import MedimgError, on_the_command_line
from .notice import DISCLAIMER
from .options import bounded

log = logging.getLogger("medimg_demo")

#: A frame index no DICOM reaches (a usage error past it, or below 0, rather than "Frame 0 does not exist").
MAX_FRAME = 2**31 - 1


def _cmd_predict(args: argparse.Namespace) -> int:
    """One JSON object per file (in input order), each model loaded once; an unreadable file is an error line."""
    from .imaging.decode import read_file
    from .predict import predict_study

    if args.heatmap_out is not None and len(args.paths) > 1:
        log.error("--heatmap-out takes one input file; run predict once per overlay you want written")
        return 2
    if args.heatmap_out is not None:
        output_file(args.heatmap_out, args.paths, option="--heatmap-out", what="a PNG file name",
                    example="overlay.png", suffixes=(".png",), overwrite=args.overwrite)
    if args.lesion_masks is not None:
        output_folder(args.lesion_masks, option="--lesion-masks")
    failed = 0
    for index, path in enumerate(args.paths):
        which = f"input {index + 1} of {len(args.paths)}"  # never its name, which may carry a patient's
        if not args.json and len(args.paths) > 1:
            print(f"== {which} ==")
        try:
            # one frame rule everywhere (app, CLI, batch, report): the middle frame of a multi-frame DICOM unless
            # --frame asks for another; the JSON says which frame was read ("frame_index") and carries its warnings
            # the JSON carries the heatmap's peak, so a JSON run explains too (one backward more per image)
            pred = predict_study(read_file(input_file(path, which), args.frame), args.model,
                                 explain=args.heatmap_out is not None or args.json)
        except MedimgError as exc:
            failed += 1
            log.error("%s%s", f"{which}: " if len(args.paths) > 1 and which not in str(exc) else "",
                      on_the_command_line(str(exc)))
            if args.json:
                print(json.dumps({"status": "error", "reason": on_the_command_line(str(exc)), "index": index,
                                  "disclaimer": DISCLAIMER}))
            continue
        out = {**pred.to_json(), "disclaimer": DISCLAIMER}
        try:
            _write_files(args, pred, out)
        except NotWritten as exc:  # the disk filled, say: the prediction is still printed, without the file
            failed += 1
            log.error("%s could not be written for %s (%s); its prediction follows without it.", exc.what, which,
                      exc.why)
        if args.json:
            out["index"] = index  # position in the input list: file names may carry a patient's name, so none is echoed
            print(json.dumps(out))
        else:
            _print_prediction(pred)
    return 2 if failed else 0


class NotWritten(Exception):
    """An output file that could not be written: ``what`` names its option and path, ``why`` the system's reason."""

    def __init__(self, what: str, exc: OSError) -> None:
        super().__init__(what)
        self.what, self.why = what, exc.strerror or type(exc).__name__


def _write_files(args: argparse.Namespace, pred, out: dict) -> None:  # noqa: ANN001 - predict.Prediction
    """The overlay (``--heatmap-out``) and the lesion mask (``--lesion-masks``: numbered on in the folder, never named
    after the input, whose name may carry a patient's; never a file an earlier run's JSON names). A failed write is
    a :class:`NotWritten` naming the option and the path."""
    from PIL import Image

    from .cli_files import shown
    from .explain.overlay import overlay

    if args.heatmap_out is not None and pred.heatmap is not None:
        try:
            Image.fromarray(overlay(pred.image, pred.heatmap, args.opacity)).save(args.heatmap_out, format="PNG")
        except OSError as exc:
            raise NotWritten(f"--heatmap-out {shown(args.heatmap_out)}", exc) from exc
    elif args.heatmap_out is not None:
        log.warning("No overlay written: the model gave no answer for this image (status %s)", pred.status)
    if args.lesion_masks is not None and out.get("lesion") is not None and pred.lesion_mask is not None:
        out["lesion"]["mask_png"] = None
        try:
            path = new_file(args.lesion_masks, "lesion_mask", ".png")
        except OSError as exc:
            raise NotWritten(f"The lesion mask in --lesion-masks {shown(args.lesion_masks)}", exc) from exc
        try:
            Image.fromarray(pred.lesion_mask.astype("uint8") * 255).save(path, format="PNG")
        except BaseException as exc:
            path.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise NotWritten(f"The lesion mask {shown(path)}", exc) from exc
            raise
        out["lesion"]["mask_png"] = path.name


def _print_prediction(pred) -> None:  # noqa: ANN001 - predict.Prediction (imported lazily: no torch at start-up)
    """The answer as the screens show it: readable names, probabilities in whole percent from 1% to 99%."""
    from .probability_text import whole_percent
    from .tasks import get_task, stage_name

    if pred.status == "refused":
        print(f"refused: {pred.reason}")
    elif pred.status == "indeterminate":
        print(pred.reason)
    else:
        label = get_task(pred.task).label_name(pred.type_label)
        print(f"type:  {label} ({whole_percent(pred.type_probs[pred.type_label])})")
        if pred.stage_label is not None:
            print(f"stage: {stage_name(pred.stage_label)} ({whole_percent(pred.stage_probs[pred.stage_label])})  "
                  f"[{pred.stage_note}]")
        if pred.lesion is not None:
            print(f"lesion: {pred.lesion.describe()}")
        if pred.size_category is not None:
            print(f"size category: {pred.size_category['label']} (imaging size estimate; {pred.size_category['rule']})")
        print(f"pathway: {pred.treatment.summary}\nsource: {pred.treatment.source}")
    print(DISCLAIMER)


def _cmd_report(args: argparse.Namespace) -> int:
    from .report.pdf import report_file

    output_file(args.out, [args.path], option="--out", what="the report's file name", example="case_report.pdf",
                suffixes=(".pdf",), overwrite=args.overwrite)  # checked before the model runs
    pred = report_file(input_file(args.path), args.out, args.model, args.frame)  # InputError (exit 2): unreadable
    if args.json:
        print(json.dumps({**pred.to_json(), "disclaimer": DISCLAIMER}))
    else:
        _print_prediction(pred)  # the report's path is the caller's own --out: not echoed
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``predict`` and ``report`` to the CLI's subparsers."""
    frame = dict(type=bounded(int, 0, MAX_FRAME), default=None)
    overwrite = dict(action="store_true", help="replace an existing output file (never an input)")
    pr = sub.add_parser("predict", help="predict type, stage and pathway for images (PNG, JPEG or DICOM), gated")
    pr.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="scans (PNG, JPEG or DICOM; never changed)")
    pr.add_argument("--model", default=None, help="model id, or 'auto' to let the gates pick the task (default: the registry's default)")
    pr.add_argument("--heatmap-out", type=Path, default=None, help="write the Grad-CAM overlay to this PNG")
    pr.add_argument("--overwrite", **overwrite)
    pr.add_argument("--opacity", type=bounded(float, 0, 1), default=0.45, help="overlay opacity 0..1")
    pr.add_argument("--frame", **frame,
                    help="0-based frame of a multi-frame DICOM (default: the middle one, as the app, batch and report)")
    pr.add_argument("--json", action="store_true", help="one JSON object per input file, one per line, in input order")
    pr.add_argument("--lesion-masks", type=Path, default=None, metavar="DIR",
                    help="write each outlined lesion as an 8-bit mask PNG (the image's size, 255 = lesion) into DIR "
                         "(made if missing), named lesion_mask_<n>.png numbered on from the highest there (never a "
                         "file an earlier run wrote); the JSON's lesion.mask_png names it")
    pr.set_defaults(func=_cmd_predict)
    rp = sub.add_parser("report", help="write the case report PDF of one image (PNG, JPEG or DICOM), gated")
    rp.add_argument("path", type=Path, metavar="PATH", help="the scan (PNG, JPEG or DICOM; never changed)")
    rp.add_argument("--model", default=None, help="model id, or 'auto' to let the gates pick the task")
    rp.add_argument("--frame", **frame, help="0-based frame of a multi-frame DICOM (default: the middle)")
    rp.add_argument("--out", type=Path, required=True, help="the PDF to write (its folder must exist)")
    rp.add_argument("--overwrite", **overwrite)
    rp.add_argument("--json", action="store_true", help="also print the prediction as one JSON object")
    rp.set_defaults(func=_cmd_report)
