"""What the app offers to choose from: the models (default first) and sample cases from the test splits."""

from __future__ import annotations

import re

from ..feedback.reader_study import label_name
from ..manifest import read_manifest
from ..models.registry import get_model, list_models, task_models
from ..paths import data_root
from ..tasks import get_task, stage_name


def model_choices() -> list[tuple[str, str]]:
    """(label shown, model id) for the model dropdown, default first."""
    models = list_models()
    default_id = get_model().id if models else None
    served = {m.id for m in task_models()}
    # each task's default first, then its other versions newest first (v10 before v9)
    models.sort(key=lambda m: (m.id != default_id, m.task, m.id not in served, -_version(m.id), m.id))
    titles = [m.task_title or get_task(m.task).title for m in models]
    labels = [model_label(m.id, title, m.id in served) for m, title in zip(models, titles)]
    # two models of a task with the same version (another backbone): both named by their ids
    return [(label if labels.count(label) == 1 else f"{title}: {m.id}", m.id)
            for label, title, m in zip(labels, titles, models)]


def model_name(model_id: str) -> str | None:
    """The model as the model lists name it ("Lung CT v2 (default)"), or None where they do not hold it."""
    return next((label for label, mid in model_choices() if mid == model_id), None)


def _version(model_id: str) -> int:
    """3 for an id ending in "_v3"; -1 for an id without a version."""
    tail = model_id.rsplit("_", 1)[-1]
    return int(tail[1:]) if re.fullmatch(r"v\d+", tail) else -1


def model_label(model_id: str, title: str, default: bool) -> str:
    """"Breast ultrasound v2 (default)": short enough for the dropdown, which cut "Breast ultrasound:
    breast_us.tf_efficientnet_lite1_v2" off mid-id; the full id is in the result's details and the Performance tab."""
    version = _version(model_id)
    name = f"{title} v{version}" if version >= 0 else f"{title}: {model_id}"
    return f"{name} (default)" if default else name


def default_model_id() -> str:
    """The registry's default model id."""
    return get_model().id


def sample_cases(per_class: int = 1) -> list[tuple[str, str, str]]:
    """(image path, model id, true label) of test-split cases per class for each task's default model, where data is
    found (a task with several models shows its samples once).

    Only the shared data folder is read; nothing is copied into the repository.
    """
    out: list[tuple[str, str, str]] = []
    root = data_root()
    shown = {c.id for c in task_models()}
    for cfg in (c for c in list_models() if c.id in shown):
        manifest = root / cfg.task / "manifest.csv"
        if not manifest.is_file():
            continue
        test = read_manifest(manifest.parent)
        test = test[test["split"] == "test"].groupby("label", sort=False).head(per_class)
        for image, label in zip(test["image"], test["label"]):
            out.append((str((root / cfg.task / image).resolve()), cfg.id, label))
    return out


def answer_choices(model_id: str | None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(name shown, label) pairs of a model's types and stages, for the answers a reader picks: readable type names
    ("Squamous cell carcinoma") and stage groups ("Stage IIIA"), as the result shows them; the store keeps the labels.
    No stages for a model without a stage head."""
    cfg = get_model(model_id)
    return ([(label_name(cfg.id, v), v) for v in cfg.type_labels], [(stage_name(v), v) for v in cfg.stage_labels or []])


def model_versions() -> list[str]:
    """One line per model for the start-up log: id, task, weights sha256, default flag."""
    default_id = default_model_id() if list_models() else None
    return [f"{m.id} task={m.task} weights_sha256={m.weights_sha256} default={m.id == default_id}" for m in list_models()]


def stage_caption(model_id: str | None) -> str:
    """The title of a model's stage box (lung: learned through the type, not a staging of the scan)."""
    return get_task(get_model(model_id).task).stage_caption
