"""The research-use notice every screen, report and model card carries."""

from __future__ import annotations

DISCLAIMER = (
    "Research use only - not a medical device. Outputs are not a diagnosis; "
    "treatment pathways are options from a cited guideline table for a tumor board "
    "to discuss, not orders."
)
