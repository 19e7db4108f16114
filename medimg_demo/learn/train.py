"""Fine-tune a pretrained timm backbone on a manifest data set and write ``models/<id>/``.

Recipe: class-weighted cross-entropy per head; warm-up epochs with the backbone frozen (heads only), then full
fine-tuning with a lower backbone learning rate and a cosine schedule (optionally an average of the weights, see
``averaging``); model selection and early stopping on the ``val`` split; temperature scaling fitted on ``val`` (and a
held-out fold of ``train``, ``--calibration-folds``); or, with ``--train-on-val``, val in training, the last epoch
kept and the temperature from a fold of train + val held out (see ``served_calibration``). Optionally a lesion head,
guidance, box-projection and counterfactual terms, distillation from a trained teacher (see ``batch_loss`` and
``losses``), mixup (see ``mixup``), sharpness-aware steps (see ``sam``), or only the lesion head (``--lesion-only``).
channels_last memory; bf16 autocast where the CPU has native bf16 (AVX512-BF16/AMX), fp32 otherwise or with ``--no-bf16``.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..errors import OptionError
from ..manifest import read_manifest, resolve_data_dir, split_frame
from ..models.config import InputConfig, ModelConfig
from ..models.config_file import write_json_atomic
from ..models.lesion_head import DEFAULT_TAPS
from ..models.network import TumorNet
from ..models.precision import bf16_supported
from ..models.weights import load_checkpoint, save_checkpoint, sha256_file
from ..tasks import get_task
from .averaging import WeightAverage
from .batch_loss import BatchLoss
from .config import TrainConfig, portable_data_path
from .dataset import ManifestDataset, predict_logits
from .holdout import split_calibration_fold
from .lineage import check_sources_blind
from .model_folder import cleans_up, install, refuse_replacing, work_folder
from .losses import class_weights, erased_class_weights
from .mixup import Mixup
from .sam import SharpnessAware
from .selection import lesion_score, selection_score, val_box_hits, val_dice, val_erasure, val_scores
from .served_calibration import check_sibling, served_calibration
from .start import check_sources, init_backbone, init_weights, lesion_width, load_teacher

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@cleans_up
def train(cfg: TrainConfig, exclude: frozenset[str] = frozenset()) -> ModelConfig:
    """Fine-tune, select on val, calibrate (on val, or a held-out train fold + val), write the model folder; return its config.
    The folder is written aside and moved into place at the end (``model_folder``).

    ``exclude``: train images (manifest ``image`` paths) left out, e.g. a cross-validation fold."""
    cfg.check_options()  # before any decoding: a wrong combination is refused at once
    cfg.model_id = cfg.model_id or f"{cfg.task}.{cfg.arch}_v1"
    final = Path(cfg.out_dir) / cfg.model_id
    refuse_replacing(final, cfg.replace)
    seed_everything(cfg.seed)
    if cfg.bf16 and not bf16_supported():
        log.warning("This CPU has no native bf16 (AVX512-BF16/AMX): training in fp32, which is faster here")
        cfg.bf16 = False
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    folder = resolve_data_dir(cfg.data or None, cfg.task)
    df = read_manifest(folder)
    heads: dict[str, list[str]] = {"type": sorted(df["label"].unique().tolist())}
    if cfg.stage and "stage" in df.columns and (df["stage"] != "").all():
        heads["stage"] = sorted(df["stage"].unique().tolist())
    cfg.heads = heads
    pcfg = TumorNet(cfg.arch, heads, pretrained="none").backbone.pretrained_cfg  # RNG use as the recorded recipes had
    # the model as training builds it, before any decoding, so that weights out of reach or a backbone the lesion head
    # cannot tap fail at once; the RNG state is restored, so every recorded recipe still draws the same random numbers
    # (its weights then agree up to CPU floating-point noise: see the README's note on reproducing a model)
    width = lesion_width(cfg)
    with torch.random.fork_rng(devices=[]):
        TumorNet(cfg.arch, heads, pretrained=cfg.pretrained, lesion_taps=DEFAULT_TAPS if cfg.lesion else None,
                 lesion_channels=width)
    input_cfg = InputConfig(
        size=(cfg.size, cfg.size),
        mean=tuple(pcfg.get("mean", (0.485, 0.456, 0.406))),  # type: ignore[arg-type]
        std=tuple(pcfg.get("std", (0.229, 0.224, 0.225))),  # type: ignore[arg-type]
        interpolation="bilinear",
    )
    train_df, held_df = split_frame(df, "train"), None
    if cfg.train_on_val:  # val joins the pool: nothing is selected on it (the last epoch is kept)
        if exclude:
            raise OptionError("--train-on-val trains on val: a cross-validation fold model must hold val out.")
        train_df = pd.concat([train_df, split_frame(df, "val")], ignore_index=True)
    # the start model, teachers and the sibling whose temperature is copied are checked before any image is decoded
    check_sources(cfg)
    sibling = check_sibling(cfg, heads, folder, train_df) if cfg.temperature_from else None
    if cfg.calibration_folds:  # before ``exclude``: the folds are those of the whole train split (or train + val)
        train_df, held_df = split_calibration_fold(folder, train_df, *cfg.held_out_fold())
        if cfg.init_from or cfg.distill_from or cfg.backbone_from:  # none may have trained on the fold (refused
            # before any image is decoded)
            check_sources_blind(cfg, portable_data_path(folder), held_df)
    if exclude:
        unknown = set(exclude) - set(train_df["image"])
        if unknown:
            raise OptionError(f"{len(unknown)} images to leave out are not in train (e.g. {sorted(unknown)[0]}).")
        train_df = train_df[~train_df["image"].isin(exclude)].reset_index(drop=True)
    if cfg.max_train:
        train_df = train_df.sample(n=min(cfg.max_train, len(train_df)), random_state=cfg.seed).reset_index(drop=True)
    val_df = split_frame(df, "val") if not (cfg.train_on_val and held_df is not None) else held_df
    if cfg.train_on_val:
        log.warning("--train-on-val: the epoch scores below are on %s; the last epoch is kept",
                    "the held-out fold" if held_df is not None else "val, which is trained on (in-sample)")
    spec = get_task(cfg.task)
    lesion_column = spec.lesion_column or next((c for c in ("mask", "bbox_xywh_norm") if c in df.columns), None)
    if cfg.lesion and lesion_column not in df.columns:
        raise OptionError(f"--lesion needs lesion annotations: the {cfg.task} manifest has no mask or bbox_xywh_norm column.")
    log.info("Decoding %d train and %d val images at %dpx", len(train_df), len(val_df), cfg.size)
    augment = spec.augment
    if cfg.source_artefacts:
        if spec.artefact_augment is None:
            raise OptionError(f"--source-artefacts: task {cfg.task!r} defines no artefact augmentation (tasks.py).")
        augment = spec.artefact_augment
    if cfg.reframe > 0:
        augment = replace(augment, reframe=cfg.reframe)
    train_ds = ManifestDataset(folder, train_df, heads, input_cfg, augment=augment, seed=cfg.seed, desc="decode train",
                               lesions=cfg.lesion, erase=(cfg.erase_lesion, cfg.erase_elsewhere), normal_label=spec.normal_label,
                               infill=cfg.erase_infill, pairs=cfg.pair_margin > 0)
    val_ds = ManifestDataset(folder, val_df, heads, input_cfg, augment=None, desc="decode val", lesions=cfg.lesion)
    taps = DEFAULT_TAPS if cfg.lesion else None
    model = TumorNet(cfg.arch, heads, pretrained=cfg.pretrained, drop_rate=cfg.drop_rate, lesion_taps=taps,
                     lesion_channels=width)
    if cfg.init_from:
        frozen = cfg.lesion_only or cfg.head_only  # a part retrained on the start model's frozen backbone
        init_weights(model, cfg.init_from, (heads["type"], input_cfg) if frozen else None, complete=frozen,
                     out_dir=cfg.out_dir, new_lesion_head=cfg.lesion_only)
    if cfg.backbone_from:
        init_backbone(model, cfg.backbone_from, cfg.task, cfg.arch, cfg.out_dir)
    model = model.to(memory_format=torch.channels_last)  # faster on CPU in fp32 and bf16 alike
    teacher = load_teacher(cfg.distill_from, heads["type"], input_cfg, cfg.out_dir) if cfg.distill_from else None
    weights = {h: class_weights(train_ds.targets[h], len(labels)) for h, labels in heads.items()}
    if cfg.reweight_erased and cfg.erase_lesion > 0 and train_ds.masks is not None and train_ds.normal_index is not None:
        # the class weights follow the labels the model will see: a covered lesion's image counts as no tumor
        weights["type"] = erased_class_weights(train_ds.targets["type"], train_ds.masks, train_ds.normal_index,
                                               len(heads["type"]), cfg.erase_lesion)
    g = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, drop_last=len(train_ds) > cfg.batch_size, generator=g)

    head_params = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    back_params = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
    if cfg.lesion_only:  # the classifier and the backbone stay exactly as loaded; only the lesion head learns
        model.requires_grad_(False)
        model.lesion.requires_grad_(True)  # type: ignore[union-attr]
        head_params, back_params = list(model.lesion.parameters()), []  # type: ignore[union-attr]
    if cfg.head_only:  # only the classifier learns, on the start model's features; the lesion head stays too
        model.requires_grad_(False)
        model.heads.requires_grad_(True)
        head_params, back_params = list(model.heads.parameters()), []
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"score": -1.0}
    out, in_use = work_folder(final)
    best_path = out / "weights.safetensors"
    bad_epochs = 0
    total_epochs = cfg.warmup_epochs + cfg.epochs
    opt: torch.optim.Optimizer | None = None
    sched: torch.optim.lr_scheduler.LRScheduler | None = None
    t0, average, mixup = time.time(), WeightAverage(cfg.ema_halflife, len(loader)), Mixup(cfg.mixup, cfg.seed)
    sam = SharpnessAware(cfg.sam, model)
    batch_loss = BatchLoss(model, cfg, heads, weights, teacher, train_ds.normal_index)
    for epoch in range(total_epochs):
        warm = epoch < cfg.warmup_epochs
        if epoch == 0 or epoch == cfg.warmup_epochs:
            for p in back_params:
                p.requires_grad_(not warm)
            if warm:
                opt = torch.optim.AdamW(head_params, lr=cfg.lr_head, weight_decay=cfg.weight_decay)
                sched = None
            else:
                opt = torch.optim.AdamW([{"params": back_params, "lr": cfg.lr_backbone},
                                         {"params": head_params, "lr": cfg.lr_head}], weight_decay=cfg.weight_decay)
                sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[cfg.lr_backbone, cfg.lr_head], pct_start=0.15,
                                                            total_steps=max(cfg.epochs * len(loader), 1), anneal_strategy="cos")
                average.start(model)  # --ema-halflife: averaged from the first fine-tuning step
        assert opt is not None
        # BatchNorm stays in train mode during the warm-up too: its statistics adapt to the new domain while the
        # weights are frozen, so the heads learn on the same features the fine-tuning phase starts from.
        # With freeze_bn the ImageNet statistics are kept throughout (BN layers in eval mode).
        model.train()
        if cfg.lesion_only or cfg.head_only:
            model.backbone.eval()
            if cfg.head_only and model.lesion is not None:
                model.lesion.eval()
        elif cfg.freeze_bn:
            for mod in model.backbone.modules():  # the new lesion head learns its own statistics
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    mod.eval()
        running, seen = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{total_epochs}{' (warm-up)' if warm else ''}", unit="batch", leave=False, mininterval=2.0)
        for x, ys in bar:
            n, (x, mix) = len(x), mixup(x)  # --mixup: a mixed batch (classification only), else x as it was
            opt.zero_grad(set_to_none=True)
            loss = sam.backward(partial(batch_loss, x, ys, mix), opt)  # --sam: the gradient at perturbed weights
            opt.step()
            if sched is not None:
                sched.step()
            average.update(model)
            running += float(loss.detach()) * n  # type: ignore[union-attr]
            seen += n
            bar.set_postfix(loss=f"{running / seen:.3f}")
        # Select in the precision the app serves (fp32): bf16 val scores differed by up to 0.04 accuracy.
        judged = average.judged(model)  # the weights scored and saved: the average's with --ema-halflife
        val_logits = predict_logits(judged, val_ds, bf16=cfg.bf16 and cfg.select_bf16, lesion=cfg.lesion)
        val_lesion = val_logits.pop("lesion", None)
        scores = val_scores(val_logits, val_ds, weights)
        if val_lesion is not None and val_ds.masks is not None:
            scores["lesion_dice"] = val_dice(val_lesion, val_ds.masks)
            if lesion_column == "bbox_xywh_norm":
                scores["lesion_box_hits"] = val_box_hits(val_lesion, val_ds.masks)
        if cfg.select_erasure > 0:
            scores.update(val_erasure(judged, val_ds, val_logits["type"], seed=cfg.seed))
        # macro F1 (+ Dice, + erasure test where asked); the lesion head's own score when only it trains
        score = lesion_score(scores) if cfg.lesion_only else selection_score(scores, cfg.select_erasure)
        row = {"epoch": epoch + 1, "warmup": warm, "train_loss": running / max(seen, 1), **scores, "seconds": round(time.time() - t0, 1)}
        history.append(row)
        log.info(
            "epoch %d/%d train_loss %.3f val_loss %.3f val_acc %.3f val_macro_f1 %.3f val_lesion_dice %s%s",
            epoch + 1, total_epochs, row["train_loss"], scores["loss"], scores["type_acc"], scores["type_macro_f1"],
            f"{scores['lesion_dice']:.3f}" if "lesion_dice" in scores else "-",
            "".join(f" val_{k} {scores[k]:.3f}" for k in ("lesion_box_hits", "erase_lost", "elsewhere_kept") if k in scores),
        )
        if score > best["score"] or cfg.train_on_val:
            best = {"score": score, "epoch": epoch + 1, **scores}
            save_checkpoint(judged, best_path, fp16=True)
            bad_epochs = 0
        elif not warm and not cfg.train_on_val and epoch >= cfg.warmup_epochs + cfg.min_epochs:
            bad_epochs += 1
            if bad_epochs >= cfg.patience:
                log.info("Early stop: val did not improve for %d epochs", cfg.patience)
                break

    # Reload the selected epoch exactly as it will be served (fp16 weights), then calibrate (see served_calibration).
    served = TumorNet(cfg.arch, heads, pretrained="none", lesion_taps=taps, lesion_channels=width)
    sha = sha256_file(best_path)  # written by this run a moment ago: pinned here, checked on every later load
    load_checkpoint(served, best_path, sha)
    temperature, kept_calibration = served_calibration(cfg, served, folder, held_df, heads, input_cfg, val_ds, sibling)
    config = {
        "id": cfg.model_id,
        "task": cfg.task,
        "task_title": get_task(cfg.task).title,
        "arch": cfg.arch,
        "heads": heads,
        "input": {"size": [cfg.size, cfg.size], "mean": list(input_cfg.mean), "std": list(input_cfg.std), "interpolation": "bilinear",
                  "dicom_windows": {k: list(v) for k, v in get_task(cfg.task).dicom_windows.items()}},
        "target_layer": cfg.target_layer,
        **({"lesion": {"taps": list(taps), "channels": width, "threshold": 0.5}} if taps else {}),
        "temperature": temperature,
        **kept_calibration,
        "weights": {"file": "weights.safetensors", "sha256": sha, "dtype": "float16"},
        "default": cfg.default,
        "selected_epoch": best.get("epoch"),
        **_scores_record(cfg, held_df is not None, best),
        "training": {**{k: v for k, v in asdict(cfg).items() if k not in ("heads", "replace")}, "data": portable_data_path(folder)},
        "training_seconds": round(time.time() - t0, 1),
        "torch": torch.__version__,
    }
    write_json_atomic(out / "config.json", config)
    pd.DataFrame(history).to_csv(out / "training_log.csv", index=False)
    install(out, final, cfg.replace, in_use)
    log.info("Wrote %s (selected epoch %s, temperature %s)", final, best.get("epoch"), temperature)
    return ModelConfig.from_dict(config, folder=final)


def _scores_record(cfg: TrainConfig, held_out: bool, best: dict[str, Any]) -> dict[str, Any]:
    """The epoch's scores config.json keeps: val's at selection; with --train-on-val the held-out fold's at the last
    epoch (the images its temperature is fitted on), or none (val was trained on: its scores are in-sample)."""
    scores = {k: v for k, v in best.items() if k not in ("score", "epoch")}
    if not cfg.train_on_val:
        return {"val_at_selection": scores}
    return {"held_out_at_last_epoch": scores} if held_out else {}
