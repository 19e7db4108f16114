"""The Feedback summary tab's content, free of Gradio: the reader-study table with counts and intervals, the
multi-reader multi-case verdict and accuracy plot of one session, and agreement per output; all readable."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from ..feedback.reader_study import (
    LEGEND,
    POOLED,
    case_table,
    display_summary,
    reader_summary,
    session_mrmc,
)
from ..feedback.study_plots import accuracy_figure
from .markdown_text import code_span

log = logging.getLogger(__name__)

#: Sessions given a row of their own in the per-output table (those with the most answers; "All sessions" counts
#: every one): 20,000 sessions of one free answer each took 14 s a refresh.
MAX_SESSIONS_SHOWN = 50

OUTPUTS_LEGEND = ("Agreement: share of answers 'Agree' among the answers given (count / answers). Heatmap: how "
                  "many readers rated its plausibility 1 (implausible) to 5 (convincing). **-** : no answer of "
                  "that kind (for example the stage of a model without a stage head).")


#: What a reader who is not a session owner sees instead of accuracy: their accuracy on one more case, read after
#: each answer, says whether that answer (or the model's call) was the truth, and case lists repeat with their seed.
OWNERS_ONLY = ("Accuracy against the truth (reader and model, unaided and aided, and the multi-reader analysis) is "
               "shown to session owners only: read after each case, a reader's own accuracy would tell the case's "
               "answer, and the same seed gives the same cases in another session. Agreement with the model is "
               "below.")


#: What a reader with no answer stored sees first (an empty session list and a table of one header had said nothing).
NOTHING_YET = ("**No feedback of yours yet.** Read a session in the Reading session tab, or give feedback on a result "
               "in the Analyse tab; your answers are summarised here.")


@dataclass(frozen=True)
class StudyView:
    table: pd.DataFrame
    legend: str
    sessions: list[str]
    session: str | None
    verdict: str
    figure: Figure | None
    outputs: pd.DataFrame


def case_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The per-case reader-study table (what the CSV export holds)."""
    return case_table(rows)


def _pick(summary: pd.DataFrame, chosen: str | None) -> str | None:
    """The chosen session if it has reads, else the one with the most readers (then the most reads)."""
    sessions = list(dict.fromkeys(summary["session_id"])) if len(summary) else []
    if chosen in sessions:
        return chosen
    if not sessions:
        return None
    pooled = summary[summary["reader"] == "All readers"].sort_values(["readers", "reads"], ascending=False)
    return str(pooled["session_id"].iloc[0])


def _agree_cell(s: pd.Series) -> str:
    s = s.dropna()
    return f"{s.mean():.2f} ({int(s.sum())}/{len(s)})" if len(s) else "-"


def outputs_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per session (and all): agreement with the model per output, with counts, and the heatmap ratings."""
    if rows is None or rows.empty:
        return pd.DataFrame({"Session": []})
    fed = rows[rows["phase"].isin(["aided", "free"])]
    sizes = fed["session_id"].value_counts(sort=False).sort_index().sort_values(ascending=False, kind="stable")
    shown = sizes.index[:MAX_SESSIONS_SHOWN]  # the sessions with the most answers; every row is in the export
    groups = [("All sessions", fed)] + [(str(k) or "(no session)", fed[fed["session_id"] == k]) for k in shown]
    out: list[dict[str, Any]] = []
    for name, g in groups:
        plaus = g["heatmap_plausibility"].dropna().astype(int)
        out.append({"Session": name, "Readers": int(g["reader"].nunique()), "Answers": len(g),
                    "Agrees on type": _agree_cell(g["type_agree"]), "Agrees on stage": _agree_cell(g["stage_agree"]),
                    "Agrees on pathway": _agree_cell(g["pathway_agree"]),
                    "Heatmap 1-5 (count each)": " / ".join(str(int((plaus == k).sum())) for k in range(1, 6)),
                    "Heatmap mean": f"{plaus.mean():.1f}" if len(plaus) else "-"})
    if len(sizes) > MAX_SESSIONS_SHOWN:
        out.append({"Session": f"{len(sizes) - MAX_SESSIONS_SHOWN} more sessions with fewer answers (in the export)"})
    return pd.DataFrame(out).fillna("")


def mark_unfinished(shown: pd.DataFrame, summary: pd.DataFrame, session: str | None,
                    planned: int | None) -> pd.DataFrame:
    """The reader-study table ``shown`` (of ``session``, from ``summary``) with a reader who read fewer of the
    session's ``planned`` cases (counting the reads left out) marked in the first row, "2 (unfinished: 2 of 4
    cases)": a reader who stopped early had read as a smaller number beside the others' with nothing to say why."""
    if not planned or shown.empty:
        return shown
    shown = shown.copy()
    counts = summary[(summary["session_id"] == session) & (summary["reader"] != POOLED)].set_index("reader")
    for reader, r in counts.iterrows():
        kept, read = int(r["cases"]), int(r["cases"]) + int(r.get("model_seen_before", 0) or 0)
        if read < planned and reader in shown.columns:
            shown.at[0, reader] = f"{kept} (unfinished: {read} of {planned} cases)"
    return shown


def build(rows: pd.DataFrame, chosen: str | None = None, accuracy: bool = True,
          planned: Callable[[str], int | None] | None = None) -> StudyView:
    """Everything the tab shows for the rows the caller may see; without ``accuracy`` (a reader who is not a
    session owner), :data:`OWNERS_ONLY` in place of the accuracy table, verdict and plot, which are not computed.
    ``planned``: a session's number of cases by its name (readers who stopped early are marked)."""
    table = case_table(rows)
    summary = reader_summary(table) if len(table) else pd.DataFrame()
    session = _pick(summary, chosen)
    sessions = list(dict.fromkeys(summary["session_id"])) if len(summary) else []
    if not accuracy:
        note = OWNERS_ONLY if rows is not None and len(rows) else f"{NOTHING_YET}\n\n{OWNERS_ONLY}"
        return StudyView(table=pd.DataFrame({"Statistic": []}), legend=OWNERS_ONLY, sessions=sessions,
                         session=session, verdict=note, figure=None, outputs=outputs_table(rows))
    if session is None:
        verdict = ("No reading session with both reads stored yet: start one in the Reading session tab (every "
                   "reader with the same session id, model, cases and seed).")
        figure = None
    else:
        res = session_mrmc(table, session)
        verdict = f"#### Multi-reader multi-case analysis, session {code_span(session)}\n{res.message}"
        try:
            figure = accuracy_figure(summary, session)
        except (ValueError, RuntimeError) as exc:  # the plot is extra: the table and the verdict still show
            log.warning("Reader-study plot not drawn (%s)", type(exc).__name__)
            figure = None
    size = planned(session) if planned and session else None
    shown = mark_unfinished(display_summary(summary, session), summary, session, size)
    return StudyView(table=shown, legend=f"<small>{LEGEND}</small>", sessions=sessions,
                     session=session, verdict=verdict, figure=figure, outputs=outputs_table(rows))
