"""What a result put on screen, read from its JSON (the server's record or the page's copy): the feedback form asks
only about what was shown, and the server stores an answer only about what was shown."""
from __future__ import annotations

from typing import Any


def gave_type(outputs: Any) -> bool:
    """Whether a result named a tumor type (not refused, not indeterminate between its top two)."""
    named = outputs.get("type") if isinstance(outputs, dict) else None
    return isinstance(named, dict) and isinstance(named.get("label"), str) and bool(named["label"])


def gave_stage(outputs: Any) -> bool:
    """Whether a result showed a stage to agree with: a stage head's call or a size category (breast T by size)."""
    return isinstance(outputs, dict) and any(isinstance(outputs.get(k), dict) for k in ("stage", "size_category"))


def gave_pathway(outputs: Any) -> bool:
    """Whether a result showed a treatment pathway (a refused or indeterminate result shows none)."""
    return isinstance(outputs, dict) and isinstance(outputs.get("treatment"), dict)


def gave_heatmap(outputs: Any) -> bool:
    """Whether a result drew a Grad-CAM heatmap (its peak is recorded with it)."""
    return isinstance(outputs, dict) and outputs.get("heatmap_peak_xy") is not None
