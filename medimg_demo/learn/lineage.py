"""Whether a training chain is blind to the calibration fold a run holds out (``--calibration-folds``).

The temperature is fitted on that fold + val, so it is out-of-sample only if no model the run draws on trained on the
fold: the start model (``--init-from``), the teachers (``--distill-from``), the backbone (``--backbone-from``), and
every model those were built from in turn (their records' ``init_from``, ``backbone_from`` and ``distill_from``). The
whole lineage is walked, rather than trusting each step's own check: a model that keeps its start model's calibration
record (``--lesion-only``) carries that model's fingerprint without having held anything out, and a backbone can come
from a model trained on the same images under another task name (``--task alias --data breast_us``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..errors import ModelError, OptionError
from ..models.config import ModelConfig
from .config import TrainConfig, teacher_ids
from .start import RETRAIN_BLIND, start_model

#: The record fields that name the models a model was built from.
LINKS = ("init_from", "backbone_from", "distill_from")
#: Models one lineage may hold at most (a guard against a record that names itself in a loop of ids).
MAX_MODELS = 32


def lineage(model_id: str, out_dir: str, option: str) -> list[tuple[str, ModelConfig]]:
    """The model and every model its record (and theirs) was built from, each once, nearest first; looked up as
    :func:`~.start.start_model` does. A model the lineage names but neither ``--out`` nor the registry holds is
    refused: what it trained on cannot be told."""
    order: list[tuple[str, ModelConfig]] = []
    seen: set[str] = set()
    queue: list[tuple[str, str]] = [(model_id, "")]
    while queue:
        current, named_by = queue.pop(0)
        if current in seen:
            continue
        if len(seen) >= MAX_MODELS:
            raise OptionError(f"{option} {model_id}: its lineage names more than {MAX_MODELS} models; cannot check it.")
        seen.add(current)
        try:
            cfg = start_model(current, out_dir, option=option)
        except ModelError as e:
            if not named_by:
                raise
            raise OptionError(f"{option} {model_id}: {current}, which {named_by} was built from, is in neither --out "
                              f"nor the model registry, so what it trained on cannot be checked ({e}). Put it in --out "
                              "or retrain the chain.") from e
        order.append((current, cfg))
        training: dict[str, Any] = cfg.raw.get("training") or {}
        for link in LINKS:
            value = str(training.get(link) or "")
            queue += [(m, current) for m in (teacher_ids(value) if link == "distill_from" and value else
                                             [value] if value else [])]
    return order


def _why_not_blind(cfg: ModelConfig, run_task: str, fold: tuple[int, int, int], data: str, held_sha: str) -> str:
    """Why this model may have trained on the run's held-out images ("" if it did not)."""
    t, cal = cfg.raw.get("training") or {}, cfg.raw.get("calibration") or {}
    if (t.get("task") or cfg.task) != run_task and (t.get("data") or data) != data:
        return ""  # another task's data set: it never saw these images (the same images under another task name do)
    theirs = (t.get("calibration_folds", 0), t.get("calibration_fold", 0), t.get("calibration_seed", t.get("seed")))
    if not theirs[0]:
        return f"trained on all of the train split of {data!r} (no calibration fold held out)"
    if "held_out_sha256" in cal:
        if cal["held_out_sha256"] == held_sha:
            return ""
        return (f"held out other images of {data!r} (fold {theirs[1]} of {theirs[0]}, fold split seed {theirs[2]}; "
                "if the numbers match this run's, the data or its near-duplicate groups changed)")
    if theirs == fold and t.get("data") == data:  # a record from before the fingerprint: the fold numbers decide
        return ""
    return (f"held out fold {theirs[1]} of {theirs[0]} (fold split seed {theirs[2]}) of {t.get('data')!r}, and its "
            "record predates held-out fingerprints")


def check_sources_blind(cfg: TrainConfig, data: str, held: pd.DataFrame) -> None:
    """Refuse, before anything is decoded for training, a start model, teacher or backbone whose lineage holds a
    model that trained on the calibration fold this run holds out (``held``) of ``data`` (the record's data path)."""
    from .holdout import held_out_fingerprint

    held_sha = held_out_fingerprint(held)  # once, whatever the number of models
    sources = [(cfg.init_from, "--init-from")] if cfg.init_from else []
    sources += [(t, "--distill-from") for t in (teacher_ids(cfg.distill_from) if cfg.distill_from else [])]
    sources += [(cfg.backbone_from, "--backbone-from")] if cfg.backbone_from else []
    fold = cfg.held_out_fold()
    for model_id, option in sources:
        for current, mcfg in lineage(model_id, cfg.out_dir, option):
            reason = _why_not_blind(mcfg, cfg.task, fold, data, held_sha)
            if reason:
                who = "it" if current == model_id else f"{current}, which it was built from,"
                raise OptionError(f"{option} {model_id}: {who} {reason}; a model of this chain must not have trained "
                                  f"on the images the temperature is fitted on (fold {fold[1]} of {fold[0]}, fold "
                                  f"split seed {fold[2]}, of {data!r}). {RETRAIN_BLIND}")
