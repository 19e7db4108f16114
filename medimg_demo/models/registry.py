"""Model registry: ``models/<id>/config.json`` -> :class:`ModelConfig`, read once per process and read again only
when a config file changes (added, removed or edited)."""

from __future__ import annotations

import json
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path

from ..errors import ModelError
from ..paths import REPO_ROOT
from ..tasks import task_rank
from .config import ModelConfig

log = logging.getLogger(__name__)

_CACHE: dict[Path, tuple[tuple[tuple[str, int, int], ...], list[ModelConfig]]] = {}
_CACHE_LOCK = threading.Lock()


def models_dir() -> Path:
    """Where model folders live: ``MEDIMG_MODELS_DIR``; else a Hugging Face hub repo named by ``MEDIMG_HUB_REPO``
    (downloaded once per process, online deployments only); else ``models/`` in the checkout."""
    if os.environ.get("MEDIMG_MODELS_DIR"):
        return Path(os.environ["MEDIMG_MODELS_DIR"])
    repo = os.environ.get("MEDIMG_HUB_REPO")
    if repo:
        return hub_models_dir(repo, os.environ.get("MEDIMG_HUB_REVISION"))
    return REPO_ROOT / "models"


@lru_cache(maxsize=4)
def hub_models_dir(repo_id: str, revision: str | None = None) -> Path:
    """A local copy of a hub model repo laid out like ``models/`` (``<id>/config.json`` + safetensors only),
    fetched once per process. The sha256 pins in each config still apply."""
    from huggingface_hub import snapshot_download

    path = snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=["*/config.json", "*/*.safetensors", "*/*.md"])
    log.info("Using models from hub repo %s (revision %s)", repo_id, revision or "main")
    return Path(path)


def _signature(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _read(cfg_path: Path) -> ModelConfig:
    try:
        d = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{cfg_path} is not valid JSON: {exc}") from exc
    return ModelConfig.from_dict(d, folder=cfg_path.parent)


def list_models(root: Path | None = None) -> list[ModelConfig]:
    """Every model folder with a config.json under ``root`` (sorted by id); cached until a config changes."""
    root = (root or models_dir()).resolve()
    if not root.is_dir():
        return []
    paths = sorted(p for p in root.glob("*/config.json") if not p.parent.name.startswith("."))  # hidden: work folders
    sig = _signature(paths)
    with _CACHE_LOCK:
        hit = _CACHE.get(root)
        if hit is not None and hit[0] == sig:
            return list(hit[1])
    models = [_read(p) for p in paths]
    with _CACHE_LOCK:
        _CACHE[root] = (sig, models)
    return list(models)


def get_model(model_id: str | None = None, root: Path | None = None) -> ModelConfig:
    """The model with this id, or the default one when ``model_id`` is None."""
    models = list_models(root)
    if not models:
        raise ModelError(f"No models found under {root or models_dir()}; train one with `python -m medimg_demo train`.")
    if model_id is None:
        model_id = os.environ.get("MEDIMG_DEFAULT_MODEL") or None
    if model_id is None:
        return min(models, key=lambda m: (not m.default, task_rank(m.task), m.id))
    for m in models:
        if m.id == model_id:
            return m
    served = [m.id for m in models if m.task == model_id and m.default]
    if served:  # a task's name: say which model it serves rather than list every id
        raise ModelError(f"{model_id!r} is a task, not a model: its served model is {served[0]} (`models` lists "
                         "every model).")
    raise ModelError(f"Unknown model {model_id!r}. Available: {', '.join(m.id for m in models)}.")


#: The model choice that lets the gates pick the task.
AUTO = "auto"


def task_models() -> list[ModelConfig]:
    """One model per task: the task's default model (else its first by id), in the registry's task order."""
    chosen: dict[str, ModelConfig] = {}
    for cfg in sorted(list_models(), key=lambda m: (not m.default, m.id)):
        chosen.setdefault(cfg.task, cfg)
    return sorted(chosen.values(), key=lambda m: task_rank(m.task))
