"""The reader-study figure: each reader's accuracy unaided and aided with 95% intervals, the pooled readers, and
the model's accuracy on the same cases (a matplotlib Figure, no pyplot state)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .reader_study import POOLED

UNAIDED_COLOR, AIDED_COLOR, MODEL_COLOR = "#7a7a7a", "#1f6fb4", "#d62728"
#: Readers drawn in one figure (those with the most cases); the pooled row and the table still count every reader.
MAX_READERS_DRAWN = 40


def accuracy_figure(summary: pd.DataFrame, session_id: str) -> Figure:
    """Dot-and-interval plot of one session: a row per reader (and 'All readers' at the bottom), accuracy unaided
    (open grey circle) and aided (filled blue), arrows from one to the other, and the model's accuracy (dashed)."""
    s = summary[summary["session_id"] == session_id]
    own = s[s["reader"] != POOLED].sort_values("cases", ascending=False, kind="stable")["reader"].tolist()
    readers = own[:MAX_READERS_DRAWN] + [POOLED]
    s = s.set_index("reader").loc[readers]
    n = len(readers)
    fig = Figure(figsize=(7.2, 1.4 + 0.42 * n))  # not through pyplot: nothing is kept once Gradio has drawn it
    ax = fig.subplots()
    y = np.arange(n)[::-1].astype(float)
    for col, offset, color, marker, face, label in (
        ("unaided_accuracy", 0.13, UNAIDED_COLOR, "o", "white", "unaided"),
        ("aided_accuracy", -0.13, AIDED_COLOR, "o", AIDED_COLOR, "aided (after seeing the model)"),
    ):
        x = s[col].to_numpy(float)
        err = np.vstack([x - s[f"{col}_lo"].to_numpy(float), s[f"{col}_hi"].to_numpy(float) - x])
        err = np.clip(np.nan_to_num(err), 0.0, None)  # an interval never ends inside its own dot
        ax.errorbar(x, y + offset, xerr=err, fmt=marker, color=color, mfc=face, mec=color,
                    ms=7, capsize=3, lw=1.4, label=f"{label}, 95% interval")
    for yy, a, b in zip(y, s["unaided_accuracy"], s["aided_accuracy"]):
        if np.isfinite(a) and np.isfinite(b) and abs(b - a) > 0.005:
            ax.annotate("", xy=(b, yy - 0.13), xytext=(a, yy + 0.13),
                        arrowprops=dict(arrowstyle="->", color="#999999", lw=0.8))
    model = float(s.loc[POOLED, "model_accuracy"])
    if np.isfinite(model):
        ax.axvline(model, color=MODEL_COLOR, ls="--", lw=1, label=f"model alone: {model:.2f}")
    ax.axhline(0.5, color="#dddddd", lw=0.8)  # separates the pooled row from the readers
    labels = [f"{r}  (n={int(s.loc[r, 'cases'])})" if r != POOLED else f"All readers ({int(s.loc[r, 'readers'])})"
              for r in readers]
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel("accuracy (proportion of cases with the correct type)")
    more = f" ({len(own) - MAX_READERS_DRAWN} more readers in the table)" if len(own) > MAX_READERS_DRAWN else ""
    # a session id is typed by a reader: shown as text, never parsed as mathtext ("$...$" could fail the figure)
    shown = session_id if len(session_id) <= 60 else session_id[:59] + "…"
    ax.set_title(f"Session {shown}: reader accuracy unaided vs aided{more}", fontsize=10, parse_math=False)
    ax.grid(axis="x", color="#eeeeee")
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16 - 0.6 / n), ncol=3, frameon=False)
    fig.text(0.01, 0.005, "95% intervals: Wilson per reader; for all readers, Wilson on the effective number of "
             "reads (design effect over cases).", fontsize=7,
             color="#555555")
    fig.tight_layout()
    return fig
