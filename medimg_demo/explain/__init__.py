"""Explain: Grad-CAM with Captum's LayerGradCam on the shown class, and heatmap overlays with a scale bar."""

from __future__ import annotations
