"""Reading sessions as a reader study, in process: required answers (enforced by the handlers the API calls),
"cannot assess", the reader's call beside the model's, display window and zoom, the summary view with its
multi-reader verdict, visibility rules and the reader-study CSV export."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import pytest

from conftest import LUNG
from medimg_demo.feedback import Feedback, read_all, submit
from medimg_demo.feedback.reader_study import CANNOT_ASSESS

LUNG_LABELS = ["adenocarcinoma", "large_cell_carcinoma", "normal", "squamous_cell_carcinoma"]


def seed_study(db: Path | str, session_id: str = "study-1", readers: int = 3, cases: int = 20, seed: int = 0,
               model_id: str = "lung_ct.tf_efficientnet_lite0_v2") -> None:
    """A plausible reader study through the store API: the model right on about 80% of cases, readers 60-75%
    unaided (now and then 'cannot assess'), switching to the model's call on about 60% of disagreements."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(LUNG_LABELS, cases)
    model = [t if rng.random() < 0.8 else rng.choice([l for l in LUNG_LABELS if l != t]) for t in truth]
    for j in range(readers):
        skill = 0.6 + 0.075 * j
        for k in range(cases):
            t, m = str(truth[k]), str(model[k])
            if rng.random() < skill:
                own = t
            else:
                own = CANNOT_ASSESS if rng.random() < 0.15 else str(rng.choice([l for l in LUNG_LABELS if l != t]))
            final = own if own == m or rng.random() > 0.6 else m
            common = dict(reader=f"reader{j + 1:02d}", session_id=session_id, case_id=f"lung_ct/test/case{k:02d}.png",
                          model_id=model_id, image_sha256=secrets.token_hex(32), pred_type=m,
                          pred_type_probs={m: round(float(rng.uniform(0.55, 0.97)), 2)}, truth_type=t)
            submit(db, Feedback(phase="unaided", reader_type=own, confidence=int(rng.integers(2, 6)), **common))
            submit(db, Feedback(phase="aided", type_agree=final == m, corrected_type=None if final == m else final,
                                confidence=int(rng.integers(3, 6)), heatmap_plausibility=int(rng.integers(2, 6)),
                                **common))


@pytest.fixture()
def reading(tmp_path: Path, tiny_registry: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    if not (LUNG / "manifest.csv").is_file():
        pytest.skip("shared lung data not found")
    from medimg_demo.web import reading as r

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_registry))
    monkeypatch.setenv("MEDIMG_FEEDBACK_DB", str(tmp_path / "fb.sqlite"))
    monkeypatch.delenv("MEDIMG_DB_URL", raising=False)
    return r


def _start(r, n: int = 3):  # noqa: ANN001, ANN202
    out = r.session_start("reader01", "s-required", None, n, 0)
    return out[0], out


def test_the_own_read_needs_a_type_and_a_stage(reading) -> None:  # noqa: ANN001
    s, out = _start(reading)
    assert "Case 1 of 3" in out[1]
    types = [v for _, v in out[5]["choices"]]
    assert CANNOT_ASSESS in types and ("Large cell carcinoma", "large_cell_carcinoma") in out[5]["choices"]
    for answer, message in (((None, None), "Choose the tumor type"), (("", "IIIa"), "Choose the tumor type"),
                            (("adenocarcinoma", None), "stage"), (("not_a_label", "IIIa"), "labels")):
        with pytest.raises(gr.Error, match=message):
            reading.session_unaided(s, *answer, 3)
        assert not s.revealed and s.index == 0
    assert read_all(Path(os.environ["MEDIMG_FEEDBACK_DB"])).empty  # nothing stored without an answer


