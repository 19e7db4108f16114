"""The Gradio layout, one module per tab; ``app.py`` assembles them and launches."""
