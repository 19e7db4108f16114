"""Training options as one dataclass: the ``train`` command line, the record saved in config.json and the command a
model card prints are all generated from it (see ``options``). No torch here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OptionError
from ..models.config import DEFAULT_LESION_CHANNELS
from ..options import command_args
from ..paths import data_root
from ..tasks import get_task


def teacher_ids(distill_from: str) -> list[str]:
    """The model ids ``--distill-from`` names, comma-separated (one teacher, or an ensemble)."""
    ids = [t.strip() for t in distill_from.split(",") if t.strip()]
    if not ids or len(set(ids)) != len(ids):
        raise OptionError(f"--distill-from {distill_from!r}: name one model id, or several separated by commas, each "
                          "once.")
    return ids


def _opt(default: Any, help: str, **meta: Any) -> Any:  # noqa: A002 - argparse's word
    return field(default=default, metadata={"help": help, **meta})


#: Numeric options' allowed ranges (inclusive) and how the refusal says it.
_RANGES: tuple[tuple[str, float, float, str], ...] = (
    ("size", 32, 1024, "an input side of 32 to 1024 pixels"),
    ("epochs", 0, 1000, "0 or more epochs"), ("warmup_epochs", 0, 1000, "0 or more warm-up epochs"),
    ("batch_size", 1, 4096, "a batch size of 1 or more"),
    ("lr_head", 1e-12, 10.0, "a learning rate above 0"), ("lr_backbone", 0.0, 10.0, "a learning rate of 0 or more"),
    ("weight_decay", 0.0, 10.0, "a weight decay of 0 or more"),
    ("label_smoothing", 0.0, 0.99, "a label smoothing from 0 to below 1"),
    ("focal_gamma", 0.0, 10.0, "a focusing parameter from 0 (cross-entropy) to 10"),
    ("drop_rate", 0.0, 0.99, "a dropout rate from 0 to below 1"), ("mixup", 0.0, 10.0, "an alpha from 0 (off) to 10"),
    ("sam", 0.0, 1.0, "a radius from 0 (off) to 1"), ("reframe", 0.0, 1.0, "a probability from 0 (off) to 1"),
    ("patience", 1, 10_000, "a patience of 1 or more epochs"), ("min_epochs", 0, 10_000, "0 or more epochs"),
    ("threads", 0, 1024, "0 (torch's default) or more threads"), ("max_train", 0, 10**9, "0 (all) or more images"),
    ("lesion_channels", 0, 1024, "a decoder width of 1 to 1024 channels (0: the start model's)"),
    ("lesion_weight", 0.0, 1e6, "a weight of 0 or more"), ("guidance_weight", 0.0, 1e6, "a weight of 0 or more"),
    ("projection_weight", 0.0, 1e6, "a weight of 0 or more"), ("distill_weight", 0.0, 1e6, "a weight of 0 or more"),
    ("select_erasure", 0.0, 1e6, "a weight of 0 or more"), ("ema_halflife", 0.0, 1000.0, "0 (off) or more epochs"),
    ("erase_lesion", 0.0, 1.0, "a probability from 0 to 1"), ("erase_elsewhere", 0.0, 1.0, "a probability from 0 to 1"),
)


@dataclass
class TrainConfig:
    """One training run. Each field is also a ``train`` option (generated, see ``options``) and is saved in the
    model's config.json, from which the model card prints the command that reproduces it."""

    task: str = field(metadata={"help": "task name, e.g. lung_ct, breast_us, brain_mri"})
    data: str = _opt("", "data set folder with manifest.csv (default: $MEDIMG_DATA_DIR/<task> or ../shared/data/<task>)")
    model_id: str = _opt("", "model id (default: <task>.<arch>_v1)", flag="--id")
    out_dir: str = _opt("models", "folder the model folder is written to", flag="--out")
    arch: str = _opt("tf_efficientnet_lite0", "timm architecture")
    pretrained: str = _opt("auto", "ImageNet weights: offline package, timm's hub, none, or auto",
                           choices=["auto", "offline", "hub", "none"])
    size: int = _opt(224, "input side in pixels")
    epochs: int = _opt(15, "full fine-tuning epochs (after warm-up)")
    warmup_epochs: int = _opt(2, "epochs with the backbone frozen")
    batch_size: int = _opt(32, "batch size")
    lr_head: float = _opt(1e-3, "learning rate of the heads")
    lr_backbone: float = _opt(3e-4, "learning rate of the backbone")
    weight_decay: float = _opt(1e-2, "AdamW weight decay")
    label_smoothing: float = _opt(0.05, "label smoothing of the cross-entropy")
    focal_gamma: float = _opt(0.0, "focal loss (Lin et al., 2017; for calibration Mukhoti et al., 2020): weight each "
                                   "image's cross-entropy by (1 - p_true)^gamma (0: plain cross-entropy)")
    mixup: float = _opt(0.0, "mixup (Zhang et al., 2018; for calibration Thulasidasan et al., 2019): train on convex "
                             "mixes of two images and of their labels, the weight drawn from Beta(alpha, alpha) per "
                             "batch (0: off; classification only)")
    sam: float = _opt(0.0, "sharpness-aware minimisation (Foret et al., 2021): take each step's gradient at the weights "
                           "moved this radius along the normalised gradient (0: off; about twice the training time)")
    drop_rate: float = _opt(0.2, "dropout before the heads")
    patience: int = _opt(5, "early stop after this many epochs without val improvement")
    freeze_bn: bool = _opt(False, "keep ImageNet BatchNorm statistics during fine-tuning (small data sets: steadier)")
    min_epochs: int = _opt(4, "fine-tuning epochs before early stopping may count (the LR is still rising)")
    seed: int = _opt(0, "random seed")
    bf16: bool = _opt(True, "train in fp32 (slower) instead of bf16 autocast")
    select_bf16: bool = _opt(False, "score val under bf16 for epoch selection (reproduces models trained before fp32 "
                                    "selection); the default scores val in fp32, the precision the app serves")
    threads: int = _opt(0, "torch threads (0: torch's default)")
    stage: bool = _opt(True, "do not add a stage head even if the manifest has one")
    max_train: int = _opt(0, "cap training images (smoke tests; 0 = all)")
    lesion: bool = _opt(False, "train a lesion head on the data set's lesion masks or boxes (breast_us, brain_mri)")
    lesion_weight: float = _opt(1.0, "weight of the lesion head's loss (BCE + Dice)")
    lesion_channels: int = _opt(0, "width of the lesion head's decoder (0: the --init-from model's, else "
                                   f"{DEFAULT_LESION_CHANNELS}); fewer channels predict faster (with --lesion-only, a width "
                                   "other than the start model's head trains a new head)")
    guidance_weight: float = _opt(0.0, "weight of the guidance loss: class evidence outside the annotated lesion")
    projection_weight: float = _opt(0.0, "weight of the box-projection loss (BoxInst): the lesion map's row and column "
                                         "maxima follow the annotation's, so the lesion's extent is the box's")
    lesion_only: bool = _opt(False, "train only the lesion head of the --init-from model; its classifier, its calibration "
                                    "and the backbone stay as they are (epochs selected on val box hits or Dice)")
    head_only: bool = _opt(False, "train only the type (and stage) head of the --init-from model on its frozen "
                                  "backbone, with the covers, guidance and selection asked for; the lesion head stays")
    erase_lesion: float = _opt(0.0, "probability of covering the lesion in a training image (labelled no tumor)")
    erase_elsewhere: float = _opt(0.0, "probability of covering a same-sized region elsewhere (label kept)")
    erase_infill: str = _opt("patch", "how a region is covered: a patch of the same image, or mixed (half of the time "
                                      "the border in-fill evaluation uses), or patch_smooth (half of the time the "
                                      "smooth in-fill), or varied (patch, smooth in-fill or the strip beside the "
                                      "region, a third each); the last two keep the test's border in-fill out of training",
                       choices=["patch", "mixed", "patch_smooth", "varied"])
    pair_margin: float = _opt(0.0, "paired counterfactuals: each tumor image is seen with a twin whose lesion (or, half "
                                   "of the time, a region elsewhere) is in-filled; the twin's no-tumor log-odds must "
                                   "exceed the image's by this margin (elsewhere: stay equal). No label is switched, "
                                   "so no prior for no tumor is learned (0: off)")
    pair_elsewhere: float = _opt(1.0, "weight of the pair term's elsewhere part: a twin with a region away from the "
                                      "lesion in-filled keeps the image's no-tumor log-odds (with --pair-margin)")
    source_artefacts: bool = _opt(False, "augment against source artefacts as the task defines it "
                                         "(brain_mri: blur, resampling, noise, wider scale; lung_ct: "
                                         "display contrast, blur, resampling, burned-in marks)")
    reframe: float = _opt(0.0, "against framing shortcuts: with this probability a training image's body is cropped "
                               "to its box and put back with a random margin (up to 0.15 of the side) on a random "
                               "background grey (0 half of the time, else 0.05-0.3); the body is not changed (0: off)")
    reweight_erased: bool = _opt(False, "class weights from the labels after counterfactual covering (a covered "
                                        "lesion's image counts as no tumor)")
    select_erasure: float = _opt(0.0, "weight of the val lesion-erasure test (call lost, calls kept elsewhere) in "
                                      "epoch selection, beside macro F1 (0: F1 and Dice only)")
    distill_from: str = _opt("", "a trained model id (same type labels and input), or several separated by commas (their "
                                 "mean probabilities), whose softened type probabilities the model follows on images "
                                 "whose lesion is not covered (knowledge distillation)")
    distill_weight: float = _opt(0.0, "weight of the distillation term (with --distill-from)")
    calibration_folds: int = _opt(0, "hold one fold of train out of training (train split into this many folds, "
                                     "stratified by label, near-duplicate twins together) and fit the temperature on "
                                     "it plus val (0: val only); with --train-on-val a fold of train + val, and the "
                                     "temperature on it alone")
    calibration_fold: int = _opt(0, "which fold --calibration-folds holds out, counted from 0 (0 to folds - 1)")
    calibration_seed: int = _opt(0, "seed of the fold split --calibration-folds makes (the same folds whatever --seed, "
                                    "so models of several seeds can hold out the same images)")
    train_on_val: bool = _opt(False, "train on train + val: val then selects nothing (the last epoch is kept); the "
                                     "temperature comes from a fold of that pool held out (--calibration-folds) or "
                                     "from a sibling model that held one out (--temperature-from)")
    temperature_from: str = _opt("", "with --train-on-val and no fold held out: copy the temperature of this trained "
                                     "model, one of the same recipe that held a calibration fold out of the pool")
    ema_halflife: float = _opt(0.0, "score, select and save an exponential moving average of the weights over the "
                                    "fine-tuning steps, whose weight on a step halves after this many epochs (0: off)")
    init_from: str = _opt("", "start from this trained model's weights (a model id, looked up in --out first, then "
                              "the registry); new layers start fresh")
    backbone_from: str = _opt("", "start the backbone from another task's trained model of the same architecture "
                                  "(a model id) instead of ImageNet weights; its heads are not taken")
    target_layer: str = _opt("features", "layer Grad-CAM explains (written to config.json)")
    replace: bool = _opt(False, "replace the model folder --out/--id if it exists, once the run has finished (not "
                                "saved in the training record)")
    default: bool = field(default=True, metadata={"cli": False})
    heads: dict[str, list[str]] = field(default_factory=dict, metadata={"cli": False})

    def held_out_fold(self) -> tuple[int, int, int]:
        """(folds, fold, fold split seed) of the calibration fold this run holds out (with --calibration-folds)."""
        return self.calibration_folds, self.calibration_fold, self.calibration_seed

    def check_options(self) -> None:
        """Refuse values and combinations of options that cannot mean what they say, naming the option to fix."""
        for name, low, high, what in _RANGES:
            value = getattr(self, name)
            if not low <= value <= high:
                raise OptionError(f"--{name.replace('_', '-')} {value}: give {what}.")
        if self.reframe and not get_task(self.task).framed_body:
            raise OptionError(f"--reframe: {get_task(self.task).title} images show no body on a flat background to "
                              "reframe; leave it out.")
        if self.epochs + self.warmup_epochs < 1:
            raise OptionError("--epochs and --warmup-epochs are both 0: nothing would be trained; give --epochs 1 or more.")
        if bool(self.distill_from) != (self.distill_weight > 0):
            raise OptionError("--distill-from and --distill-weight go together: give a teacher model and a weight above 0.")
        if self.distill_from:
            teacher_ids(self.distill_from)
        if self.lesion_only and not (self.lesion and self.init_from and self.lesion_weight > 0):
            raise OptionError("--lesion-only retrains the lesion head of a trained model: give --lesion, --init-from "
                              "MODEL and a --lesion-weight above 0.")
        if self.lesion_channels and not self.lesion:
            raise OptionError("--lesion-channels sets the width of the lesion head: add --lesion.")
        if self.projection_weight and not self.lesion:
            raise OptionError("--projection-weight trains the lesion head: add --lesion.")
        if self.head_only and (self.lesion_only or not self.init_from):
            raise OptionError("--head-only retrains the classifier of a trained model: give --init-from MODEL, and not "
                              "--lesion-only (keep the start model's lesion head with --lesion).")
        if self.lesion_only and (self.guidance_weight or self.distill_from or self.select_erasure or self.pair_margin):
            raise OptionError("--lesion-only keeps the classifier as it is: --guidance-weight, --distill-from, "
                              "--select-erasure and --pair-margin act on the classifier; leave them out.")
        if self.pair_margin < 0 or (self.pair_margin and not self.lesion):
            raise OptionError("--pair-margin needs the lesion annotations (add --lesion) and a margin of 0 or more.")
        if (self.calibration_fold or self.calibration_seed) and not self.calibration_folds:
            raise OptionError("--calibration-fold K and --calibration-seed S pick the fold --calibration-folds N holds "
                              "out: give N too.")
        if self.calibration_folds and not (2 <= self.calibration_folds and 0 <= self.calibration_fold < self.calibration_folds):
            raise OptionError("--calibration-folds N holds out fold --calibration-fold K (counted from 0: 0 <= K < N, N >= 2).")
        if self.backbone_from and self.init_from:
            raise OptionError("--backbone-from starts the backbone and --init-from the whole model: give one of them.")
        if self.ema_halflife and not self.epochs:
            raise OptionError("--ema-halflife averages the fine-tuning steps, and --epochs 0 runs none: give --epochs "
                              "1 or more, or leave --ema-halflife out.")
        self._check_pool_options()
        if self.mixup and (self.lesion or self.erase_lesion or self.erase_elsewhere or self.distill_from):
            raise OptionError("--mixup mixes two images into one: a lesion mask, a cover or a teacher's call has no "
                              "meaning for it. Leave out --lesion, --erase-lesion, --erase-elsewhere and --distill-from.")
        if self.pair_elsewhere < 0:
            raise OptionError("--pair-elsewhere is a weight: give 0 or more.")
        if self.pair_margin and (self.erase_lesion or self.erase_elsewhere):
            raise OptionError("--pair-margin makes each image's counterfactual twin itself and never switches a label: "
                              "leave out --erase-lesion and --erase-elsewhere.")

    def _check_pool_options(self) -> None:
        """--train-on-val and --temperature-from: val is trained on, so nothing may be selected or calibrated on it."""
        if self.temperature_from and not self.train_on_val:
            raise OptionError("--temperature-from is for a --train-on-val run, which has no images left to calibrate "
                              "on; without --train-on-val the temperature is fitted on val (or a held-out fold + val).")
        if not self.train_on_val:
            return
        if bool(self.calibration_folds) == bool(self.temperature_from):
            raise OptionError("--train-on-val trains on val, so the temperature needs images the model never saw: "
                              "give either --calibration-folds N (a fold of train + val held out) or --temperature-from "
                              "MODEL.")
        if self.init_from or self.backbone_from or self.distill_from or self.lesion_only or self.head_only:
            raise OptionError("--train-on-val trains from ImageNet weights: --init-from, --backbone-from, "
                              "--distill-from, --lesion-only and --head-only bring a model that trained on the images "
                              "this run holds out, or was selected on val; leave them out.")
        if self.temperature_from and self.temperature_from == self.model_id:
            raise OptionError(f"--temperature-from {self.temperature_from} names this run's own --id: give the sibling "
                              "that held a fold out, under another id.")
        if self.select_erasure:
            raise OptionError("--train-on-val keeps the last epoch (val is trained on): --select-erasure selects on "
                              "val; leave it out.")


