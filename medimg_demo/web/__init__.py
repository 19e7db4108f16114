"""Web: what ``app.py`` calls. Gradio-free views (analysis, reading session, performance, catalogue of models and
sample cases, served files) and the Gradio handlers that wrap them."""

from __future__ import annotations
