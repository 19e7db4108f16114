"""Models: typed, cached registry of model folders; weights (offline packages, hub, sha256 pins); the network
(timm backbone with ``forward_features``/``forward_head``); preprocessing from the config; calibration."""

from __future__ import annotations

from .config import InputConfig, ModelConfig
from .registry import get_model, list_models, models_dir

__all__ = ["InputConfig", "ModelConfig", "get_model", "list_models", "models_dir"]
