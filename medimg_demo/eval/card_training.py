"""What a model card says of how a model was trained and calibrated, and the commands that rebuild it as served."""

from __future__ import annotations

from typing import Any

from ..learn.config import DRIFT, HELD_OUT, SIBLING, train_command
from ..models.config import ModelConfig


#: Where a card's commands rebuild a model: beside the bundled one (which ``train`` refuses to overwrite), in a folder
#: of its own, so that a start model or teacher named in the train line is still the bundled one.
REPRODUCE_ROOT = "runs/reproduce"


def reproduce_dir(model_id: str) -> str:
    return f"{REPRODUCE_ROOT}/{model_id}"


def reproduce_note(model_id: str) -> str:
    return (f"Rebuilt beside the bundled model, in `{reproduce_dir(model_id)}/` (`train` refuses to overwrite a model "
            "folder; a start model or teacher is read from the bundled ones):")


def beside(command: str, model_id: str) -> str:
    """A card command run beside the bundled model: ``train`` writes to the model's reproduce folder and the later
    commands read the models there."""
    if command.startswith("python -m medimg_demo train "):
        return f"{command} --out {reproduce_dir(model_id)}"
    return f"MEDIMG_MODELS_DIR={reproduce_dir(model_id)} {command}"


def reproduce_commands(cfg: ModelConfig, eval_command: str) -> list[str]:
    """The commands that rebuild the model as served, beside the bundled one: train, any recalibration, the gate (the
    served model has one, or a recalibration asks for it), evaluate. A temperature fitted on a held-out fold comes
    from ``train`` itself."""
    cal = cfg.raw.get("calibration") or {}
    recalibrated = bool(cal) and cal.get("method") not in (HELD_OUT, SIBLING) \
        and not (cfg.raw.get("training") or {}).get("lesion_only")
    sibling = [cal["train_command"]] if cal.get("method") == SIBLING and cal.get("train_command") else []
    gate = [f"python -m medimg_demo gate --model {cfg.id}"] if recalibrated or cfg.raw.get("gate") else []
    return [beside(c, cfg.id) for c in [*sibling, train_command(cfg.raw.get("training") or {}),
                                        *([calibrate_command(cfg, cal)] if recalibrated else []), *gate, eval_command]]


def _fold(cal: dict[str, Any]) -> str:
    return f"fold {cal['fold'] + 1} of {cal['folds']}, `--calibration-fold {cal['fold']}`"


def data_line(training: dict[str, Any], cal: dict[str, Any]) -> str:
    if training.get("train_on_val"):
        if cal.get("method") == SIBLING:
            return (f"Trained on all of `train` + `val`, the last epoch kept (no selection: `val` was trained on); "
                    f"temperature copied from `{cal.get('model')}`, a run of the same recipe that held "
                    f"{cal.get('held_out')} images of that pool out")
        return (f"Trained on `train` + `val` less a calibration fold ({cal.get('held_out')} images, {_fold(cal)}), the "
                "last epoch kept (no selection: `val` was trained on), temperature on that fold alone")
    if cal.get("method") == HELD_OUT and training.get("calibration_folds"):
        return (f"Trained on `train` less a calibration fold ({cal['held_out']} images, {_fold(cal)}), model "
                "selection and early stopping on `val`, temperature on that fold + `val`")
    if cal.get("method") == HELD_OUT:
        return ("Trained on `train`, model selection and early stopping on `val`; the classifier and its temperature are "
                "the start model's (fitted on a `train` fold it never trained on + `val`)")
    if cal.get("method") == DRIFT:
        return "Trained on `train`, model selection and early stopping on `val`, temperature on `val` + perturbed copies"
    if cal and cal.get("method") != "bcts":
        return "Trained on `train`, model selection and early stopping on `val`, temperature on out-of-fold `train` + `val`"
    return "Trained on `train`, model selection, early stopping and calibration on `val`"


def calibrate_command(cfg: ModelConfig, cal: dict[str, Any]) -> str:
    if cal.get("method") == "bcts":
        return f"python -m medimg_demo calibrate --method bcts --model {cfg.id} --folds {cal['folds']} --write"
    if cal.get("method") == DRIFT:
        return f"python -m medimg_demo calibrate --method drift --model {cfg.id} --copies {cal['copies']} --write"
    full = " --full-schedule" if cal.get("full_schedule") else ""
    return f"python -m medimg_demo calibrate --model {cfg.id} --folds {cal['folds']}{full} --write"


