"""Reading sessions as a reader study: one row per reader and case pairing the unaided read with the aided one,
and per reader (and pooled over readers) accuracy unaided vs aided, agreement with the model and switch rates.

Definitions (one read = one reader on one case with both phases stored and a known truth):

* unaided call: the reader's own type before seeing the model; ``cannot_assess`` counts as not correct.
* aided call: the model's type when the reader agreed with it, else the corrected type the reader chose; where the
  model named no type (refused or indeterminate), the reader's own call unless they chose another.
* model seen before: the reader had answered on the same image (its hash) with the model's call on screen (an aided
  read in any session, or Analyse-tab feedback) before this unaided read was stored: a throwaway session with the
  same seed showed the model's calls on the cases of the session to be read. Such a read is not unaided; it is
  counted, and left out of every rate and of the multi-reader analysis (a lower bound: a call seen without an answer
  stored leaves no trace here).
* automation bias: among reads where the unaided call differed from the model's and the model was wrong, the share
  where the reader switched to the model's call; beneficial switch: the same where the model was right; left a
  correct call: among reads whose unaided call was correct, the share whose aided call was wrong.

Intervals (95%): per reader, Wilson score intervals (cases independent). Pooled over readers, the reads of one
case are not independent (every reader read the same cases), so the Wilson interval is computed on the effective
number of reads n / deff, with the design effect deff = (cluster variance of the ratio estimator over cases) /
(binomial variance), at least 1 (Korn and Graubard 1998, "Confidence intervals for proportions with small expected
number of positive counts estimated from survey data", Survey Methodology 24:193-201). Unlike a percentile bootstrap
it stays honest with a handful of cases in a denominator (e.g. the few reads where the model was wrong).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from ..tasks import get_task
from .mrmc import MIN_CASES, MIN_READERS, MRMCResult, or_analysis

log = logging.getLogger(__name__)

CANNOT_ASSESS = "cannot_assess"
POOLED = "All readers"

#: The CSV columns of the per-case table, in order.
CASE_COLUMNS = ["session_id", "reader", "case_id", "model_id", "truth", "unaided_call", "unaided_stage",
                "unaided_confidence", "model_call", "model_probability", "aided_call", "aided_confidence",
                "unaided_correct", "model_correct", "aided_correct", "unaided_matches_model", "aided_matches_model",
                "model_seen_before"]

#: statistic -> (numerator column, denominator mask column or None for every read)
RATES: dict[str, tuple[str, str | None]] = {
    "unaided_accuracy": ("unaided_correct", None),
    "aided_accuracy": ("aided_correct", None),
    "model_accuracy": ("model_correct", None),
    "agreement": ("aided_matches_model", None),
    "automation_bias": ("aided_matches_model", "_differed_model_wrong"),
    "beneficial_switch": ("aided_matches_model", "_differed_model_right"),
    "left_correct": ("_aided_wrong", "unaided_correct"),
}


def label_name(model_id: str, label: Any) -> str:
    """Readable class name of a label of the model's task ("Squamous cell carcinoma"); "Cannot assess"."""
    if label is None or (isinstance(label, float) and math.isnan(label)) or label == "":
        return "no answer"
    if label == CANNOT_ASSESS:
        return "Cannot assess"
    return get_task(str(model_id or "").split(".")[0]).label_name(str(label))


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials (NaN for n = 0)."""
    return wilson_p(k / n, n, z) if n > 0 else (math.nan, math.nan)


def case_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per session, reader and case that has both reads and a known truth (the last row of each phase)."""
    need = {"phase", "session_id", "reader", "case_id", "truth_type"}
    if rows is None or len(rows) == 0 or not need <= set(rows.columns):
        return pd.DataFrame(columns=CASE_COLUMNS)
    used = ["model_id", "pred_type", "pred_type_probs", "reader_type", "reader_stage", "type_agree",
            "corrected_type", "confidence"]
    rows = rows.reindex(columns=list(rows.columns) + [c for c in used if c not in rows.columns])
    rows = rows.assign(_seen=unaided_seen_before(rows))
    df = rows[(rows["session_id"].fillna("") != "") & (rows["case_id"].fillna("") != "")
              & rows["truth_type"].notna() & (rows["truth_type"].fillna("") != "")]
    key = ["session_id", "reader", "case_id"]
    un = df[df["phase"] == "unaided"].drop_duplicates(key, keep="last").set_index(key)
    ai = df[df["phase"] == "aided"].drop_duplicates(key, keep="last").set_index(key)
    both = un.join(ai, how="inner", lsuffix="_u", rsuffix="_a")
    if both.empty:
        return pd.DataFrame(columns=CASE_COLUMNS)
    agree = both["type_agree_a"]
    model_call = both["pred_type_a"].where(both["pred_type_a"].notna(), None)
    corrected = both["corrected_type_a"].where(both["corrected_type_a"].fillna("") != "", None)
    # agreeing with a model that named no type (refused, indeterminate) keeps the reader's own call
    aided = np.where((agree == 1) & model_call.notna(), model_call,
                     np.where(corrected.notna(), corrected, np.where(model_call.isna(), both["reader_type_u"], None)))
    out = pd.DataFrame({
        "model_id": both["model_id_a"], "truth": both["truth_type_a"], "unaided_call": both["reader_type_u"],
        "unaided_stage": both["reader_stage_u"], "unaided_confidence": both["confidence_u"],
        "model_call": model_call, "model_probability": [_top_prob(v, m) for v, m in
                                                        zip(both["pred_type_probs_a"], model_call)],
        "aided_call": aided, "aided_confidence": both["confidence_a"], "model_seen_before": both["_seen_u"].astype(int),
    }, index=both.index).reset_index()
    # no aided call: a row stored before answers were required
    out = out[out["aided_call"].notna() & (out["aided_call"].astype(str) != "")]
    out["unaided_correct"] = (out["unaided_call"] == out["truth"]).astype(int)
    out["model_correct"] = (out["model_call"] == out["truth"]).astype(int)
    out["aided_correct"] = (out["aided_call"] == out["truth"]).astype(int)
    out["unaided_matches_model"] = (out["unaided_call"] == out["model_call"]).astype(int)
    out["aided_matches_model"] = (out["aided_call"] == out["model_call"]).astype(int)
    return out[CASE_COLUMNS].sort_values(["session_id", "reader", "case_id"]).reset_index(drop=True)


