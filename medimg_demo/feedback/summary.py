"""Per-session summary of the feedback store: agreement with the model, reader vs model accuracy, heatmap
plausibility."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .reader_study import unaided_seen_before


def _rate(s: pd.Series) -> float:
    s = s.dropna()
    return float(s.mean()) if len(s) else float("nan")


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Per session (and 'ALL'; Analyse-tab feedback without a session under "(no session)"): agreement rates with
    the model per output, reader (unaided and aided) vs model accuracy against ground truth where the case has a
    label, and the heatmap plausibility distribution. An unaided read given after the reader had answered on the same
    image with the model's call on screen is not counted as unaided (``reader_study.unaided_seen_before``)."""
    rows: list[dict[str, Any]] = []
    seen = unaided_seen_before(df)  # not unaided: the reader had answered on the image with the model's call shown
    # the aided answers of those reads go with them: both accuracies over the same reads (as in the reader study)
    left_out = set(zip(df.loc[seen, "session_id"], df.loc[seen, "reader"], df.loc[seen, "case_id"])) \
        if len(df) else set()
    groups = [("ALL", df)] + [(str(k) or "(no session)", g) for k, g in df.groupby("session_id", sort=True)] \
        if len(df) else []
    for name, g in groups:
        aided = g[g["phase"].isin(["aided", "free"])]
        unaided = g[g["phase"] == "unaided"]
        after_model = seen.reindex(unaided.index, fill_value=False)
        r: dict[str, Any] = {
            "session_id": name,
            "readers": int(g["reader"].nunique()),
            "submissions": int(len(g)),
            "aided_reads": int(len(aided)),
            "unaided_reads": int(len(unaided)),
            "unaided_after_model_seen": int(after_model.sum()),  # left out of reader_unaided_accuracy
            "type_agreement": _rate(aided["type_agree"]),
            "stage_agreement": _rate(aided["stage_agree"]),
            "pathway_agreement": _rate(aided["pathway_agree"]),
        }
        paired_out = pd.Series([k in left_out for k in zip(aided["session_id"], aided["reader"], aided["case_id"])],
                               index=aided.index, dtype=bool)
        labelled = aided[~paired_out & aided["truth_type"].notna() & (aided["truth_type"] != "")]
        if len(labelled):
            final = labelled.apply(
                lambda x: x["pred_type"] if x["type_agree"] == 1 else (x["corrected_type"] or x["pred_type"]), axis=1
            )
            r["model_accuracy"] = float((labelled["pred_type"] == labelled["truth_type"]).mean())
            r["reader_aided_accuracy"] = float((final == labelled["truth_type"]).mean())
        else:
            r["model_accuracy"] = r["reader_aided_accuracy"] = float("nan")
        lab_u = unaided[~after_model & unaided["truth_type"].notna() & (unaided["truth_type"] != "")]
        r["reader_unaided_accuracy"] = float((lab_u["reader_type"] == lab_u["truth_type"]).mean()) if len(lab_u) else float("nan")
        plaus = aided["heatmap_plausibility"].dropna().astype(int)
        for k in range(1, 6):
            r[f"heatmap_{k}"] = int((plaus == k).sum())
        r["heatmap_mean"] = float(plaus.mean()) if len(plaus) else float("nan")
        rows.append(r)
    return pd.DataFrame(rows)
