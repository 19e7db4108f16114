"""Where a training run starts from: a trained model's weights (``--init-from``) and a teacher to distil from
(``--distill-from``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch

from ..errors import ModelError, OptionError
from ..models.calibrate import calibrated_logits
from ..models.calibration import Calibration
from ..models.config import DEFAULT_LESION_CHANNELS, InputConfig, ModelConfig
from ..models.network import TumorNet
from .config import TrainConfig, teacher_ids

log = logging.getLogger(__name__)


def _input_differs(other: ModelConfig, type_labels: list[str], input_cfg: InputConfig) -> bool:
    return other.type_labels != type_labels or tuple(other.input.size) != tuple(input_cfg.size) \
        or tuple(other.input.mean) != tuple(input_cfg.mean) or tuple(other.input.std) != tuple(input_cfg.std)


def start_model(model_id: str, out_dir: str | Path = "", option: str = "--init-from") -> ModelConfig:
    """The trained model ``--init-from`` (or ``option``) names: in the run's ``--out`` folder if it is there (a model
    just trained into it, such as a cross-validation fold's previous step or a teacher), else in the registry.
    A model trained on val (``--train-on-val``) is refused as a start or a teacher, since the run would then select
    and calibrate on val images its start had learned; ``--temperature-from`` may name one."""
    cfg = _find_model(model_id, out_dir, option)
    if cfg.trained_on_val and option != "--temperature-from":
        raise OptionError(f"{option} {model_id}: it was trained on val (--train-on-val), and this run selects and "
                          "calibrates on val; start from, or distil from, a model that held val out.")
    return cfg


#: What each option brings, in the refusal of :func:`_held_a_fold_out`.
_ROLE = {"--distill-from": "teacher", "--init-from": "start model"}
#: How to mend a chain that is not blind to the held-out fold (here and in ``lineage``).
RETRAIN_BLIND = "Train it with the same --calibration-* options (from ImageNet weights, or from a model trained so)."


def check_sources(cfg: TrainConfig) -> None:
    """Look the ``--init-from`` model and every ``--distill-from`` teacher up before anything is decoded, so one that
    cannot serve (unknown, or trained on val) is refused at once."""
    for model_id in [cfg.init_from] if cfg.init_from else []:
        _held_a_fold_out(cfg, model_id, start_model(model_id, cfg.out_dir), "--init-from")
    if cfg.backbone_from:
        start_model(cfg.backbone_from, cfg.out_dir, option="--backbone-from")
    for model_id in teacher_ids(cfg.distill_from) if cfg.distill_from else []:
        _held_a_fold_out(cfg, model_id, start_model(model_id, cfg.out_dir, option="--distill-from"), "--distill-from")


def _held_a_fold_out(cfg: TrainConfig, model_id: str, source: ModelConfig, option: str) -> None:
    """With ``--calibration-folds``, a source that held no fold out at all trained on this run's: refused at once
    (which images it held out is checked, by :func:`check_sources_blind`, once the fold is drawn)."""
    if cfg.calibration_folds and not source.raw.get("training", {}).get("calibration_folds"):
        raise OptionError(f"{option} {model_id}: it trained on all of train, and this run holds calibration fold "
                          f"{cfg.calibration_fold} of {cfg.calibration_folds} out of training; a {_ROLE[option]} must "
                          f"not have trained on the images the temperature is fitted on. {RETRAIN_BLIND}")


def _find_model(model_id: str, out_dir: str | Path, option: str) -> ModelConfig:
    from ..models.registry import get_model

    if not (out_dir and (Path(out_dir) / model_id / "config.json").is_file()):
        return get_model(model_id)
    local = get_model(model_id, Path(out_dir))
    try:
        registered = get_model(model_id)
    except ModelError:
        return local
    if registered.weights_sha256 != local.weights_sha256:  # the record names only the id: it must be one model
        raise OptionError(f"{option} {model_id}: --out {out_dir} and the model registry hold different models of "
                          "that id; rename one, or train into another --out.")
    return local


def lesion_width(cfg: TrainConfig) -> int:
    """The lesion head's width for this run: ``--lesion-channels``, else the ``--init-from`` model's head's, else the
    default (so a run from a narrower head keeps it, and only an explicit other width trains a new one)."""
    if cfg.lesion_channels:
        return cfg.lesion_channels
    start = start_model(cfg.init_from, cfg.out_dir) if cfg.init_from else None
    return start.lesion.channels if start is not None and start.lesion is not None else DEFAULT_LESION_CHANNELS


def init_weights(model: TumorNet, model_id: str, same_as: tuple[list[str], InputConfig] | None = None,
                 complete: bool = False, out_dir: str | Path = "", new_lesion_head: bool = False) -> None:
    """Start from a trained model's weights (same architecture and heads); layers it lacks (a new lesion head) keep
    their fresh initialisation. With ``same_as`` = (type labels, input) the start model must share them (size, mean,
    std); with ``complete`` it must have every tensor of ``model`` (``--lesion-only``: nothing new), except, with
    ``new_lesion_head``, a lesion head of another width than the start model's, which starts fresh (``--lesion-only
    --lesion-channels``). The model is looked up as :func:`start_model` does."""
    from safetensors.torch import load_file

    cfg = start_model(model_id, out_dir)
    if same_as is not None and _input_differs(cfg, *same_as):
        input_cfg = same_as[1]
        raise OptionError(f"--init-from {model_id}: its labels {cfg.type_labels} or input ({cfg.input.size}, mean "
                          f"{cfg.input.mean}, std {cfg.input.std}) differ from this run's {same_as[0]} ({input_cfg.size}, mean "
                          f"{input_cfg.mean}, std {input_cfg.std}); give the options it was trained with.")
    tensors = load_file(str(cfg.weights_path))
    own = model.state_dict()
    resized = new_lesion_head and cfg.lesion is not None and model.lesion is not None and any(
        k.startswith("lesion.") and (k not in own or own[k].shape != v.shape) for k, v in tensors.items())
    if resized:  # the start model's head has another width: none of its tensors is kept, the new head starts fresh
        tensors = {k: v for k, v in tensors.items() if not k.startswith("lesion.")}
    fixed = {k: v.to(own[k].dtype) for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(tensors) - set(fixed))
    if skipped:
        raise OptionError(f"--init-from {model_id}: {len(skipped)} tensors do not fit this architecture (e.g. {skipped[0]}).")
    new = sorted(k for k in set(own) - set(fixed) if not (resized and k.startswith("lesion.")))
    if complete and new:
        raise OptionError(f"--init-from {model_id}: it lacks {len(new)} tensors of this model (e.g. {new[0]}); "
                          "--lesion-only needs a model that already has a lesion head.")
    model.load_state_dict(fixed, strict=False)
    log.info("Initialised from %s (%d tensors; %d new%s)", model_id, len(fixed), len(set(own) - set(fixed)),
             "; a new lesion head of another width" if resized else "")


def init_backbone(model: TumorNet, model_id: str, task: str, arch: str, out_dir: str | Path = "") -> None:
    """Start the backbone from another task's trained model of the same architecture (``--backbone-from``): every
    ``backbone.*`` tensor is replaced, the heads and any lesion head keep their fresh initialisation."""
    from safetensors.torch import load_file

    cfg = start_model(model_id, out_dir, option="--backbone-from")
    if cfg.task == task:
        raise OptionError(f"--backbone-from {model_id}: it is a {task} model; start from it with --init-from instead.")
    if cfg.arch != arch:
        raise OptionError(f"--backbone-from {model_id}: its architecture is {cfg.arch}, this run's {arch}; give "
                          f"--arch {cfg.arch} or another model.")
    own = model.state_dict()
    tensors = {k: v for k, v in load_file(str(cfg.weights_path)).items() if k.startswith("backbone.")}
    missing = sorted(k for k in own if k.startswith("backbone.") and k not in tensors)
    unfit = sorted(k for k, v in tensors.items() if k not in own or own[k].shape != v.shape)
    if missing or unfit:
        raise OptionError(f"--backbone-from {model_id}: its backbone does not fit this one "
                          f"(e.g. {(missing or unfit)[0]}).")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=False)
    log.info("Backbone from %s (%s, %d tensors); heads start fresh", model_id, cfg.task, len(tensors))


class _CalibratedTeacher(torch.nn.Module):
    """A teacher whose type logits come out calibrated (``logits / T + b``): for a teacher with per-class offsets
    (BCTS), whose raw logits carry a prior that its calibration undoes."""

    def __init__(self, model: torch.nn.Module, cal: Calibration) -> None:
        super().__init__()
        self.model, self.cal = model, cal

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = dict(self.model(x))
        out["type"] = calibrated_logits(out["type"], self.cal)
        return out


class _EnsembleTeacher(torch.nn.Module):
    """Several teachers as one: the type "logits" are the log of their mean probabilities (an ensemble's prediction,
    which the distillation loss softens like any logits); the other heads are the first teacher's."""

    def __init__(self, members: list[torch.nn.Module]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = [m(x) for m in self.members]
        probs = torch.stack([torch.softmax(o["type"].float(), dim=1) for o in outs]).mean(0)
        return {**outs[0], "type": torch.log(probs.clamp_min(1e-12))}


def _one_teacher(model_id: str, type_labels: list[str], input_cfg: InputConfig, out_dir: str | Path) -> torch.nn.Module:
    from ..models.network import load_model

    tcfg = start_model(model_id, out_dir, option="--distill-from")
    if _input_differs(tcfg, type_labels, input_cfg):
        raise OptionError(f"--distill-from {model_id}: its labels {tcfg.type_labels} or input ({tcfg.input.size}, mean "
                          f"{tcfg.input.mean}, std {tcfg.input.std}) differ from this run's {type_labels} "
                          f"({input_cfg.size}, mean {input_cfg.mean}, std {input_cfg.std}).")
    teacher = load_model(tcfg).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    teacher = teacher.to(memory_format=torch.channels_last)
    cal = tcfg.calibration("type")
    log.info("Distilling from %s%s", model_id, " (calibrated: temperature and offsets)" if cal.bias is not None else "")
    return _CalibratedTeacher(teacher, cal).eval() if cal.bias is not None else teacher


def load_teacher(distill_from: str, type_labels: list[str], input_cfg: InputConfig, out_dir: str | Path = "") -> torch.nn.Module:
    """The trained model(s) to distil from, in eval mode, looked up as :func:`start_model` does; each must share the
    type labels and the input normalisation. Several comma-separated ids are one teacher: their mean probabilities.
    A teacher calibrated with per-class offsets (BCTS) is distilled in its calibrated form, the probabilities the
    app shows; any other teacher's raw logits are used (its temperature only rescales them; in an ensemble the
    members' raw logits are averaged as probabilities, so a temperature fitted on a held-out calibration fold
    carries nothing of that fold into training). A run holding a calibration fold out checks its teachers first
    (:func:`.lineage.check_sources_blind`)."""
    members = [_one_teacher(m, type_labels, input_cfg, out_dir) for m in teacher_ids(distill_from)]
    return members[0] if len(members) == 1 else _EnsembleTeacher(members).eval()