def unaided_seen_before(rows: pd.DataFrame) -> pd.Series:
    """For each row: True for an unaided read stored after its reader had answered on the same image (its hash)
    with the model's call on screen (an aided row in any session, or Analyse-tab feedback); see the module's doc."""
    if not {"image_sha256", "created_utc", "reader", "phase"} <= set(rows.columns) or not len(rows):
        return pd.Series(False, index=rows.index)
    when = pd.to_datetime(rows["created_utc"], utc=True, format="ISO8601", errors="coerce")
    image = rows["image_sha256"].fillna("")
    reader = rows["reader"].fillna("").astype(str).str.casefold()  # "Reader07" on Analyse is "reader07" in a session
    refused = rows["pred_status"].fillna("") == "refused" if "pred_status" in rows else False  # no call was shown
    shown = rows["phase"].isin(["aided", "free"]) & (image != "") & ~refused
    if not shown.any():  # nothing shown yet (a fresh store, a reader before the reveal): an empty map cannot be cast
        return pd.Series(False, index=rows.index)
    first = when[shown].groupby([reader[shown], image[shown]]).min()
    keys = pd.MultiIndex.from_arrays([reader, image])
    seen = pd.Series(first.reindex(keys).to_numpy(), index=rows.index)
    return (rows["phase"] == "unaided") & seen.notna() & when.notna() & (seen < when)


def _top_prob(probs: Any, label: Any) -> float:
    """The model's probability of its own call, from the stored JSON of probabilities."""
    import json

    if not isinstance(probs, str) or not isinstance(label, str):
        return math.nan
    try:
        return float(json.loads(probs).get(label, math.nan))
    except (ValueError, AttributeError):
        return math.nan


def _seen(t: pd.DataFrame) -> pd.Series:
    """Reads whose unaided call came after the model's call on that image had been seen (left out of the rates)."""
    return t["model_seen_before"].fillna(0).astype(bool) if "model_seen_before" in t else pd.Series(False, t.index)


def _with_masks(t: pd.DataFrame) -> pd.DataFrame:
    differed = t["unaided_matches_model"] == 0
    return t.assign(_differed_model_wrong=(differed & (t["model_correct"] == 0)).astype(int),
                    _differed_model_right=(differed & (t["model_correct"] == 1)).astype(int),
                    _aided_wrong=1 - t["aided_correct"].astype(int))


