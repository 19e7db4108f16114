"""Learn: a manifest split decoded into memory, modality-aware augmentation, and fine-tuning a timm backbone."""

from __future__ import annotations