#: config.json's ``calibration.method`` of a temperature fitted on a train fold held out of training (``holdout``).
HELD_OUT = "held-out fold"
#: config.json's ``calibration.method`` of a temperature copied from a sibling that held a fold out
#: (``--temperature-from``).
SIBLING = "sibling's held-out fold"
#: config.json's ``calibration.method`` of a temperature fitted on val and perturbed copies of it (``drift_calibration``).
DRIFT = "temperature scaling (NLL) on val + perturbed copies of val (drift)"
#: What to do instead of recalibrating on val a model trained on val.
FROM_HELD_OUT = "its temperature comes from a held-out fold (see its card), and no calibration is ever fitted on test"

#: Options a model card always prints, even at their default value (the rest only where they differ).
CARD_OPTIONS = ("task", "arch", "size", "epochs", "warmup_epochs", "batch_size", "lr_head", "lr_backbone", "patience",
                "min_epochs", "label_smoothing", "seed", "model_id")


def refuse_replacing_held_out(model_id: str, training: dict[str, Any], method: str) -> None:
    """Refuse a calibration ``method`` fitted on val alone for a model calibrated on a train fold held out of its
    training plus val (``--calibration-folds``): it would replace that calibration with one fitted on less."""
    if training.get("calibration_folds"):
        raise OptionError(f"{model_id} is calibrated on a train fold held out of its training plus val; {method} fits "
                          "on val alone and would replace that with less. Keep it, or retrain without "
                          "--calibration-folds.")


def train_command(training: dict[str, Any]) -> str:
    """The ``train`` command line that reproduces a saved training record (config.json's ``training``)."""
    values = dict(training)
    values.setdefault("select_bf16", True)  # records written before the option were selected under bf16 val scores
    if values.get("calibration_folds"):  # records written before the option split the folds with the training seed
        values.setdefault("calibration_seed", values.get("seed", 0))
    return "python -m medimg_demo train " + command_args(TrainConfig, values, always=CARD_OPTIONS,
                                                         skip=("data", "out_dir"))


def portable_data_path(folder: Path) -> str:
    """The data folder as written into config.json: relative to the data root, never a machine's absolute path."""
    try:
        return folder.resolve().relative_to(data_root().resolve()).as_posix()
    except ValueError:
        return folder.name