def _counts(t: pd.DataFrame, num: str, den: str | None) -> tuple[int, int]:
    mask = np.ones(len(t), bool) if den is None else t[den].to_numpy().astype(bool)
    return int(t[num].to_numpy()[mask].sum()), int(mask.sum())


def design_effect_wilson(t: pd.DataFrame, num: str, den: str | None) -> tuple[float, float]:
    """Wilson interval of sum(num)/sum(den) over reads on the effective sample size n / deff, with deff from the
    variance of the ratio estimator over cases (clusters) relative to the binomial one, floored at 1."""
    den_v = np.ones(len(t)) if den is None else t[den].to_numpy(float)
    g = pd.DataFrame({"case": t["case_id"].to_numpy(), "y": t[num].to_numpy(float) * den_v, "d": den_v})
    per = g.groupby("case")[["y", "d"]].sum()
    per = per[per["d"] > 0]
    n, m = float(per["d"].sum()), len(per)
    if n == 0:
        return math.nan, math.nan
    p = float(per["y"].sum()) / n
    deff = 1.0
    if m > 1 and 0 < p < 1:
        v_cluster = m / (m - 1) * float(((per["y"] - p * per["d"]) ** 2).sum()) / n ** 2
        deff = max(1.0, v_cluster / (p * (1 - p) / n))
    n_eff = n / deff
    return wilson_p(p, n_eff)


