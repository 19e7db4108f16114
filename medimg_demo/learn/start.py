"""Where a training run starts from: a trained model's weights (``--init-from``) and a teacher to distil from
(``--distill-from``)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import ModelError, OptionError
from ..models.calibrate import calibrated_logits
from ..models.calibration import Calibration
from ..models.config import InputConfig, ModelConfig
from ..models.network import TumorNet

log = logging.getLogger(__name__)


def _input_differs(other: ModelConfig, type_labels: list[str], input_cfg: InputConfig) -> bool:
    return other.type_labels != type_labels or tuple(other.input.size) != tuple(input_cfg.size) \
        or tuple(other.input.mean) != tuple(input_cfg.mean) or tuple(other.input.std) != tuple(input_cfg.std)


def start_model(model_id: str, out_dir: str | Path = "") -> ModelConfig:
    """The trained model ``--init-from`` names: in the run's ``--out`` folder if it is there (a model just trained
    into it, such as a cross-validation fold's previous step), else in the registry."""
    from ..models.registry import get_model

    if not (out_dir and (Path(out_dir) / model_id / "config.json").is_file()):
        return get_model(model_id)
    local = get_model(model_id, Path(out_dir))
    try:
        registered = get_model(model_id)
    except ModelError:
        return local
    if registered.weights_sha256 != local.weights_sha256:  # the record names only the id: it must be one model
        raise OptionError(f"--init-from {model_id}: --out {out_dir} and the model registry hold different models of "
                          "that id; rename one, or train into another --out.")
    return local


def init_weights(model: TumorNet, model_id: str, same_as: tuple[list[str], InputConfig] | None = None,
                 complete: bool = False, out_dir: str | Path = "") -> None:
    """Start from a trained model's weights (same architecture and heads); layers it lacks (a new lesion head) keep
    their fresh initialisation. With ``same_as`` = (type labels, input) the start model must share them (size, mean,
    std); with ``complete`` it must have every tensor of ``model`` (``--lesion-only``: nothing new). The model is
    looked up as :func:`start_model` does."""
    from safetensors.torch import load_file

    cfg = start_model(model_id, out_dir)
    if same_as is not None and _input_differs(cfg, *same_as):
        input_cfg = same_as[1]
        raise OptionError(f"--init-from {model_id}: its labels {cfg.type_labels} or input ({cfg.input.size}, mean "
                          f"{cfg.input.mean}, std {cfg.input.std}) differ from this run's {same_as[0]} ({input_cfg.size}, mean "
                          f"{input_cfg.mean}, std {input_cfg.std}); give the options it was trained with.")
    tensors = load_file(str(cfg.weights_path))
    own = model.state_dict()
    fixed = {k: v.to(own[k].dtype) for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(tensors) - set(fixed))
    if skipped:
        raise OptionError(f"--init-from {model_id}: {len(skipped)} tensors do not fit this architecture (e.g. {skipped[0]}).")
    new = sorted(set(own) - set(fixed))
    if complete and new:
        raise OptionError(f"--init-from {model_id}: it lacks {len(new)} tensors of this model (e.g. {new[0]}); "
                          "--lesion-only needs a model that already has a lesion head.")
    model.load_state_dict(fixed, strict=False)
    log.info("Initialised from %s (%d tensors; %d new)", model_id, len(fixed), len(new))


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


def load_teacher(model_id: str, type_labels: list[str], input_cfg: InputConfig) -> torch.nn.Module:
    """A trained model to distil from, in eval mode; it must share the type labels and the input normalisation.
    A teacher calibrated with per-class offsets (BCTS) is distilled in its calibrated form, the probabilities the
    app shows; any other teacher's raw logits are used (its temperature only rescales them)."""
    from ..models.network import load_model
    from ..models.registry import get_model

    tcfg = get_model(model_id)
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