def test_cannot_assess_then_the_calls_side_by_side(reading) -> None:  # noqa: ANN001
    s, _ = _start(reading)
    out = reading.session_unaided(s, CANNOT_ASSESS, None, 2)  # no stage needed when the type cannot be assessed
    assert s.revealed
    compare = out[10]
    assert out[11]["visible"]  # the case panel stays while the case is read
    # the aided questions about what the model showed (stage, its correction, pathway, heatmap rating), appended
    # after the panel; the tiny model's call here names a type with a pathway and a heatmap
    from medimg_demo.web import shown

    asked = [u["visible"] for u in out[12:16]]
    assert asked == [shown.gave_stage(s.prediction)] * 2 + [shown.gave_pathway(s.prediction), shown.gave_heatmap(s.prediction)]
    assert len(out) == 16 and asked[3] == (s.heatmap is not None)
    assert compare.startswith("#### Case 1 of ") and "Your read: Cannot assess (confidence 2/5)" in compare
    assert " Model: " in compare
    assert "_" not in compare.split(" Model: ")[1].split("-")[0]  # readable class names
    assert re.search(r" Model: [A-Za-z ]+ \d{1,2}%", compare), compare  # in percent, as the charts beside it
    scores = out[5]
    assert scores is None or all("_" not in k for k in scores)


def test_the_aided_answer_needs_agreement_and_a_type_when_disagreeing(reading) -> None:  # noqa: ANN001
    s, _ = _start(reading)
    reading.session_unaided(s, "adenocarcinoma", "IIIa", 4)
    gave_type = bool((s.prediction.get("type") or {}).get("label"))
    cases = [((None, None), "agree with the model"), (("", "normal"), "agree with the model"),
             (("Disagree", None), "choose the type"), (("Disagree", "made_up"), "labels")]
    if gave_type:
        cases.append((("Agree", "normal" if s.prediction["type"]["label"] != "normal" else "adenocarcinoma"),
                      "Disagree"))
    for (agree, corrected), message in cases:
        with pytest.raises(gr.Error, match=message):
            reading.session_aided(s, agree, None, None, corrected, None, 3, 3, "")
        assert s.index == 0 and s.revealed
    out = reading.session_aided(s, "Disagree", None, None, "normal", None, 3, 3, "")
    assert s.index == 1 and not s.revealed and "Case 2 of 3" in out[1] and out[10] == ""  # compare line cleared
    rows = read_all(Path(os.environ["MEDIMG_FEEDBACK_DB"]))
    aided = rows[rows["phase"] == "aided"].iloc[0]
    assert aided["type_agree"] == 0 and aided["corrected_type"] == "normal"


def test_the_case_panel_shows_only_while_a_case_is_read(reading) -> None:  # noqa: ANN001
    """The case, heatmap and display controls stood as empty frames once the session was complete."""
    s, out = _start(reading, 1)
    assert out[-1]["visible"] and out[2] is not None
    revealed = reading.session_unaided(s, CANNOT_ASSESS, None, None)
    assert revealed[9]["visible"] and revealed[9]["value"]  # the heatmap frame: shown with the model, not before
    out = reading.session_aided(s, "Agree", None, None, None, None, None, None, "")
    assert s.done and "Session complete" in out[1] and out[2] is None and not out[9]["visible"]
    assert not out[-1]["visible"] and not out[3]["visible"] and not out[4]["visible"]
    _, again = _start(reading, 1)  # resumed when complete: still nothing to show
    assert "Session complete" in again[1] and not again[-1]["visible"]