def wilson_p(p: float, n: float, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` on a (possibly fractional, effective) sample size ``n``."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # the interval holds p; in floating point 4 of 4 gave an upper end of 0.9999999999999999, below the rate, and
    # the reader-study plot (a negative error bar) was not drawn at all
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def reader_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per session: one row per reader and one pooled row; for each statistic of :data:`RATES` its count ``_k``,
    denominator ``_n``, rate and 95% interval ``_lo`` / ``_hi`` (Wilson per reader; pooled, Wilson on the
    effective number of reads, see :func:`design_effect_wilson`)."""
    rows: list[dict[str, Any]] = []
    for session, everything in table.groupby("session_id", sort=True):
        seen = _seen(everything)
        s = _with_masks(everything[~seen])
        groups = [(str(r), s[s["reader"] == r]) for r in sorted(everything["reader"].unique())] + [(POOLED, s)]
        for reader, g in groups:
            left_out = int(seen[everything["reader"] == reader].sum()) if reader != POOLED else int(seen.sum())
            row: dict[str, Any] = {"session_id": session, "reader": reader, "readers": int(g["reader"].nunique()),
                                   "cases": int(g["case_id"].nunique()), "reads": len(g), "model_seen_before": left_out,
                                   "differed_from_model": int((g["unaided_matches_model"] == 0).sum())}
            for name, (num, den) in RATES.items():
                k, n = _counts(g, num, den)
                # one reader: "All readers" is that reader, with the same interval (had differed: 0.16 vs 0.21)
                pooled = reader == POOLED and g["reader"].nunique() > 1
                lo, hi = design_effect_wilson(g, num, den) if pooled else wilson(k, n)
                row.update({f"{name}_k": k, f"{name}_n": n, name: k / n if n else math.nan,
                            f"{name}_lo": lo, f"{name}_hi": hi})
            rows.append(row)
    return pd.DataFrame(rows)


#: Readable names of the statistics, in the order the app lists them (statistic -> name).
HEADERS = {
    "unaided_accuracy": "Accuracy unaided", "aided_accuracy": "Accuracy aided", "model_accuracy": "Model accuracy",
    "agreement": "Aided call agrees with the model",
    "automation_bias": "Took the model's wrong call (automation bias)",
    "beneficial_switch": "Took the model's right call (beneficial switch)",
    "left_correct": "Left a correct own call",
}
#: The summary's row of reads left out because the model's call on that image had been seen before the unaided read.
SEEN_BEFORE = "Left out: model's call on the image seen before the unaided read (reads)"
LEGEND = ("Each cell: rate [95% interval] (count / reads). Intervals: Wilson per reader; for *All readers*, Wilson "
          "on the effective number of reads (reads of one case by several readers are not independent: design "
          "effect over cases). The two \"Took the model's ... call\" rows count reads where "
          "the reader's own call differed from the model's and the aided call became the model's, when the model was "
          "wrong (automation bias) or right; \"Left a correct own call\": own call right, aided call wrong. \"Cannot "
          "assess\" counts as not correct. \"Left out\": the reader had already answered on that image with the "
          "model's call on screen (another session's aided read, say, or the Analyse tab) before this unaided read: "
          "no longer unaided, so it is in no rate and not in the multi-reader analysis. **-** : no read in that "
          "denominator (e.g. the model was never wrong on those reads).")


def _cell(rate: float, lo: float, hi: float, k: int, n: int) -> str:
    if not n:
        return "-"
    ci = f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else ""
    return f"{rate:.2f}{ci} ({k}/{n})"


def display_summary(summary: pd.DataFrame, session_id: str | None = None) -> pd.DataFrame:
    """One session's summary as the app shows it: a row per statistic, a column per reader and 'All readers';
    each cell 'rate [lo, hi] (k/n)', '-' where the denominator is empty (default: the first session)."""
    if summary.empty:
        return pd.DataFrame({"Statistic": []})
    session_id = session_id if session_id in set(summary["session_id"]) else summary["session_id"].iloc[0]
    s = summary[summary["session_id"] == session_id]
    out: dict[str, list[str]] = {"Statistic": ["Cases read (in the rates below)", SEEN_BEFORE,
                                               "Own call differed from the model (reads)", *HEADERS.values()]}
    for _, r in s.iterrows():
        out[str(r["reader"])] = [str(int(r["cases"])), str(int(r.get("model_seen_before", 0) or 0)),
                                 str(int(r["differed_from_model"]))] + [
            _cell(r[name], r[f"{name}_lo"], r[f"{name}_hi"], r[f"{name}_k"], r[f"{name}_n"]) for name in HEADERS]
    return pd.DataFrame(out)


def session_mrmc(table: pd.DataFrame, session_id: str, min_readers: int = MIN_READERS,
                 min_cases: int = MIN_CASES) -> MRMCResult:
    """OR analysis of unaided vs aided accuracy of one session, on the cases every reader read in both phases."""
    s = table[table["session_id"] == session_id]
    s = s[~_seen(s)]
    readers = sorted(s["reader"].unique())
    if readers:
        common = set.intersection(*(set(s.loc[s["reader"] == r, "case_id"]) for r in readers))
    else:
        common = set()
    cases = sorted(common)
    if len(readers) < min_readers or len(cases) < min_cases:
        return or_analysis(np.zeros((2, len(readers), len(cases))), min_readers=min_readers, min_cases=min_cases)
    s = s[s["case_id"].isin(common)].set_index(["reader", "case_id"])
    x = np.stack([np.array([[int(s.loc[(r, c), col]) for c in cases] for r in readers])
                  for col in ("unaided_correct", "aided_correct")])
    return or_analysis(x, min_readers=min_readers, min_cases=min_cases)




#: What a reader's own export leaves out: the truth and whether a call matched it, case by case.
_TRUTH_COLUMNS = ("truth", "truth_type", "truth_stage", "unaided_correct", "model_correct", "aided_correct",
                  "image_sha256")  # the hash of a public data set's image finds its label there


def for_reader(rows: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """``rows`` (feedback rows or the per-case table) as a reader who is not a session owner may take them away:
    without the truth or correctness per case or the image's hash, and with case ids made opaque per session. The
    unaided row stores the truth, and a case list is seeded, so the same seed in a throwaway session gives the same
    cases: their truth, or a data set file name that names the class (brain MRI's "mr2_" images are all gliomas),
    would tell a reader, or a colleague they pass it to, the answers of a session still to be read. ``key``: the
    server's secret, so the ids cannot be inverted by hashing guessed file names. Owners export everything."""
    out = rows.drop(columns=[c for c in _TRUTH_COLUMNS if c in rows.columns])
    if {"session_id", "case_id"} <= set(out.columns) and len(out):
        keys = out["session_id"].astype(str) + "\x1f" + out["case_id"].astype(str)
        out["case_id"] = ["case-" + hmac.new(key, k.encode(), hashlib.sha256).hexdigest()[:12] if c else ""
                          for k, c in zip(keys, out["case_id"].fillna("").astype(str))]
    return out
