"""medimg_demo: a research demo for tumor recognition on medical images.

For research use only. Not a medical device. Treatment pathways are options from a cited guideline table for
discussion by a tumor board, never orders.

The public API is listed in ``__all__``; its names load lazily, so ``import medimg_demo`` stays cheap (no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import DataError, InputError, MedimgError, ModelError
from .notice import DISCLAIMER

__version__ = "0.1.0"

#: Public name -> module that defines it.
_LAZY = {
    "Study": "imaging.study",
    "read_file": "imaging.decode",
    "read_bytes": "imaging.decode",
    "deidentify": "imaging.deid",
    "ModelConfig": "models.config",
    "InputConfig": "models.config",
    "get_model": "models.registry",
    "list_models": "models.registry",
    "Prediction": "predict",
    "Predictor": "predict",
    "get_predictor": "predict",
    "Pathway": "treatment",
    "pathway": "treatment",
    "TaskSpec": "tasks",
    "get_task": "tasks",
    "TrainConfig": "learn.config",
    "train": "learn.train",
    "evaluate": "eval.evaluate",
    "Feedback": "feedback.store",
}

__all__ = ["DISCLAIMER", "DataError", "InputError", "MedimgError", "ModelError", "__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'medimg_demo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
