"""Fine-tune a pretrained timm backbone on a manifest data set and write ``models/<id>/``.

Recipe: class-weighted cross-entropy per head; warm-up epochs with the backbone frozen (heads
only), then full fine-tuning with a lower backbone learning rate and a cosine schedule; model
selection and early stopping on the ``val`` split; temperature scaling fitted on ``val``.
bf16 autocast and channels_last on CPU (about 2x faster here) unless ``--no-bf16``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from .calibrate import fit_temperature
from .data import TASK_AUGMENT, Augment, ManifestDataset, read_manifest, split_frame
from .errors import DataError
from .model import TumorNet
from .registry import InputConfig, ModelConfig
from .weights import save_checkpoint

log = logging.getLogger(__name__)

#: What a DICOM of each task shows the model (the PNG training data were exported with such windows).
TASK_DICOM_WINDOWS: dict[str, dict[str, list[float]]] = {"lung_ct": {"CT": [-600.0, 1500.0]}}
TASK_TITLES = {"lung_ct": "Lung CT", "breast_us": "Breast ultrasound", "brain_mri": "Brain MRI"}
#: Grad-CAM target: the backbone's last feature map (after conv_head + BN + activation).
TARGET_LAYERS = {"efficientnet": "backbone.bn2"}


@dataclass
class TrainConfig:
    data: str
    task: str
    model_id: str
    out_dir: str = "models"
    arch: str = "tf_efficientnet_lite0"
    pretrained: str = "auto"
    size: int = 224
    epochs: int = 15
    warmup_epochs: int = 2
    batch_size: int = 32
    lr_head: float = 1e-3
    lr_backbone: float = 3e-4
    weight_decay: float = 1e-2
    label_smoothing: float = 0.05
    drop_rate: float = 0.2
    patience: int = 5
    freeze_bn: bool = False  # keep the ImageNet BatchNorm statistics (small data sets: steadier fine-tuning)
    min_epochs: int = 4  # full fine-tuning epochs before early stopping may count (the LR is still rising)
    seed: int = 0
    bf16: bool = True
    #: select epochs on val scored under bf16 autocast (how models before 2026-11-24 were selected); the default
    #: scores val in fp32, the precision the app serves
    select_bf16: bool = False
    threads: int = 0
    stage: bool = True  # add a stage head when the manifest has a 'stage' column
    max_train: int = 0  # for smoke tests: cap the training images (0 = all)
    default: bool = True
    heads: dict[str, list[str]] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def target_layer_for(arch: str) -> str:
    for key, layer in TARGET_LAYERS.items():
        if key in arch:
            return layer
    raise DataError(f"No Grad-CAM target layer is known for {arch!r}; add it to TARGET_LAYERS.")


def _class_weights(targets: torch.Tensor, n: int) -> torch.Tensor:
    counts = torch.bincount(targets, minlength=n).float().clamp(min=1)
    return counts.sum() / (n * counts)


@torch.no_grad()
def predict_logits(model: TumorNet, ds: ManifestDataset, batch_size: int = 64, bf16: bool = False) -> dict[str, torch.Tensor]:
    """Logits of every image in ``ds`` (no augmentation), in order."""
    model.eval()
    outs: dict[str, list[torch.Tensor]] = {}
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
    for x, _ in loader:
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        for k, v in out.items():
            outs.setdefault(k, []).append(v.float())
    return {k: torch.cat(v) for k, v in outs.items()}


def _val_scores(logits: dict[str, torch.Tensor], ds: ManifestDataset, weights: dict[str, torch.Tensor]) -> dict[str, float]:
    scores: dict[str, float] = {}
    loss = 0.0
    for head, lg in logits.items():
        y = ds.targets[head]
        loss += float(F.cross_entropy(lg, y, weight=weights[head]))
        pred = lg.argmax(1)
        scores[f"{head}_acc"] = float((pred == y).float().mean())
        f1s = []
        for c in range(lg.shape[1]):
            tp = int(((pred == c) & (y == c)).sum())
            fp = int(((pred == c) & (y != c)).sum())
            fn = int(((pred != c) & (y == c)).sum())
            f1s.append(2 * tp / max(2 * tp + fp + fn, 1))
        scores[f"{head}_macro_f1"] = float(np.mean(f1s))
    scores["loss"] = loss
    return scores


def train(cfg: TrainConfig) -> ModelConfig:
    """Fine-tune, select on val, calibrate on val, and write the model folder. Returns its config."""
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    folder = Path(cfg.data)
    df = read_manifest(folder)
    heads: dict[str, list[str]] = {"type": sorted(df["label"].unique().tolist())}
    if cfg.stage and "stage" in df.columns and (df["stage"] != "").all():
        heads["stage"] = sorted(df["stage"].unique().tolist())
    cfg.heads = heads
    backbone_probe = TumorNet(cfg.arch, heads, pretrained="none")
    pcfg = backbone_probe.backbone.pretrained_cfg
    del backbone_probe
    input_cfg = InputConfig(
        size=(cfg.size, cfg.size),
        mean=tuple(pcfg.get("mean", (0.485, 0.456, 0.406))),  # type: ignore[arg-type]
        std=tuple(pcfg.get("std", (0.229, 0.224, 0.225))),  # type: ignore[arg-type]
        interpolation="bilinear",
    )
    train_df = split_frame(df, "train")
    if cfg.max_train:
        train_df = train_df.sample(n=min(cfg.max_train, len(train_df)), random_state=cfg.seed).reset_index(drop=True)
    val_df = split_frame(df, "val")
    augment: Augment = TASK_AUGMENT.get(cfg.task, Augment())
    log.info("Decoding %d train and %d val images at %dpx", len(train_df), len(val_df), cfg.size)
    train_ds = ManifestDataset(folder, train_df, heads, input_cfg, augment=augment, seed=cfg.seed, desc="decode train")
    val_ds = ManifestDataset(folder, val_df, heads, input_cfg, augment=None, desc="decode val")

    model = TumorNet(cfg.arch, heads, pretrained=cfg.pretrained, drop_rate=cfg.drop_rate)
    if cfg.bf16:
        model = model.to(memory_format=torch.channels_last)
    weights = {h: _class_weights(train_ds.targets[h], len(labels)) for h, labels in heads.items()}
    g = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, drop_last=len(train_ds) > cfg.batch_size, generator=g)

    head_params = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    back_params = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"score": -1.0}
    out = Path(cfg.out_dir) / cfg.model_id
    out.mkdir(parents=True, exist_ok=True)
    best_path = out / "weights.safetensors"
    bad_epochs = 0
    total_epochs = cfg.warmup_epochs + cfg.epochs
    opt: torch.optim.Optimizer | None = None
    sched: torch.optim.lr_scheduler.LRScheduler | None = None
    t0 = time.time()
    for epoch in range(total_epochs):
        warm = epoch < cfg.warmup_epochs
        if epoch == 0 or epoch == cfg.warmup_epochs:
            for p in back_params:
                p.requires_grad_(not warm)
            if warm:
                opt = torch.optim.AdamW(head_params, lr=cfg.lr_head, weight_decay=cfg.weight_decay)
                sched = None
            else:
                opt = torch.optim.AdamW(
                    [{"params": back_params, "lr": cfg.lr_backbone}, {"params": head_params, "lr": cfg.lr_head}],
                    weight_decay=cfg.weight_decay,
                )
                sched = torch.optim.lr_scheduler.OneCycleLR(
                    opt,
                    max_lr=[cfg.lr_backbone, cfg.lr_head],
                    total_steps=max(cfg.epochs * len(loader), 1),
                    pct_start=0.15,
                    anneal_strategy="cos",
                )
        assert opt is not None
        # BatchNorm stays in train mode during the warm-up too: its statistics adapt to the new domain while the
        # weights are frozen, so the heads learn on the same features the fine-tuning phase starts from.
        # With freeze_bn the ImageNet statistics are kept throughout (BN layers in eval mode).
        model.train()
        if cfg.freeze_bn:
            for mod in model.modules():
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    mod.eval()
        running, seen = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{total_epochs}{' (warm-up)' if warm else ''}", unit="batch", leave=False, mininterval=2.0)
        for x, ys in bar:
            if cfg.bf16:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                logits = model(x)
            loss = sum(
                F.cross_entropy(logits[h].float(), ys[h], weight=weights[h], label_smoothing=cfg.label_smoothing)
                for h in heads
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            opt.step()
            if sched is not None:
                sched.step()
            running += float(loss.detach()) * len(x)  # type: ignore[union-attr]
            seen += len(x)
            bar.set_postfix(loss=f"{running / seen:.3f}")
        # Select in the precision the app serves (fp32): bf16 val scores differed by up to 0.04 accuracy.
        val_logits = predict_logits(model, val_ds, bf16=cfg.bf16 and cfg.select_bf16)
        scores = _val_scores(val_logits, val_ds, weights)
        # Selection on val: macro F1 of the type head, ties broken by lower val loss.
        score = scores["type_macro_f1"] - 1e-4 * scores["loss"]
        row = {"epoch": epoch + 1, "warmup": warm, "train_loss": running / max(seen, 1), **scores, "seconds": round(time.time() - t0, 1)}
        history.append(row)
        log.info(
            "epoch %d/%d train_loss %.3f val_loss %.3f val_acc %.3f val_macro_f1 %.3f",
            epoch + 1, total_epochs, row["train_loss"], scores["loss"], scores["type_acc"], scores["type_macro_f1"],
        )
        if score > best["score"]:
            best = {"score": score, "epoch": epoch + 1, **scores}
            save_checkpoint(model, best_path, fp16=True)
            bad_epochs = 0
        elif not warm and epoch >= cfg.warmup_epochs + cfg.min_epochs:
            bad_epochs += 1
            if bad_epochs >= cfg.patience:
                log.info("Early stop: val did not improve for %d epochs", cfg.patience)
                break

    # Reload the selected epoch exactly as it will be served (fp16 weights), then calibrate on val.
    from .weights import load_checkpoint, sha256_file

    served = TumorNet(cfg.arch, heads, pretrained="none")
    load_checkpoint(served, best_path, None)
    val_logits = predict_logits(served, val_ds, bf16=False)
    temperature = {h: fit_temperature(val_logits[h], val_ds.targets[h]) for h in heads}
    sha = sha256_file(best_path)
    config = {
        "id": cfg.model_id,
        "task": cfg.task,
        "task_title": TASK_TITLES.get(cfg.task, cfg.task),
        "arch": cfg.arch,
        "heads": heads,
        "input": {"size": [cfg.size, cfg.size], "mean": list(input_cfg.mean), "std": list(input_cfg.std), "interpolation": "bilinear",
                  "dicom_windows": TASK_DICOM_WINDOWS.get(cfg.task, {})},
        "target_layer": target_layer_for(cfg.arch),
        "temperature": temperature,
        "weights": {"file": "weights.safetensors", "sha256": sha, "dtype": "float16"},
        "default": cfg.default,
        "selected_epoch": best.get("epoch"),
        "val_at_selection": {k: v for k, v in best.items() if k not in ("score", "epoch")},
        "training": {k: v for k, v in asdict(cfg).items() if k not in ("heads",)},
        "training_seconds": round(time.time() - t0, 1),
        "torch": torch.__version__,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    pd.DataFrame(history).to_csv(out / "training_log.csv", index=False)
    log.info("Wrote %s (selected epoch %s, temperature %s)", out, best.get("epoch"), temperature)
    return ModelConfig.from_dict(config, folder=out)
