"""A temperature fitted for drift: ``val`` plus perturbed copies of it (Tomani, Gruber, Erdem, Cremers and Buettner,
"Post-hoc Uncertainty Calibration for Domain Drift Scenarios", CVPR 2021).

A temperature fitted on val alone is fitted on images from the training sources. Where a model's test errors are
images unlike those (lung: teaching figures with arrows, soft-tissue windows), it comes out over-confident off them:
lung v2's val temperature of 0.31 gives test an ECE of 0.052, which consistency resampling puts outside what a
calibrated model would score. Here the served model also predicts ``copies`` copies of val, each image perturbed by
the task's source-artefact augmentation (``tasks.py`` ``artefact_augment``: display contrast and gamma, blur,
resampling, noise, burned-in marks, small affine changes; generator seed = copy index), and one temperature per head
is fitted (NLL) on the clean and perturbed logits together. A temperature keeps every argmax: accuracy and
sensitivities are unchanged and confidences move (one-vs-rest AUCs may shift a little, as probabilities rescale per
image). ``test`` is not touched. Refused where a temperature was fitted on images held out of training, which this
would replace with less (``--calibration-folds``, ``--train-on-val``), and for a model whose classifier and
calibration are another's (``--lesion-only``: recalibrate that model, then retrain the lesion head).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import OptionError
from ..manifest import read_manifest, resolve_data_dir, split_frame
from ..models.calibrate import fit_temperature
from ..models.config import ModelConfig
from ..models.network import load_model
from ..tasks import get_task
from .config import DRIFT, FROM_HELD_OUT, refuse_replacing_held_out
from .dataset import ManifestDataset, predict_logits

log = logging.getLogger(__name__)

#: Perturbed copies of val by default.
COPIES = 5


@dataclass(frozen=True)
class DriftCalibration:
    temperature: dict[str, float]  # per head, fitted on val + its perturbed copies
    val_only: dict[str, float]  # per head, fitted on val alone, for the record
    copies: int
    n_cases: int
    val_accuracy: float  # type head, clean val
    perturbed_accuracy: float  # type head, the perturbed copies
    perturbation: dict[str, Any] = field(default_factory=dict)  # the AugmentSpec used (copy k drawn from seed k)

    def record(self) -> dict[str, Any]:
        """What config.json keeps beside the temperature (the card states it): enough to check and redo the fit."""
        return {"method": DRIFT, "copies": self.copies, "seeds": list(range(self.copies)), "cases": self.n_cases,
                "val_type_accuracy": round(self.val_accuracy, 4),
                "perturbed_type_accuracy": round(self.perturbed_accuracy, 4), "val_only_temperature": self.val_only,
                "perturbation": self.perturbation}


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


def fit_drift_temperature(cfg: ModelConfig, data: str | None = None, copies: int = COPIES) -> DriftCalibration:
    """The temperature per head on val plus ``copies`` perturbed copies of it (see the module docstring)."""
    spec = get_task(cfg.task).artefact_augment
    if spec is None:
        raise OptionError(f"--method drift perturbs val with the task's artefact augmentation, and task {cfg.task!r} "
                          "defines none (tasks.py artefact_augment); use another --method.")
    if copies < 1:
        raise OptionError(f"--copies {copies}: give 1 or more perturbed copies of val.")
    cfg.refuse_in_sample_val("fitting a temperature", FROM_HELD_OUT)
    training = cfg.raw.get("training") or {}
    refuse_replacing_held_out(cfg.id, training, "a drift temperature")
    if training.get("lesion_only"):
        raise OptionError(f"{cfg.id} keeps the classifier and calibration of {training.get('init_from')}: recalibrate "
                          "that model, then retrain the lesion head from it (--lesion-only).")
    folder = resolve_data_dir(data, cfg.task)
    val_df = split_frame(read_manifest(folder), "val")
    heads = {h: labels for h, labels in cfg.heads.items() if h == "type" or (h in val_df.columns)}
    if set(heads) != set(cfg.heads):
        raise OptionError(f"{cfg.id} has heads {sorted(cfg.heads)} but val of {folder} labels only {sorted(heads)}: "
                          "give the data set it was trained on (--data).")
    ds = ManifestDataset(folder, val_df, heads, cfg.input, augment=None, desc="decode val")
    model = load_model(cfg)
    clean = predict_logits(model, ds)
    perturbed: dict[str, list[torch.Tensor]] = {h: [] for h in heads}
    for k in range(copies):  # the decoded images are reused; each copy draws its perturbations from seed k
        out = predict_logits(model, ds.augmented(spec, seed=k))
        for h in heads:
            perturbed[h].append(out[h])
    n = len(ds)
    temperature = {h: fit_temperature(torch.cat([clean[h], *perturbed[h]]), ds.targets[h].repeat(copies + 1))
                   for h in heads}
    result = DriftCalibration(
        temperature=temperature, val_only={h: fit_temperature(clean[h], ds.targets[h]) for h in heads}, copies=copies,
        n_cases=n * (copies + 1), val_accuracy=_accuracy(clean["type"], ds.targets["type"]),
        perturbed_accuracy=_accuracy(torch.cat(perturbed["type"]), ds.targets["type"].repeat(copies)),
        perturbation=asdict(spec))
    log.info("%s: temperature %s on %d val + %d perturbed cases (val only: %s); accuracy %.3f clean, %.3f perturbed",
             cfg.id, temperature, n, n * copies, result.val_only, result.val_accuracy, result.perturbed_accuracy)
    return result
