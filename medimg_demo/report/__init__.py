"""Report: the case report PDF (reportlab) drawn from a Prediction and the safe facts of its input, never an identifier."""

from __future__ import annotations