def test_display_window_and_zoom_are_drawn_on_the_server_and_kept(reading) -> None:  # noqa: ANN001
    from PIL import Image

    from medimg_demo.web import session_view

    gray = np.tile(np.linspace(0, 1, 100), (80, 1))  # dark left, bright right
    full = session_view.render_case(gray)
    assert max(full.shape[:2]) == session_view.DISPLAY_PX
    narrow = session_view.render_case(gray, {"level": 128, "width": 32})
    assert (narrow[..., 0] == 0).mean() > 0.4 and (narrow[..., 0] == 255).mean() > 0.4  # more contrast
    right = session_view.render_case(gray, {"zoom": "4x", "pan_x": 100, "pan_y": 50})
    assert right[..., 0].min() > 180  # the right quarter only: bright
    heat = session_view.render_case(gray, None, np.tile(np.linspace(0, 1, 80)[:, None], (1, 100)))
    assert heat.shape[0] == full.shape[0] and heat.shape[1] > full.shape[1]  # with its colour scale on the right
    panel = heat[:, full.shape[1]:]
    top, bottom = panel[heat.shape[0] // 4], panel[3 * heat.shape[0] // 4]
    assert (top[:, 0] > 150).any() and (bottom[:, 2] > 150).any()  # high: red, at the top; low: blue, below
    left = session_view.crop(gray, "2x", 0, 0)
    assert left.shape == (40, 50) and left.max() < 0.5
    s, _ = _start(reading)
    image, heat = reading.session_redraw(s, 100, 60, "2x", 30, 70)
    assert Image.open(image).size[0] == session_view.DISPLAY_PX and s.display["zoom"] == "2x"
    reading.session_unaided(s, "adenocarcinoma", "IIIa", 4)
    reading.session_aided(s, "Disagree", None, None, "normal", None, 3, 3, "")
    # the next case keeps the window and opens whole: a 2x zoom on the right of case 1 had opened case 2 as a crop of
    # its right side during the own read (UX review, thirty-seventh session)
    assert s.display == {"level": 100.0, "width": 60.0, "zoom": "1x", "pan_x": 50.0, "pan_y": 50.0}
    assert session_view.display_settings("x", -5, "9x", 1e9, None)["zoom"] == "1x"  # bounded


def test_a_redraw_overtaken_by_the_next_case_draws_nothing(reading, monkeypatch) -> None:  # noqa: ANN001
    """A display change in flight when the aided answer moves the page to the next case must not put the previous
    case (or its model heatmap) back on screen during the next case's unaided read."""
    from medimg_demo.web import session_view

    s, _ = _start(reading)
    reading.session_unaided(s, "adenocarcinoma", "IIIa", 4)
    draw = session_view.render_case

    def advancing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the aided answer lands while this draws
        picture = draw(*args, **kwargs)
        s.index, s.revealed = s.index + 1, False
        return picture

    monkeypatch.setattr(session_view, "render_case", advancing)
    image, heat = reading.session_redraw(s, 100, 60, "2x", 30, 70)
    assert image == heat == reading.gr.skip()
    monkeypatch.setattr(session_view, "render_case", draw)
    image, _ = reading.session_redraw(s, 100, 60, "2x", 30, 70)  # undisturbed: drawn
    assert isinstance(image, str)


def test_a_second_tab_s_different_read_is_refused_not_dropped(reading) -> None:  # noqa: ANN001
    """The same reader and session open in two tabs: the second tab's different own read of a case already read is
    refused with a message (the first read is kept), not dropped while the tab says it was recorded."""
    first, _ = _start(reading)
    second, _ = _start(reading)  # another tab, same reader and session, same case
    reading.session_unaided(first, "adenocarcinoma", "IIIa", 4)
    with pytest.raises(reading.gr.Error, match="another tab or window"):
        reading.session_unaided(second, "normal", "Ib", 2)
    reading.session_unaided(second, "adenocarcinoma", "IIIa", 4)  # the same read again (a retry): fine
    rows = reading.session.visible_feedback("")
    assert (rows["phase"] == "unaided").sum() == 1 and rows["reader_type"].iloc[0] == "adenocarcinoma"


def test_a_reload_after_the_model_was_shown_resumes_beside_it_not_at_a_blank_own_read(reading) -> None:  # noqa: ANN001
    """A page reloaded after the own read was recorded (the model seen) had asked for the own read again, and any
    answer but the stored one was refused as "another tab": it now resumes at the model's output beside the stored
    read, stores no second own read, and the aided answer moves on; a page whose case has no own read yet, and a
    finished case, change nothing."""
    first, _ = _start(reading)
    assert all(isinstance(x, dict) and x.get("__type__") == "update" and len(x) == 1
               for x in reading.session_resume(first))  # nothing read yet: nothing changes
    reading.session_unaided(first, "adenocarcinoma", "IIIa", 4)
    again, _ = _start(reading)  # the reload
    assert not again.revealed
    out = reading.session_resume(again)
    assert len(out) == reading.RESUME_OUTPUTS and out[0] is again and again.revealed
    assert "adenocarcinoma" in str(out[10]).lower() or "Adenocarcinoma" in str(out[10])  # the own read, beside
    assert again.own_read == {"type": "adenocarcinoma", "stage": "IIIa", "confidence": 4}
    reading.session_aided(again, "Agree", "Agree", "Agree", "", "", 4, 3, "")
    rows = reading.session.visible_feedback("")
    assert rows["phase"].tolist() == ["unaided", "aided"] and again.index == 1 and not again.revealed
    assert all(x.get("__type__") == "update" for x in reading.session_resume(again))  # case 2: no read yet


def test_a_second_tab_s_different_aided_answer_is_refused_not_dropped(reading) -> None:  # noqa: ANN001
    """Both tabs shown the model on the same case: the second tab's different aided answer had been dropped behind
    the first one's key while that tab moved on as if it were recorded (hostile review); now it is refused and the
    tab stays on the case, and the same answer again passes."""
    first, _ = _start(reading)
    second, _ = _start(reading)
    for tab in (first, second):
        reading.session_unaided(tab, "adenocarcinoma", "IIIa", 4)
    reading.session_aided(first, "Agree", "Agree", "Agree", "", "", 4, 3, "")
    with pytest.raises(reading.gr.Error, match="already answered, differently"):
        reading.session_aided(second, "Disagree", "Agree", "Agree", "normal", "", 4, 3, "")
    assert second.index == 0 and first.index == 1
    reading.session_aided(second, "Agree", "Agree", "Agree", "", "", 4, 3, "")
    rows = reading.session.visible_feedback("")
    assert (rows["phase"] == "aided").sum() == 1 and rows["type_agree"].tolist()[-1] == 1 and second.index == 1


def test_summary_view_gives_the_mrmc_verdict_for_three_readers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    from medimg_demo.web import reading

    db = tmp_path / "fb.sqlite"
    monkeypatch.setenv("MEDIMG_FEEDBACK_DB", str(db))
    monkeypatch.delenv("MEDIMG_DB_URL", raising=False)
    seed_study(db, "study-1", readers=3, cases=20)
    seed_study(db, "pilot", readers=2, cases=20, seed=1)
    table, legend, session, verdict, figure, outputs, _ = reading.summary_view(None)
    assert session["value"] == "study-1" and set(session["choices"]) == {"study-1", "pilot"}
    assert "Obuchowski-Rockette" in verdict and "95% CI" in verdict and "3 readers x 20 cases" in verdict
    assert table["visible"] and figure["visible"]
    table, figure = table["value"], figure["value"]
    assert isinstance(figure, Figure)
    assert list(table.columns) == ["Statistic", "reader01", "reader02", "reader03", "All readers"]
    unaided = table.set_index("Statistic").loc["Accuracy unaided"]
    assert unaided.str.contains(r"\(\d+/(?:20|60)\)").all() and "Wilson" in legend
    pilot = reading.summary_view("pilot")[3]
    assert "Not enough readers" in pilot and "2 readers" in pilot and "nan" not in pilot.lower()
    assert {"Session", "Agrees on type"} <= set(outputs.columns)


def test_readers_see_their_own_rows_and_owners_everyone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medimg_demo.web import session, study_view

    db = tmp_path / "fb.sqlite"
    seed_study(db, "study-1", readers=3, cases=20)
    monkeypatch.setenv("MEDIMG_AUTH", "reader01:pw1,owner01:pw2")
    monkeypatch.setenv("MEDIMG_OWNERS", "owner01")
    mine = study_view.build(session.visible_feedback("reader01", db))
    everyone = study_view.build(session.visible_feedback("owner01", db))
    assert list(mine.table.columns) == ["Statistic", "reader01", "All readers"] and "Not enough readers" in mine.verdict
    assert {"reader01", "reader02", "reader03"} <= set(everyone.table.columns) and "F(1," in everyone.verdict


def test_a_reader_who_stopped_early_is_marked_unfinished(tmp_path: Path) -> None:
    """The session's own number of cases is kept where it started: a reader with fewer reads than it (the reads left
    out as seen before counted as read) is marked in the first row; the others and the pooled column are not."""
    from medimg_demo.feedback import register_session
    from medimg_demo.web import session, study_view

    db = tmp_path / "fb.sqlite"
    assert session.session_size_of("study-1", db) is None  # no store yet: nothing to mark
    register_session(db, "study-1", "lung_ct.tf_efficientnet_lite0_v2", 20, 0, "reader01")
    seed_study(db, "study-1", readers=2, cases=20)
    seed_study(db, "study-1", readers=3, cases=12)  # reader03 stopped after 12 (readers 1-2 answered these again)
    assert session.session_size_of("study-1", db) == 20 and session.session_size_of("other", db) is None
    # a session asked for more cases than the test split holds has the split's: its readers finish there
    from medimg_demo.manifest import read_manifest, split_frame

    register_session(db, "big", "lung_ct.tf_efficientnet_lite0_v2", 200, 0, "reader01")
    register_session(db, "gone", "lung_ct.no_such_model_v9", 7, 0, "reader01")
    assert [session.session_size_of(name, db) for name in ("study-1", "big", "gone")] == [
        20, len(split_frame(read_manifest(LUNG), "test")), 7]
    planned = lambda name: session.session_size_of(name, db)  # noqa: E731 - the store of this test
    first = study_view.build(read_all(db), "study-1", planned=planned).table.iloc[0]
    assert (first["reader01"], first["reader02"]) == ("20", "20")
    assert first["reader03"] == "12 (unfinished: 12 of 20 cases)" and first["All readers"] == "20"
    one = pd.DataFrame([{"session_id": "s", "reader": "r", "cases": 3, "model_seen_before": 1}])  # 1 read left out
    assert study_view.mark_unfinished(pd.DataFrame({"Statistic": ["a", "b"], "r": ["3", "1"]}), one, "s", 4).at[
        0, "r"] == "3"


def test_a_reader_takes_away_no_truth_and_no_case_names_an_owner_takes_everything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unaided row stores the truth and a seeded case list repeats across sessions: a reader's export of a
    throwaway session would give the answers of the real one (brain MRI file names name the class, too)."""
    from types import SimpleNamespace

    from medimg_demo.web import reading

    db = tmp_path / "fb.sqlite"
    monkeypatch.setenv("MEDIMG_FEEDBACK_DB", str(db))
    monkeypatch.delenv("MEDIMG_DB_URL", raising=False)
    seed_study(db, "study-1", readers=2, cases=3)
    seed_study(db, "study-2", readers=1, cases=3)  # the same seed: the same cases
    monkeypatch.setenv("MEDIMG_AUTH", "reader01:pw1,owner01:pw2")
    monkeypatch.setenv("MEDIMG_OWNERS", "owner01")
    reader, owner = SimpleNamespace(username="reader01"), SimpleNamespace(username="owner01")
    rows = pd.read_csv(reading.export_feedback(reader))
    table = pd.read_csv(reading.export_reader_study(reader))
    assert len(rows) == 12 and set(rows["reader"]) == {"reader01"} and len(table) == 6
    for df in (rows, table):
        assert not {"truth", "truth_type", "truth_stage", "aided_correct", "model_correct", "image_sha256"} & set(df)
        assert df["case_id"].str.fullmatch(r"case-[0-9a-f]{12}").all()
        one = df.groupby("session_id")["case_id"].apply(set)
        assert not one["study-1"] & one["study-2"]  # the same case is another id in another session
    assert {"reader_type", "pred_type", "type_agree"} <= set(rows) and "aided_call" in table
    import hashlib

    plain = {"case-" + hashlib.sha256(f"study-1\x1flung_ct/test/case{k:02d}.png".encode()).hexdigest()[:12]
             for k in range(3)}
    assert not plain & set(table["case_id"])  # keyed: guessing file names does not invert the ids
    assert not [c for c in reading.feedback_summary(reader).columns if c.endswith("accuracy")]
    view = reading.summary_view(None, reader)
    assert view[0]["value"].empty and "session owners only" in view[3] and view[4]["value"] is None
    assert "No feedback of yours yet" not in view[3]
    from types import SimpleNamespace as Login

    monkeypatch.setenv("MEDIMG_AUTH", "reader01:pw1,owner01:pw2,newcomer:pw3")
    fresh = reading.summary_view(None, Login(username="newcomer"))  # nothing stored: said, not an empty table
    assert fresh[3].startswith("**No feedback of yours yet.**") and "session owners only" in fresh[3]
    # no empty accuracy table and plot frame under the note, which is said once; their agreement is opened
    assert not view[0]["visible"] and not view[4]["visible"] and view[1] == "" and view[6]["open"]
    assert "model_accuracy" in reading.feedback_summary(owner).columns
    assert "Obuchowski-Rockette" in reading.summary_view(None, owner)[3] or "Not enough" in reading.summary_view(None, owner)[3]
    everything = pd.read_csv(reading.export_reader_study(owner))
    assert len(everything) == 9 and everything["case_id"].str.startswith("lung_ct/test/").all()
    assert everything["truth"].notna().all()

def test_reader_study_export_is_a_safe_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medimg_demo.web import reading

    db = tmp_path / "fb.sqlite"
    monkeypatch.setenv("MEDIMG_FEEDBACK_DB", str(db))
    monkeypatch.delenv("MEDIMG_DB_URL", raising=False)
    seed_study(db, "=HYPERLINK(\"http://x\")", readers=1, cases=3)
    path = Path(reading.export_reader_study())
    text = path.read_text()
    df = pd.read_csv(path)
    assert list(df.columns[:6]) == ["session_id", "reader", "case_id", "model_id", "truth", "unaided_call"]
    assert {"aided_call", "model_call", "unaided_correct", "aided_correct", "unaided_confidence"} <= set(df.columns)
    assert len(df) == 3 and "'=HYPERLINK" in text and ",=HYPERLINK" not in text
    assert "public" in path.parts and path.parent.name == "exports"
    assert json.dumps(df.iloc[0].to_dict(), default=str)


def test_the_aided_answer_sent_twice_at_once_moves_one_case_on(reading, monkeypatch) -> None:  # noqa: ANN001
    """An API client sending "next case" twice at once (the page sends it once) moves the session one case on;
    the second is refused as the case is no longer revealed."""
    import threading
    import time

    from medimg_demo.web import session as session_module

    s, _ = _start(reading, 3)
    reading.session_unaided(s, "adenocarcinoma", "IIIa", 4)
    record = session_module.session_record_aided

    def slow(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - both requests inside at once without the lock
        time.sleep(0.3)
        return record(*args, **kwargs)

    monkeypatch.setattr(session_module, "session_record_aided", slow)
    errors: list[str] = []

    def answer() -> None:
        try:
            reading.session_aided(s, "Agree", None, None, None, None, 3, 3, "")
        except reading.gr.Error as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=answer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.index == 1 and len(errors) == 1 and "own read" in errors[0]


def test_a_session_name_keeps_the_model_size_and_seed_it_was_started_with(reading) -> None:  # noqa: ANN001
    """Another reader starting a session's name with another seed, size or model would pool a second study into the
    owner's table: refused, saying what to choose; the same parameters join it."""
    first = reading.session_start("reader01", "study-B", None, 4, 7)[0]
    for n_cases, seed in ((4, 8), (5, 7)):
        with pytest.raises(gr.Error, match=r"started with the model .*\(lung_ct\..*\), 4 cases and seed 7"):
            reading.session_start("reader02", "study-B", None, n_cases, seed)
    joined = reading.session_start("reader02", "study-B", None, 4, 7)[0]
    assert [c.case_id for c in joined.cases] == [c.case_id for c in first.cases] and joined.reader == "reader02"
    for n_cases, seed, match in ((0, 0, "1 to 200 cases"), (201, 0, "1 to 200 cases"), (5, -1, "from 0 to"),
                                 (5, 2**31, "from 0 to")):
        with pytest.raises(gr.Error, match=match):
            reading.session_start("reader01", "study-C", None, n_cases, seed)


@pytest.mark.parametrize("n_cases, seed", [(None, 0), (20, None), ("many", 0), (float("nan"), 0), (2.5, 0),
                                           (20, float("inf"))])
def test_a_session_without_whole_numbers_is_refused_with_a_message(n_cases: object, seed: object) -> None:
    """The page always sends numbers; an API client sending none, text or NaN got Gradio's bare "Error"."""
    from medimg_demo.web import reading

    with pytest.raises(gr.Error, match="must be a whole number"):
        reading.session_start("reader01", "api-session", None, n_cases, seed)


def test_the_per_output_table_gives_the_busiest_sessions_rows_and_counts_every_answer() -> None:
    """Free answers under thousands of session names (typed by anyone) made every refresh slower without bound."""
    from medimg_demo.web import study_view

    names = [f"s{k:03d}" for k in range(study_view.MAX_SESSIONS_SHOWN + 10)] + ["busy"] * 5 + [""] * 3
    rows = pd.DataFrame({"phase": "free", "session_id": names, "reader": "r", "type_agree": 1.0,
                         "stage_agree": float("nan"), "pathway_agree": float("nan"), "heatmap_plausibility": 4.0})
    out = study_view.outputs_table(rows)
    assert len(out) == study_view.MAX_SESSIONS_SHOWN + 2
    assert out["Session"].tolist()[:3] == ["All sessions", "busy", "(no session)"]
    assert out.iloc[0]["Answers"] == len(names) and out.iloc[1]["Answers"] == 5
    assert out["Session"].iloc[-1].startswith("12 more sessions")


def test_a_session_read_after_a_throwaway_one_with_the_same_seed_leaves_its_reads_out(reading) -> None:  # noqa: ANN001
    """A throwaway session with the same seed showed the model's calls on the cases of the session read next
    (thirty-eighth session's note): those reads are counted as seen before, not as unaided."""
    for name in ("pilot-same-seed", "study-same-seed"):
        s = reading.session_start("reader01", name, None, 2, 0)[0]
        for _ in range(2):
            reading.session_unaided(s, "adenocarcinoma", "IIIa", 3)
            reading.session_aided(s, "Disagree", None, None, "normal", None, 3, 3, "")
    table = reading.summary_view("study-same-seed")[0]["value"].set_index("Statistic")
    assert table.loc["Left out: model's call on the image seen before the unaided read (reads)", "reader01"] == "2"
    assert table.loc["Accuracy unaided", "reader01"] == "-"
    pilot = reading.summary_view("pilot-same-seed")[0]["value"].set_index("Statistic")
    left_out = pilot.loc["Left out: model's call on the image seen before the unaided read (reads)", "reader01"]
    assert left_out == "0" and pilot.loc["Accuracy unaided", "reader01"].endswith("/2)")
