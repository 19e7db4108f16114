"""Feedback that cannot be forged or lost: recorded predictions, bounded fields, idempotency, safe CSV, clear errors."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from medimg_demo import feedback
from medimg_demo.errors import InputError, StoreError
from medimg_demo.feedback import Feedback, read_all, schema, sqlite_store, submit
from medimg_demo.feedback import store as store_module

SHA = "b" * 64
OUTPUTS = {"model": "lung_ct.tiny_v0", "type": {"label": "normal", "probabilities": {"normal": 0.7, "adenocarcinoma": 0.3}},
           "stage": None, "image_sha256": SHA}


def _prediction(db) -> str:  # noqa: ANN001
    return store_module.record_prediction(db, model_id="lung_ct.tiny_v0", weights_sha256="c" * 64, image_sha256=SHA,
                                   outputs=OUTPUTS)


def test_feedback_takes_the_model_side_from_the_recorded_prediction(store) -> None:
    db = store
    pid = _prediction(db)
    assert len(pid) == 32 and pid != _prediction(db)  # random ids, never sequential
    forged = Feedback(reader="reader1", image_sha256="0" * 64, model_id="other", pred_type="anything",
                      prediction_id=pid, type_agree=True)
    row = submit(db, forged)
    rec = read_all(db).set_index("id").loc[row]
    assert (rec["image_sha256"], rec["pred_type"], rec["model_id"]) == (SHA, "normal", "lung_ct.tiny_v0")
    assert rec["weights_sha256"] == "c" * 64 and rec["prediction_id"] == pid


def test_unknown_prediction_id_is_refused(store) -> None:
    db = store
    _prediction(db)
    with pytest.raises(InputError, match="not known"):
        submit(db, Feedback(reader="reader1", image_sha256=SHA, prediction_id="0" * 32))
    with pytest.raises(InputError, match="prediction"):
        submit(db, Feedback(reader="reader1", image_sha256=SHA, prediction_id="../../etc/passwd"))
    assert len(read_all(db)) == 0


@pytest.mark.parametrize("field, value, message", [
    ("corrected_type", "x" * 2_000_000, "longer than 64"),
    ("comment", "y" * 4001, "longer than 4000"),
    ("session_id", "s" * 201, "longer than 200"),
    ("session_id", "bad\x00id", "control characters"),
    ("confidence", 2.5, "whole number"),
    ("heatmap_plausibility", 0, "between 1 and 5"),
    ("pred_type_probs", {"a": 7.0}, "between 0 and 1"),
    ("idempotency_key", "k" * 201, "submission key"),
])
def test_fields_are_bounded(store, field: str, value: object, message: str) -> None:
    fb = Feedback(reader="reader1", image_sha256=SHA)
    setattr(fb, field, value)
    with pytest.raises(InputError, match=message):
        submit(store, fb)
    assert len(read_all(store)) == 0


def test_a_retry_with_the_same_key_returns_the_same_row(store) -> None:
    db = store
    pid = _prediction(db)
    first = submit(db, Feedback(reader="reader1", image_sha256=SHA, prediction_id=pid, idempotency_key="key-0001-abc"))
    again = submit(db, Feedback(reader="reader1", image_sha256=SHA, prediction_id=pid, idempotency_key="key-0001-abc"))
    other = submit(db, Feedback(reader="reader1", image_sha256=SHA, prediction_id=pid, idempotency_key="key-0002-abc"))
    assert first == again != other
    assert len(read_all(db)) == 2


def test_the_same_key_from_another_reader_is_its_own_row(store) -> None:
    """A key is a retry only for the reader who sent it: reused by another client (or copied from a reading
    session's predictable key) it must not take that reader's row and be dropped while told "stored"."""
    pid = _prediction(store)
    mine = submit(store, Feedback(reader="reader1", image_sha256=SHA, prediction_id=pid, idempotency_key="rs-shared"))
    theirs = submit(store, Feedback(reader="mallory", image_sha256=SHA, prediction_id=pid, idempotency_key="rs-shared"))
    retry = submit(store, Feedback(reader="reader1", image_sha256=SHA, prediction_id=pid, idempotency_key="rs-shared"))
    assert mine != theirs and retry == mine
    rows = read_all(store)
    assert sorted(rows["reader"]) == ["mallory", "reader1"]
    assert set(rows["idempotency_key"]) == {store_module.scoped_key("rs-shared", r) for r in ("reader1", "mallory")}


def test_a_narrowed_read_gives_exactly_the_matching_rows(store) -> None:
    """A reading session reads its own rows in the database, not every row: the narrowed read must equal the full
    read filtered in pandas, with the same columns and dtypes, and name no column outside the allowed few."""
    for session, reader, case, phase in [("s1", "ann", "c1", "unaided"), ("s1", "ann", "c1", "aided"),
                                         ("s1", "bob", "c1", "unaided"), ("s2", "ann", "c1", "unaided"),
                                         ("s1", "ann", "c2", "unaided"), ("s1'; DROP TABLE feedback; --", "ann", "c1",
                                                                          "unaided")]:
        submit(store, Feedback(reader=reader, image_sha256=SHA, session_id=session, case_id=case, phase=phase))
    everything = read_all(store)
    got = feedback.read_matching(store, session_id="s1", reader="ann", case_id="c1", phase="unaided")
    want = everything[(everything["session_id"] == "s1") & (everything["reader"] == "ann")
                      & (everything["case_id"] == "c1") & (everything["phase"] == "unaided")]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
    assert len(got) == 1 and len(feedback.read_matching(store, reader="ann")) == 5
    assert len(feedback.read_matching(store, session_id="s1'; DROP TABLE feedback; --")) == 1
    assert len(read_all(store)) == 6
    assert feedback.read_matching(store, session_id="nobody").empty
    with pytest.raises(ValueError, match="narrowed by"):
        feedback.read_matching(store, comment="x")


def test_an_older_store_is_migrated_in_place(store) -> None:
    """A store of the first release (no prediction id, idempotency key or status) gains the added columns."""
    first_release = ", ".join(f"{n} {t}" for n, t in schema.FEEDBACK_COLUMNS.items())
    insert = "INSERT INTO feedback (created_utc, reader, phase, image_sha256) VALUES ('t', 'r1', 'free', '%s')" % SHA
    if isinstance(store, str):
        import psycopg

        with psycopg.connect(store) as con:
            con.execute("CREATE TABLE feedback (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
                        f"{first_release})")
            con.execute(insert)
    else:
        con = sqlite3.connect(store)
        con.executescript(f"CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, {first_release}); {insert};")
        con.close()
    assert submit(store, Feedback(reader="reader1", image_sha256=SHA, idempotency_key="migrated-1")) == 2
    assert submit(store, Feedback(reader="reader1", image_sha256=SHA, idempotency_key="migrated-1")) == 2
    df = read_all(store)
    assert len(df) == 2 and list(df.columns) == schema.columns()
    assert df["idempotency_key"].tolist() == [None, store_module.scoped_key("migrated-1", "reader1")]
    assert df["pred_status"].isna().all()


def test_csv_export_neutralises_formulas(tmp_path, store) -> None:
    db = store
    for comment in ("=HYPERLINK(\"http://x\",\"click\")", "+1+2", "-3", "@SUM(A1)", "\tTAB", "\rCR", "plain -1"):
        submit(db, Feedback(reader="reader1", image_sha256=SHA, comment=comment.strip() if comment[0] not in "\t\r" else comment))
    out = tmp_path / "out.csv"
    assert feedback.export_csv(db, out) == 7
    comments = pd.read_csv(out, keep_default_na=False)["comment"].tolist()
    assert all(not c.startswith(store_module.FORMULA_PREFIXES) for c in comments), comments
    assert comments[0] == "'=HYPERLINK(\"http://x\",\"click\")" and comments[-1] == "plain -1"
    assert pd.read_csv(out)["heatmap_plausibility"].isna().all()  # numbers untouched


def test_read_only_store_is_a_clear_error(tmp_path, monkeypatch) -> None:
    db = tmp_path / "fb.sqlite"
    submit(db, Feedback(reader="reader1", image_sha256=SHA))
    real = sqlite3.connect
    monkeypatch.setattr(sqlite_store.sqlite3, "connect",
                        lambda path, **kw: real(f"file:{path}?mode=ro", uri=True, **kw))
    with pytest.raises(StoreError, match="read-only.*MEDIMG_STATE_DIR"):
        submit(db, Feedback(reader="reader1", image_sha256=SHA))


def test_full_disk_is_a_clear_error(tmp_path, monkeypatch) -> None:
    db = tmp_path / "fb.sqlite"
    submit(db, Feedback(reader="reader1", image_sha256=SHA))
    real = sqlite3.connect

    def full(path, **kw):  # noqa: ANN001, ANN202 - SQLite's own "database or disk is full"
        con = real(path, **kw)
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        con.execute(f"PRAGMA max_page_count = {pages}")
        return con

    monkeypatch.setattr(sqlite_store.sqlite3, "connect", full)
    with pytest.raises(StoreError, match="disk is full"):
        for i in range(200):
            submit(db, Feedback(reader="reader1", image_sha256=SHA, comment="z" * 3000 + str(i)))


def test_unopenable_store_is_a_clear_error(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="MEDIMG_STATE_DIR"):
        submit(blocker / "fb.sqlite", Feedback(reader="reader1", image_sha256=SHA))


def test_feedback_rows_carry_the_status_of_the_prediction_shown(store) -> None:
    db = store
    refused = {"status": "refused", "reason": "Modality NM; this model reads CT", "type": None, "stage": None,
               "treatment": None, "ood": None}
    pid = store_module.record_prediction(db, model_id="lung_ct.tiny_v0", weights_sha256="c" * 64, image_sha256=SHA,
                                  outputs=refused)
    submit(db, Feedback(reader="reader07", image_sha256=SHA, prediction_id=pid, comment="right to refuse"))
    ok_row = _prediction(db)
    submit(db, Feedback(reader="reader07", image_sha256=SHA, prediction_id=ok_row))
    rows = read_all(db)
    assert list(rows["pred_status"]) == ["refused", "ok"]
    assert rows["pred_type"].isna().iloc[0]
