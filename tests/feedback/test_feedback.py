"""Feedback store: concurrency, hand-counted summary, no PHI, reading sessions end to end, CLI."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import gradio as gr
import pytest

from conftest import LUNG, dicom_bytes, gradient
from medimg_demo import feedback
from medimg_demo.errors import InputError
from medimg_demo.feedback import Feedback, read_all, submit, summarise

SHA = "a" * 64


def test_eight_concurrent_writers_lose_nothing(store) -> None:
    db = store
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(50):
                submit(db, Feedback(reader=f"reader{k}", image_sha256=SHA, phase="free", comment=f"{k}-{i}",
                                    type_agree=i % 2 == 0, heatmap_plausibility=1 + i % 5))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    df = read_all(db)
    assert len(df) == 400 and df["id"].is_unique
    assert set(df["comment"]) == {f"{k}-{i}" for k in range(8) for i in range(50)}
    if not isinstance(db, str):  # the SQLite file: write-ahead log, so readers never block the writer
        import sqlite3

        assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_summary_matches_a_hand_count(store) -> None:
    db = store
    rows = [
        # session A: 3 aided reads; truth known
        dict(session_id="A", case_id="c1", reader="r1", phase="aided", pred_type="x", truth_type="x", type_agree=True, stage_agree=True, pathway_agree=True, heatmap_plausibility=5),
        dict(session_id="A", case_id="c2", reader="r1", phase="aided", pred_type="x", truth_type="y", type_agree=False, corrected_type="y", pathway_agree=True, heatmap_plausibility=2),
        dict(session_id="A", case_id="c3", reader="r2", phase="aided", pred_type="y", truth_type="y", type_agree=False, corrected_type="x", stage_agree=False, pathway_agree=False, heatmap_plausibility=2),
        # session A: 2 unaided reads
        dict(session_id="A", case_id="c4", reader="r1", phase="unaided", reader_type="x", truth_type="x"),
        dict(session_id="A", case_id="c5", reader="r2", phase="unaided", reader_type="x", truth_type="y"),
        # session B: 1 aided read, no truth
        dict(session_id="B", reader="r3", phase="aided", pred_type="z", type_agree=True, heatmap_plausibility=4),
    ]
    for i, r in enumerate(rows):  # each read on an image of its own
        submit(db, Feedback(image_sha256=f"{i + 1:064x}", **r))
    s = summarise(read_all(db)).set_index("session_id")
    a = s.loc["A"]
    assert a["readers"] == 2 and a["aided_reads"] == 3 and a["unaided_reads"] == 2
    assert a["type_agreement"] == pytest.approx(1 / 3)
    assert a["stage_agreement"] == pytest.approx(1 / 2)  # one missing answer is not counted
    assert a["pathway_agreement"] == pytest.approx(2 / 3)
    assert a["model_accuracy"] == pytest.approx(2 / 3)  # x=x, x!=y, y=y
    assert a["reader_aided_accuracy"] == pytest.approx(2 / 3)  # x, y (corrected), x (wrongly corrected)
    assert a["reader_unaided_accuracy"] == pytest.approx(1 / 2)
    assert (a["heatmap_2"], a["heatmap_5"], a["heatmap_4"]) == (2, 1, 0)
    b = s.loc["B"]
    assert b["type_agreement"] == 1.0 and np.isnan(b["model_accuracy"])
    total = s.loc["ALL"]
    assert total["submissions"] == 6 and total["readers"] == 3 and total["heatmap_4"] == 1
    # r1's own read of c1 stored after r1 had answered on c1's image with the model's call shown: not unaided; left
    # out, with its aided answer, so both accuracies are over the same reads (as in the reader study)
    submit(db, Feedback(image_sha256=f"{1:064x}", session_id="A", case_id="c1", reader="r1", phase="unaided",
                        reader_type="y", truth_type="x"))
    a = summarise(read_all(db)).set_index("session_id").loc["A"]
    assert a["unaided_reads"] == 3 and a["unaided_after_model_seen"] == 1
    assert a["reader_unaided_accuracy"] == pytest.approx(1 / 2)  # not 1/3: the read after the model is out
    assert a["model_accuracy"] == pytest.approx(1 / 2) and a["reader_aided_accuracy"] == pytest.approx(1 / 2)


def test_validation_errors_tell_what_to_do(store) -> None:
    with pytest.raises(InputError, match="pseudonym"):
        submit(store, Feedback(reader="Dr Jane Doe", image_sha256=SHA))
    with pytest.raises(InputError, match="prediction first"):
        submit(store, Feedback(reader="reader1", image_sha256="nope"))
    with pytest.raises(InputError, match="between 1 and 5"):
        submit(store, Feedback(reader="reader1", image_sha256=SHA, confidence=9))
    # a correction other than the model's call needs 'Disagree' (one chosen for an earlier case and left in the form,
    # or picked while agreeing, would store a contradiction)
    for agree in (True, None):
        with pytest.raises(InputError, match="goes with 'Disagree'"):
            submit(store, Feedback(reader="reader1", image_sha256=SHA, pred_type="normal", type_agree=agree,
                                   corrected_type="adenocarcinoma"))
        with pytest.raises(InputError, match="corrected stage"):
            submit(store, Feedback(reader="reader1", image_sha256=SHA, pred_stage="Ib", stage_agree=agree,
                                   corrected_stage="IIIa"))
    assert len(read_all(store)) == 0
    submit(store, Feedback(reader="reader1", image_sha256=SHA, pred_type="normal", type_agree=False,
                           corrected_type="adenocarcinoma"))
    submit(store, Feedback(reader="reader1", image_sha256=SHA, pred_type="normal", type_agree=True,
                           corrected_type="normal"))  # the model's own call: no contradiction
    submit(store, Feedback(reader="reader1", image_sha256=SHA, type_agree=True, corrected_type="normal"))  # no call
    assert len(read_all(store)) == 3


def test_database_holds_no_phi_from_a_dicom(tmp_path, store, tiny_registry, monkeypatch) -> None:
    """The app, configured as a deployer would (MEDIMG_FEEDBACK_DB or MEDIMG_DB_URL), stores no identifier."""
    from medimg_demo.web import handlers as app

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_registry))
    monkeypatch.setenv("MEDIMG_FEEDBACK_DB", str(tmp_path / "fb.sqlite"))
    if isinstance(store, str):
        monkeypatch.setenv("MEDIMG_DB_URL", store)
    monkeypatch.setattr(app, "WORK_DIR", tmp_path / "work")
    src = tmp_path / "Doe^Jane_PID-998877.dcm"
    src.write_bytes(dicom_bytes((gradient(96, 96) * 3000).astype(np.uint16), slope=1, intercept=-1024, window=(40, 400)))
    outputs = app.predict(app.rename_upload(str(src)), None, 0.5)
    raw = outputs[7]
    # an empty form (a reviewer pressed Submit with nothing chosen) was stored as a row of no answers
    with pytest.raises(gr.Error, match="at least one answer"):
        app.submit_feedback(raw, "reader07", "s1", None, None, None, "", "", None, None, "  ")
    msg = app.submit_feedback(raw, "reader07", "s1", "Disagree", "Disagree", "Agree", "normal", "none", 2, 4, "looks odd")
    assert "stored" in msg
    if isinstance(store, str):  # every stored cell of both tables, as the server holds them
        import psycopg

        with psycopg.connect(store) as con:
            blob = "\n".join(r[0] for t in ("feedback", "predictions")
                              for r in con.execute(f"SELECT CAST({t} AS TEXT) FROM {t}")).encode()
        assert not (tmp_path / "fb.sqlite").exists()  # the configured server, not the embedded default
    else:
        blob = (tmp_path / "fb.sqlite").read_bytes()
        for name in ("fb.sqlite-wal",):
            if (tmp_path / name).exists():
                blob += (tmp_path / name).read_bytes()
    assert raw["image_sha256"].encode() in blob
    for secret in ("Doe", "Jane", "PID-998877", "19600101", "Hidden Road", "Secretia", ".dcm"):
        assert secret.encode() not in blob, secret
    df = read_all(store)
    assert df.loc[0, "image_sha256"] == raw["image_sha256"] and len(df.loc[0, "weights_sha256"]) == 64


@pytest.mark.slow
def test_reading_session_of_20_cases_end_to_end(tmp_path, monkeypatch) -> None:
    """Two readers read the same 20 lung CT test cases: unaided call, then model output, then feedback."""
    from medimg_demo.web import reading as app

    if not (LUNG / "manifest.csv").is_file():
        pytest.skip("shared data not found")
    db = tmp_path / "fb.sqlite"
    monkeypatch.setenv("MEDIMG_FEEDBACK_DB", str(db))
    seen: dict[str, list[str]] = {}
    for reader in ("reader01", "reader02"):
        out = app.session_start(reader, "lung-s1", "lung_ct.tf_efficientnet_lite0_v2", 20, 7)
        s = out[0]
        assert len(s.cases) == 20 and s.index == 0
        assert {c.label for c in s.cases} == {"adenocarcinoma", "large_cell_carcinoma", "normal", "squamous_cell_carcinoma"}
        seen[reader] = [c.case_id for c in s.cases]
        for i in range(20):
            app.session_unaided(s, "adenocarcinoma", "Ib", 3)
            assert s.revealed and s.prediction is not None
            agree = "Agree" if i % 2 == 0 else "Disagree"
            app.session_aided(s, agree, "Agree", "Agree", None if i % 2 == 0 else "normal", None, 4, 3, "")
        assert s.done
        assert app.session_start(reader, "lung-s1", "lung_ct.tf_efficientnet_lite0_v2", 20, 7)[0].done  # resumes at the end
    assert seen["reader01"] == seen["reader02"]
    df = read_all(db)
    assert (df["phase"] == "unaided").sum() == 40 and (df["phase"] == "aided").sum() == 40
    s = summarise(df).set_index("session_id").loc["lung-s1"]
    assert s["type_agreement"] == pytest.approx(0.5) and s["readers"] == 2
    truth = df[df["phase"] == "unaided"]["truth_type"]
    assert s["reader_unaided_accuracy"] == pytest.approx((truth == "adenocarcinoma").mean())


def test_feedback_cli_export_and_summary(tmp_path, store, capsys, caplog, monkeypatch) -> None:
    from medimg_demo.cli import main

    db = store  # --db takes a SQLite file or a postgresql:// URL
    submit(db, Feedback(reader="r1", image_sha256=SHA, phase="aided", session_id="S", type_agree=True, heatmap_plausibility=4))
    out = tmp_path / "out.csv"
    assert main(["feedback", "export", "--db", str(db), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 1
    assert main(["feedback", "summary", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert "type_agreement" in text and "ALL" in text
    # --out is checked as every command's outputs: `export --db store.sqlite --out store.sqlite` had replaced the
    # whole store with its CSV, and an existing file was overwritten without a word
    assert main(["feedback", "export", "--db", str(db), "--out", str(out)]) == 2
    assert main(["feedback", "export", "--db", str(db), "--out", str(out), "--overwrite"]) == 0
    if not str(db).startswith("postgresql://"):
        import shutil

        named_csv = tmp_path / "store.csv"  # a store under a CSV name: only the input rule stops the write
        shutil.copyfile(db, named_csv)
        caplog.clear()
        assert main(["feedback", "export", "--db", str(named_csv), "--out", str(named_csv), "--overwrite"]) == 2
        assert "is the input: writing it would destroy the feedback store" in caplog.text
        monkeypatch.setenv("MEDIMG_FEEDBACK_DB", str(named_csv))  # the default store, no --db: protected as well
        monkeypatch.delenv("MEDIMG_DB_URL", raising=False)
        assert main(["feedback", "export", "--out", str(named_csv), "--overwrite"]) == 2
        assert len(read_all(named_csv)) == 1
        report = tmp_path / "report.pdf"
        report.write_bytes(b"%PDF-1.4 not a database")
        assert main(["feedback", "summary", "--db", str(report)]) == 2  # was "Ask the deployer to check the state"


def test_a_line_break_in_a_one_line_field_is_refused_and_a_comment_s_stays_in_its_cell(tmp_path) -> None:  # noqa: ANN001
    """A carriage return left unquoted by the CSV writer started a new row whose first cell was a formula."""
    import csv

    for session in ("s\r=cmd|' /C calc'!A0", "s\n=1+1", "s\u2028x"):
        with pytest.raises(InputError, match="line break"):
            Feedback(reader="reader01", image_sha256="0" * 64, session_id=session).validate()
    for reserved in ("ALL", "All sessions", "(no session)"):
        with pytest.raises(InputError, match="kept for the summary"):
            Feedback(reader="reader01", image_sha256="0" * 64, session_id=reserved).validate()
    df = pd.DataFrame({"comment": ["fine\r=cmd|' /C calc'!A0", "two\nlines", "=1+1"], "n": [1, 2, 3]})
    out = tmp_path / "rows.csv"
    feedback.write_csv(df, out)
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 4 and [r[0] for r in rows[1:]] == ["fine\r=cmd|' /C calc'!A0", "two\nlines", "'=1+1"]
    assert pd.read_csv(out)["n"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("name", ["ALL\u200b", "study-B\u200b", "\u202eB-yduts", "\uff21\uff2c\uff2c", "all sessions",
                                  "\u0433s-75c98d", "rv-shared\u034f", "rv-shared\ufe00", "rv-shared\u2800",
                                  "rv-shared\u0332", "rv-shared\u0301", "rv\u115f-1", "rv-1\U000e0101", "rv-1\ue000"])
def test_a_session_name_that_passes_for_another_is_refused(name: str) -> None:
    """Zero-width, bidi and full-width characters made a second "ALL" and a fake "study-B" in the owner's tables; a
    Cyrillic letter among Latin ones a session that reads as another's (a live run); a combining grapheme joiner, a
    variation selector or a blank braille pattern after "rv-shared" drew as "rv-shared" and was taken as a session
    of its own (hostile review, thirty-seventh session), as a mark under or over a plain letter reads as it."""
    with pytest.raises(InputError, match="invisible, reversed or full-width|kept for the summary|several alphabets"):
        Feedback(reader="reader01", image_sha256="0" * 64, session_id=name).validate()


@pytest.mark.parametrize("name", ["étude-poumon", "исследование-1", "研究-肺", "lung-2026-11-24", "肺がん-2026",
                                  "データ-1", "東京スタディ", "Hawaiʻi-study", "अध्ययन-1", "การศึกษา-1"])
def test_a_session_name_in_one_alphabet_is_taken(name: str) -> None:
    Feedback(reader="reader01", image_sha256="0" * 64, session_id=name).validate()
