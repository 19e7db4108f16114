"""Inference precision: fp32 unless ``MEDIMG_PRECISION=bf16`` on a CPU with native bf16 support."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def _cpu_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def bf16_supported() -> bool:
    """True where the CPU has native bf16 matrix support (AVX512-BF16 or AMX), so bf16 is a speed-up, not a slowdown.
    oneDNN alone is not enough: it emulates bf16 on plain AVX-512, slower than fp32 (5.7 s vs 3.0 s per training
    batch of 32 at 240 px here)."""
    try:
        onednn = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
    flags = _cpu_flags()
    return onednn if flags is None else onednn and bool(flags & {"avx512_bf16", "amx_bf16"})


def default_precision() -> str:
    """``MEDIMG_PRECISION`` (fp32 or bf16); fp32 unless set, so results match the evaluated metrics exactly."""
    value = os.environ.get("MEDIMG_PRECISION", "fp32").lower()
    if value == "bf16" and not bf16_supported():
        log.warning("MEDIMG_PRECISION=bf16 but this CPU has no native bf16 support; using fp32")
        return "fp32"
    return value if value in ("fp32", "bf16") else "fp32"
