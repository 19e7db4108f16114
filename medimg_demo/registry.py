"""Model registry: ``models/<id>/config.json`` -> :class:`ModelConfig`."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The app-wide default is the default model of the first task here that has one (override: MEDIMG_DEFAULT_MODEL).
TASK_ORDER = ("lung_ct", "breast_us", "brain_mri")


def models_dir() -> Path:
    """Where model folders live: ``MEDIMG_MODELS_DIR``; else a Hugging Face hub repo named by ``MEDIMG_HUB_REPO``
    (downloaded once, online deployments only); else ``models/`` in the checkout."""
    if os.environ.get("MEDIMG_MODELS_DIR"):
        return Path(os.environ["MEDIMG_MODELS_DIR"])
    repo = os.environ.get("MEDIMG_HUB_REPO")
    if repo:
        return hub_models_dir(repo, os.environ.get("MEDIMG_HUB_REVISION"))
    return REPO_ROOT / "models"


def hub_models_dir(repo_id: str, revision: str | None = None) -> Path:
    """A local copy of a hub model repo laid out like ``models/`` (``<id>/config.json`` + safetensors only).

    Only JSON, safetensors and markdown files are fetched; the sha256 pins in each config still apply.
    """
    from huggingface_hub import snapshot_download

    path = snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=["*/config.json", "*/*.safetensors", "*/*.md"])
    log.info("Using models from hub repo %s (revision %s)", repo_id, revision or "main")
    return Path(path)


@dataclass(frozen=True)
class InputConfig:
    """Everything preprocessing needs; nothing is hard-coded elsewhere."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    #: Window (centre, width) per DICOM modality that the model sees, whatever the display shows; a modality
    #: not listed is shown to the model with the file's own window.
    dicom_windows: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    id: str
    task: str
    arch: str
    heads: dict[str, list[str]]
    input: InputConfig
    target_layer: str
    weights_file: str = "weights.safetensors"
    weights_sha256: str | None = None
    temperature: dict[str, float] = field(default_factory=dict)
    default: bool = False
    task_title: str = ""
    folder: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def type_labels(self) -> list[str]:
        return self.heads["type"]

    @property
    def stage_labels(self) -> list[str] | None:
        return self.heads.get("stage")

    @property
    def weights_path(self) -> Path:
        if self.folder is None:
            raise ModelError(f"Model {self.id} has no folder; it was not loaded from the registry.")
        return self.folder / self.weights_file

    @classmethod
    def from_dict(cls, d: dict[str, Any], folder: Path | None = None) -> "ModelConfig":
        try:
            inp = d["input"]
            heads = {str(k): [str(x) for x in v] for k, v in d["heads"].items()}
            if "type" not in heads or len(heads["type"]) < 2:
                raise ModelError(f"Model config {d.get('id')!r} needs a 'type' head with at least two labels.")
            weights = d.get("weights", {})
            return cls(
                id=str(d["id"]),
                task=str(d["task"]),
                arch=str(d["arch"]),
                heads=heads,
                input=InputConfig(
                    size=(int(inp["size"][0]), int(inp["size"][1])),
                    mean=tuple(float(x) for x in inp["mean"]),  # type: ignore[arg-type]
                    std=tuple(float(x) for x in inp["std"]),  # type: ignore[arg-type]
                    interpolation=str(inp.get("interpolation", "bilinear")),
                    dicom_windows={str(k): (float(v[0]), float(v[1])) for k, v in inp.get("dicom_windows", {}).items()},
                ),
                target_layer=str(d["target_layer"]),
                weights_file=str(weights.get("file", "weights.safetensors")),
                weights_sha256=weights.get("sha256"),
                temperature={str(k): float(v) for k, v in d.get("temperature", {}).items()},
                default=bool(d.get("default", False)),
                task_title=str(d.get("task_title", d["task"])),
                folder=folder,
                raw=d,
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(f"Model config {d.get('id', '?')!r} is malformed: {exc!r}") from exc


def list_models(root: Path | None = None) -> list[ModelConfig]:
    """Every model folder with a config.json under ``root`` (sorted by id)."""
    root = root or models_dir()
    out: list[ModelConfig] = []
    if not root.is_dir():
        return out
    for cfg_path in sorted(root.glob("*/config.json")):
        try:
            d = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{cfg_path} is not valid JSON: {exc}") from exc
        out.append(ModelConfig.from_dict(d, folder=cfg_path.parent))
    return out


def get_model(model_id: str | None = None, root: Path | None = None) -> ModelConfig:
    """The model with this id, or the default one when ``model_id`` is None."""
    models = list_models(root)
    if not models:
        raise ModelError(f"No models found under {root or models_dir()}; train one with `python -m medimg_demo train`.")
    if model_id is None:
        model_id = os.environ.get("MEDIMG_DEFAULT_MODEL") or None
    if model_id is None:
        def rank(m: ModelConfig) -> tuple[int, int, str]:
            order = TASK_ORDER.index(m.task) if m.task in TASK_ORDER else len(TASK_ORDER)
            return (not m.default, order, m.id)

        return min(models, key=rank)
    for m in models:
        if m.id == model_id:
            return m
    raise ModelError(f"Unknown model {model_id!r}. Available: {', '.join(m.id for m in models)}.")