def calibration_line(cfg: ModelConfig) -> str:
    cal = cfg.raw.get("calibration")
    if not cal:
        return f"- Calibration: temperature scaling fitted on `val`: {cfg.temperature}."
    if cal.get("method") == "bcts":
        cv = cal["cv"]
        return (f"- Calibration: bias-corrected temperature scaling (BCTS, Alexandari et al., ICML 2020) fitted on `val` "
                f"({cal['cases']} cases): probabilities are softmax(logits / {cfg.temperature.get('type')} + bias), bias "
                f"{dict(zip(cfg.type_labels, cfg.bias.get('type', ())))}. Chosen over temperature scaling alone (T = "
                f"{cal['temperature_only']}) by {cal['repeats']} x {cal['folds']}-fold cross-validation within `val`: "
                f"held-out NLL {cv['bcts']['cv_nll']:.3f} vs {cv['temperature']['cv_nll']:.3f}, ECE "
                f"{cv['bcts']['cv_ece']:.3f} vs {cv['temperature']['cv_ece']:.3f}, accuracy {cv['bcts']['cv_accuracy']:.3f} "
                f"vs {cv['temperature']['cv_accuracy']:.3f}. The bias moves decisions, not only confidences (a temperature "
                "cannot): it corrects a class prior the training run learned, such as the no-tumor class that "
                "counterfactual covers (`--erase-lesion`) make more frequent in training than in the data.")
    if cal.get("method") == DRIFT:
        return (f"- Calibration: temperature scaling {cfg.temperature}, fitted (NLL) for drift (Tomani et al., CVPR "
                f"2021) on {cal['cases']} cases: `val` (accuracy {cal['val_type_accuracy']:.3f}) and {cal['copies']} "
                "copies of it, each image perturbed by the task's source-artefact augmentation (copy k drawn from seed "
                "k; the perturbation's parameters are in config.json; accuracy "
                f"{cal['perturbed_type_accuracy']:.3f}). `val` alone would give {cal['val_only_temperature']}. A "
                "temperature changes no call, only how sure the model says it is on images unlike its sources.")
    if cal.get("method") == SIBLING:
        return (f"- Calibration: temperature scaling {cfg.temperature}, copied from `{cal['model']}`, trained by this "
                f"recipe on the same `train` + `val` pool less {cal['held_out']} images ({_fold(cal)}; accuracy "
                f"{cal['held_out_type_accuracy']:.3f} there), on which it fitted that temperature (NLL). This model "
                "trained on every image of the pool, so none was left to fit its own.")
    if cal.get("method") == HELD_OUT and cfg.trained_on_val:
        return (f"- Calibration: temperature scaling {cfg.temperature}, fitted (NLL) on {cal['held_out']} images this "
                f"model never trained on: a fold of `train` + `val` held out of its training ({_fold(cal)}, stratified "
                f"by label, near-duplicate twins together; accuracy {cal['held_out_type_accuracy']:.3f}).")
    if cal.get("method") == HELD_OUT:
        return (f"- Calibration: temperature scaling {cfg.temperature}, fitted (NLL) on {cal['cases']} cases this model "
                f"never trained on: {cal['held_out']} `train` images held out of its training ({_fold(cal)}, "
                "stratified by label, near-duplicate twins together; accuracy "
                f"{cal['held_out_type_accuracy']:.3f}) plus `val` (accuracy {cal['val_type_accuracy']:.3f}), which also "
                f"selected the epoch. `val` alone would give {cal['val_only_temperature']}.")
    return (f"- Calibration: temperature scaling {cfg.temperature}, fitted (NLL) on {cal['cases']} cases: out-of-fold "
            f"predictions of {cal['folds']} models trained by this model's own recipe on folds of `train` (accuracy "
            f"{cal['oof_type_accuracy']:.3f}) plus this model on `val` (accuracy {cal['val_type_accuracy']:.3f}). "
            f"`val` alone would give {cal['val_only_temperature']}. Fold models' val accuracy: "
            f"{cal.get('fold_val_type_accuracy', [])}"
            + (" (every epoch of the recipe run, no early stop)." if cal.get("full_schedule") else "."))
