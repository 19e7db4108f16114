"""One store interface, two backends: identical results, one row per idempotency key under concurrent retries,
clear errors from a database server (never its password), and where the store lives by default."""

from __future__ import annotations

import copy
import logging
import socket
import threading
from pathlib import Path

import pandas as pd
import pytest

from medimg_demo import paths
from medimg_demo.errors import StoreError
from medimg_demo.feedback import (Feedback, export_csv, open_store, read_all, record_prediction, register_session,
                                  schema, submit, summarise)

SHA = "d" * 64
OUTPUTS = {"status": "ok", "model": "lung_ct.tiny_v0", "image_sha256": SHA,
           "type": {"label": "normal", "probabilities": {"normal": 0.625, "adenocarcinoma": 0.375}},
           "stage": {"label": "Ib", "probabilities": {"Ib": 0.5, "IIIa": 0.25, "none": 0.25}}}


def _rows() -> list[Feedback | str]:
    """Submissions covering every column kind: NULLs, yes/no, scores, JSON, unicode, formulas, a retried key.
    "prediction" stands for a prediction recorded just before (its id differs per store)."""
    base = dict(reader="reader01", image_sha256=SHA, session_id="s1")
    return [
        Feedback(**base, phase="unaided", case_id="lung_ct/test/a.png", reader_type="normal", confidence=3,
                 truth_type="normal", truth_stage="none", created_utc="2026-01-01T00:00:00.000+00:00"),
        "prediction",
        Feedback(**base, phase="aided", case_id="lung_ct/test/a.png", type_agree=True, stage_agree=False,
                 pathway_agree=None, corrected_stage="IIIa", heatmap_plausibility=4, confidence=5,
                 comment="Läsion — ok ✓", idempotency_key="key-aided-0001",
                 created_utc="2026-01-01T00:01:00.000+00:00"),
        Feedback(reader="reader02", image_sha256=SHA, pred_type_probs={"x": 0.1, "y": 0.9}, pred_type="y",
                 comment="=SUM(A1)", created_utc="2026-01-01T00:02:00.000+00:00"),
        Feedback(reader="reader02", image_sha256=SHA, comment="", heatmap_plausibility=1, type_agree=False,
                 idempotency_key="key-free-0002", created_utc="2026-01-01T00:03:00.000+00:00"),
    ]


def _write(location: Path | str) -> list[int]:
    ids, pid = [], None
    for item in _rows():
        if item == "prediction":
            pid = record_prediction(location, model_id="lung_ct.tiny_v0", weights_sha256="e" * 64, image_sha256=SHA,
                                    outputs=OUTPUTS, created_by="reader01")
            continue
        assert isinstance(item, Feedback)
        fb = copy.deepcopy(item)
        fb.prediction_id = pid if fb.phase == "aided" else None
        ids.append(submit(location, fb))
        if fb.idempotency_key:  # a retry after a lost answer
            assert submit(location, copy.deepcopy(fb)) == ids[-1]
    return ids


def test_both_backends_give_identical_frames_exports_and_summaries(tmp_path, postgres_url) -> None:
    sqlite = tmp_path / "fb.sqlite"
    empty_sqlite, empty_pg = read_all(sqlite), read_all(postgres_url)
    pd.testing.assert_frame_equal(empty_sqlite, empty_pg)
    assert list(empty_sqlite.columns) == schema.columns() and not sqlite.exists()  # reading creates nothing
    assert _write(sqlite) == _write(postgres_url) == [1, 2, 3, 4]
    a, b = read_all(sqlite), read_all(postgres_url)
    assert a["prediction_id"].notna().tolist() == b["prediction_id"].notna().tolist() == [False, True, False, False]
    assert a.loc[1, "pred_stage_probs"] == b.loc[1, "pred_stage_probs"] == '{"IIIa": 0.25, "Ib": 0.5, "none": 0.25}'
    pd.testing.assert_frame_equal(a.drop(columns="prediction_id"), b.drop(columns="prediction_id"))
    assert a.dtypes.astype(str).value_counts().to_dict() == {"object": 22, "float64": 5, "int64": 1}
    pd.testing.assert_frame_equal(summarise(a), summarise(b))
    export_csv(sqlite, tmp_path / "a.csv")
    export_csv(postgres_url, tmp_path / "b.csv")
    ca, cb = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    pd.testing.assert_frame_equal(ca.drop(columns="prediction_id"), cb.drop(columns="prediction_id"))
    assert ca.loc[2, "comment"] == "'=SUM(A1)"


def test_concurrent_retries_of_one_submission_keep_one_row(store) -> None:
    """Eight requests with the same key at once (a client retrying, two replicas): one row, one id for all."""
    ids: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def send() -> None:
        try:
            start.wait()
            ids.append(submit(store, Feedback(reader="reader1", image_sha256=SHA, idempotency_key="same-key-0001")))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(ids)) == 1 and len(ids) == 8
    assert len(read_all(store)) == 1


def test_a_different_answer_under_a_known_key_is_refused_not_dropped(store) -> None:
    """The same case answered again from another tab or window (the key is the session, reader, case and phase) with
    another answer: refused, where it had been stored as nothing while the page said "recorded"; the same answer
    again (a retry after a lost reply) still returns the stored row."""
    from medimg_demo.errors import InputError

    def answer(agree: bool, comment: str | None = None) -> Feedback:
        return Feedback(reader="reader1", image_sha256=SHA, session_id="s1", case_id="c1", phase="aided",
                        type_agree=agree, comment=comment, idempotency_key="rs-same-case-0001")

    first = submit(store, answer(True))
    assert submit(store, answer(True)) == first
    for other in (answer(False), answer(True, "second thoughts")):
        with pytest.raises(InputError, match="already answered, differently"):
            submit(store, other)
    assert len(read_all(store)) == 1 and read_all(store)["type_agree"].tolist() == [1]


def test_feedback_from_analyse_cannot_pose_as_a_reading_sessions_reads(store) -> None:
    """A reader's Analyse-tab feedback named after a reading session counted as its aided reads in the owner's
    summary (10 posts took a session's type agreement from 0.5 to 0.08, hostile review): refused, in any case; and a
    reading session cannot start under a name that Analyse-tab feedback already carries."""
    from medimg_demo.errors import InputError

    register_session(store, "RV-shared", "lung_ct.tiny_v0", 3, 0, "reader1")
    for name in ("RV-shared", "rv-shared"):
        with pytest.raises(InputError, match="'RV-shared' is a reading session"):
            submit(store, Feedback(reader="reader2", image_sha256=SHA, session_id=name, type_agree=False))
    with pytest.raises(InputError, match="'RV-shared' is a reading session"):  # a figure dash for the hyphen
        submit(store, Feedback(reader="reader2", image_sha256=SHA, session_id="RV\u2012shared", type_agree=False))
    submit(store, Feedback(reader="reader2", image_sha256=SHA, session_id="free-notes", type_agree=False))
    for name in ("free-notes", "FREE-NOTES", "free\u2010notes"):
        with pytest.raises(InputError, match="'free-notes' already names feedback given on the Analyse tab"):
            register_session(store, name, "lung_ct.tiny_v0", 3, 0, "reader1")
    assert read_all(store)["session_id"].tolist() == ["free-notes"]


def test_a_sessions_start_reads_the_free_names_from_their_index_not_every_answer(store) -> None:
    """A session's start reads the names free feedback carries while it holds its name's lock; it had scanned every
    answer in the store (thirty-eighth session's note). The partial index answers that query."""
    submit(store, Feedback(reader="reader2", image_sha256=SHA, session_id="free-notes", type_agree=False))
    if isinstance(store, Path):
        import sqlite3

        with sqlite3.connect(store) as con:
            plan = " ".join(str(r[-1]) for r in con.execute(f"EXPLAIN QUERY PLAN {schema.FREE_NAMES}"))
    else:
        import psycopg

        with psycopg.connect(store, autocommit=True) as con:
            con.execute("SET enable_seqscan = off")  # a table of one row is scanned whatever the indexes
            plan = " ".join(r[0] for r in con.execute(f"EXPLAIN {schema.FREE_NAMES}"))
            assert con.execute(schema.FREE_NAMES).fetchall() == [("free-notes",)]
    assert "feedback_free_names" in plan, plan


@pytest.mark.parametrize("first", ["start", "free"])
def test_a_start_and_free_feedback_under_one_new_name_at_once_keep_one_of_them(store, monkeypatch, first) -> None:
    """A reading session's start and an Analyse-tab submit naming the same new name at once: each checked the other
    outside its own write, so both could pass (the session's summary then counted the free answer as its read).
    Now each check runs in its write's transaction: the first one, held inside its check here, makes the other wait
    and then refuses it."""
    from medimg_demo.errors import InputError
    from medimg_demo.feedback import store as store_module

    checking, outcomes = threading.Event(), {}
    slow_thread = {"start": "starter", "free": "submitter"}[first]
    real = store_module.named_alike

    def held(names, name):  # the first one pauses in its check: the other goes meanwhile
        if threading.current_thread().name == slow_thread and not checking.is_set():
            checking.set()
            threading.Event().wait(0.5)
        return real(names, name)

    monkeypatch.setattr(store_module, "named_alike", held)

    def run(kind: str) -> None:
        try:
            if kind == "start":
                register_session(store, "rv-race", "lung_ct.tiny_v0", 3, 0, "reader1")
            else:
                submit(store, Feedback(reader="reader2", image_sha256=SHA, session_id="rv-race", type_agree=False))
            outcomes[kind] = "stored"
        except InputError as exc:
            outcomes[kind] = str(exc)

    submit(store, Feedback(reader="reader0", image_sha256=SHA, type_agree=True))  # the store exists, tables made
    threads = {"start": threading.Thread(target=run, args=("start",), name="starter"),
               "free": threading.Thread(target=run, args=("free",), name="submitter")}
    threads[first].start()
    assert checking.wait(10)
    other = "free" if first == "start" else "start"
    threads[other].start()
    for t in threads.values():
        t.join(30)
    assert outcomes[first] == "stored", outcomes
    assert outcomes[other] != "stored", outcomes
    is_session = list(open_store(store).backend.session_plans()) == ["rv-race"]
    free_rows = (read_all(store)["session_id"] == "rv-race").sum()
    assert (is_session, free_rows) == ((True, 0) if first == "start" else (False, 1))


def test_on_postgres_a_start_holds_up_only_names_that_read_alike(postgres_url, monkeypatch) -> None:
    """A session's start and a named free submit took one lock for every name: each named Analyse-tab submit waited
    for any start (thirty-eighth session's note). Now they lock the name's skeleton: a submit under another name goes
    while a start is held inside its check; one under a name that reads alike waits, and is refused."""
    from medimg_demo.errors import InputError
    from medimg_demo.feedback import store as store_module

    checking, release, done = threading.Event(), threading.Event(), {}
    real = store_module.named_alike

    def held(names, name):  # the start pauses in its check, its name's lock held, until released
        if threading.current_thread().name == "starter":
            checking.set()
            release.wait(30)
        return real(names, name)

    monkeypatch.setattr(store_module, "named_alike", held)
    submit(postgres_url, Feedback(reader="reader0", image_sha256=SHA, type_agree=True))
    starter = threading.Thread(target=register_session, args=(postgres_url, "rv-held", "lung_ct.tiny_v0", 3, 0,
                                                             "reader1"), name="starter")
    starter.start()
    assert checking.wait(10)

    def free(name: str) -> None:
        try:
            submit(postgres_url, Feedback(reader="reader2", image_sha256=SHA, session_id=name, type_agree=False))
            done[name] = "stored"
        except InputError as exc:
            done[name] = str(exc)

    other, alike = threading.Thread(target=free, args=("notes-b",)), threading.Thread(target=free, args=("RV-held",))
    other.start()
    alike.start()
    other.join(10)
    alike.join(2)
    assert done == {"notes-b": "stored"}, done  # the other name went through; the name alike waits for the start
    release.set()
    starter.join(30)
    alike.join(30)
    assert "is a reading session" in done["RV-held"], done


def test_a_session_name_is_fixed_by_its_first_start_even_when_starts_race(store) -> None:
    """Six first starts of one session name at once, each with its own seed: one wins, and every start is told the
    winner's parameters (never two sessions pooled under one name)."""
    got: list[dict] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def begin(seed: int) -> None:
        try:
            start.wait()
            got.append(register_session(store, "study-A", "lung_ct.tiny_v0", 20, seed, f"reader{seed}"))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=begin, args=(seed,)) for seed in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 6
    assert len({(g["seed"], g["started_by"]) for g in got}) == 1 and got[0]["started_by"] == f"reader{got[0]['seed']}"
    other = register_session(store, "study-B", "brain_mri.tiny_v0", 5, 9)
    assert (other["model_id"], other["n_cases"], other["seed"]) == ("brain_mri.tiny_v0", 5, 9)
    plans = open_store(store).session_plans()
    assert plans == {"study-A": ("lung_ct.tiny_v0", 20), "study-B": ("brain_mri.tiny_v0", 5)}


def test_a_session_name_that_differs_only_in_case_is_refused_naming_the_one_that_exists(store) -> None:
    """A reader typing a shared session's code in other case would start a session of their own, their reads apart
    from the others': refused, naming the session's own spelling; that spelling still joins."""
    from medimg_demo.errors import InputError

    register_session(store, "RS-75C98D", "lung_ct.tiny_v0", 20, 0, "owner")
    # other case, and look-alike characters a hostile review started as sessions of their own: a hyphen (U+2010), a
    # minus sign, a modifier minus, a figure dash, a Latin small capital S; a Latin alpha, an Armenian "h" (U+0570)
    # and a Cyrillic "e" in "rv-shared"
    for typed in ("rs-75c98d", "Rs-75C98d", "RS\u201075C98D", "RS\u221275C98D", "RS\u02d775C98D", "RS\u201275C98D",
                  "R\ua731-75C98D"):
        with pytest.raises(InputError, match="named 'RS-75C98D' exists"):
            register_session(store, typed, "lung_ct.tiny_v0", 20, 0, "reader")
    register_session(store, "rv-shared", "lung_ct.tiny_v0", 20, 0, "owner")
    for typed in ("rv-sh\u0251red", "rv-s\u0570ared", "rv-shar\u0435d"):
        with pytest.raises(InputError, match="named 'rv-shared' exists"):
            register_session(store, typed, "lung_ct.tiny_v0", 20, 0, "reader")
    for distinct in ("rv-sharéd", "rv-shared-2", "RS-75C98E"):  # an accent, one more character: other names
        register_session(store, distinct, "lung_ct.tiny_v0", 20, 0, "reader")
    assert register_session(store, "RS-75C98D", "lung_ct.tiny_v0", 20, 0, "reader")["started_by"] == "owner"
    assert register_session(store, "RS-75C98E", "lung_ct.tiny_v0", 20, 0, "reader")["started_by"] == "reader"


def test_first_starts_of_names_alike_in_case_at_once_begin_one_session(store) -> None:
    """Six readers starting "RS-1A2B" in six spellings at the same moment (none exists yet): one session begins, and
    every other start either joins it (its very spelling) or is refused naming it; checked and written in one
    transaction (before, each saw no name alike and began a session of its own)."""
    from medimg_demo.errors import InputError

    spellings = ["RS-1A2B", "rs-1a2b", "Rs-1A2b", "rS-1a2B", "RS-1a2b", "rs-1A2B"]
    started: list[str] = []
    refused: list[str] = []
    start = threading.Barrier(len(spellings))

    def begin(name: str) -> None:
        start.wait()
        try:
            started.append(register_session(store, name, "lung_ct.tiny_v0", 20, 0, name)["session_id"])
        except InputError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=begin, args=(name,)) for name in spellings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(started)) == 1 and len(started) + len(refused) == len(spellings), (started, refused)
    assert all(f"named '{started[0]}' exists" in text for text in refused)
    assert [i for i in open_store(store).backend.session_plans() if i.casefold() == "rs-1a2b"] == started[:1]


def test_one_prediction_takes_a_bounded_number_of_answers_even_at_once(store) -> None:
    """A client replaying one prediction id (444 rows a second, 13 KB each, in a helper's try) stops at the limit;
    twelve requests at once past it leave exactly the limit, and a retry of a stored answer still gets its id."""
    from medimg_demo.errors import InputError

    pid = record_prediction(store, model_id="lung_ct.tiny_v0", weights_sha256="e" * 64, image_sha256=SHA,
                            outputs=OUTPUTS, created_by="")
    limit = schema.MAX_ROWS_PER_PREDICTION
    first = submit(store, Feedback(reader="reader1", image_sha256=SHA, prediction_id=pid, idempotency_key="kept-0001"))
    for k in range(limit - 8):
        submit(store, Feedback(reader=f"reader{k:02d}", image_sha256=SHA, prediction_id=pid))
    refused: list[BaseException] = []
    start = threading.Barrier(12)

    def send(k: int) -> None:
        start.wait()
        try:
            submit(store, Feedback(reader="spammer", image_sha256=SHA, prediction_id=pid, comment=f"x{k}"))
        except InputError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(refused) == 5 and "Run Analyse again" in str(refused[0])
    assert len(read_all(store)) == limit
    assert submit(store, Feedback(reader="reader1", image_sha256=SHA, prediction_id=pid,
                                  idempotency_key="kept-0001")) == first
    other = record_prediction(store, model_id="lung_ct.tiny_v0", weights_sha256="e" * 64, image_sha256=SHA,
                              outputs=OUTPUTS, created_by="")
    submit(store, Feedback(reader="reader1", image_sha256=SHA, prediction_id=other))  # another prediction: its own count

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _assert_secret_kept(exc: pytest.ExceptionInfo[StoreError], caplog: pytest.LogCaptureFixture, secret: str) -> None:
    assert secret not in str(exc.value) and secret not in caplog.text
    assert exc.value.__cause__ is None and exc.value.__suppress_context__  # no driver traceback that could leak it


def test_an_unreachable_server_is_a_clear_error_without_the_password(caplog) -> None:
    url = f"postgresql://medimg:s3cret-Pa55@127.0.0.1:{_closed_port()}/medimg"
    with caplog.at_level(logging.INFO), pytest.raises(StoreError, match="could not be reached.*MEDIMG_DB_URL") as exc:
        submit(url, Feedback(reader="reader1", image_sha256=SHA))
    _assert_secret_kept(exc, caplog, "s3cret-Pa55")
    assert "127.0.0.1" in str(exc.value)


def test_a_refused_login_and_a_missing_database_say_what_to_do(postgres_server, caplog) -> None:
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(postgres_server)
    host = f"{info['host']}:{info['port']}"
    missing = f"postgresql://{info['user']}:{info.get('password', '')}@{host}/no_such_db"
    with pytest.raises(StoreError, match="'no_such_db' does not exist.*createdb no_such_db"):
        read_all(missing)
    wrong = f"postgresql://{info['user']}:Wr0ng-pw%2Fx@{host}/{info['dbname']}"
    try:
        psycopg.connect(wrong).close()
        pytest.skip("this server does not check passwords (trust authentication)")
    except psycopg.OperationalError:
        pass
    with caplog.at_level(logging.INFO), pytest.raises(StoreError, match="refused the login.*password in the database"
                                                       " URL") as exc:
        submit(wrong, Feedback(reader="reader1", image_sha256=SHA))
    _assert_secret_kept(exc, caplog, "Wr0ng-pw")


@pytest.mark.parametrize("url, message", [
    ("postgresql://u@127.0.0.1:notaport/db", "not a valid PostgreSQL URL"),
    ("mysql://u@127.0.0.1/db", "must start with postgresql://"),
])
def test_a_bad_url_is_a_clear_error(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        read_all(url)


def test_the_configured_store_is_the_server_when_a_url_is_set(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDIMG_FEEDBACK_DB", str(tmp_path / "fb.sqlite"))
    monkeypatch.delenv("MEDIMG_DB_URL", raising=False)
    assert paths.feedback_store() == tmp_path / "fb.sqlite" and open_store().kind == "sqlite"
    monkeypatch.setenv("MEDIMG_DB_URL", "postgresql://reader:pw@db.example:5433/medimg")
    store = open_store()
    assert store.kind == "postgresql" and open_store(store) is store and open_store() is store
    assert "db.example:5433" in repr(store) and ":pw@" not in repr(store)


def test_feedback_survives_a_space_restart_on_the_persistent_volume(tmp_path, monkeypatch) -> None:
    """A Space with persistent storage mounts /data: without MEDIMG_STATE_DIR/MEDIMG_FEEDBACK_DB the store goes
    there (the rest of a Space's disk is wiped at restart)."""
    for name in ("MEDIMG_STATE_DIR", "MEDIMG_FEEDBACK_DB"):
        monkeypatch.delenv(name, raising=False)
    volume = tmp_path / "data"
    volume.mkdir()
    assert paths.feedback_db(persistent_root=volume) == volume / "medimg_demo" / "feedback.sqlite"
    monkeypatch.setattr(paths, "PERSISTENT_ROOT", volume)
    submit(paths.feedback_db(), Feedback(reader="reader1", image_sha256=SHA))
    assert len(read_all(volume / "medimg_demo" / "feedback.sqlite")) == 1
    default = paths.REPO_ROOT / "var" / "feedback.sqlite"
    assert paths.feedback_db(persistent_root=tmp_path / "absent") == default
    (tmp_path / "a-file").write_text("")
    assert paths.feedback_db(persistent_root=tmp_path / "a-file") == default
    monkeypatch.setenv("MEDIMG_STATE_DIR", str(tmp_path / "state"))
    assert paths.feedback_db(persistent_root=volume) == tmp_path / "state" / "feedback.sqlite"
    monkeypatch.setenv("MEDIMG_FEEDBACK_DB", str(tmp_path / "chosen.sqlite"))
    assert paths.feedback_db(persistent_root=volume) == tmp_path / "chosen.sqlite"


def test_a_server_error_logs_where_it_happened_not_the_values_it_quotes(postgres_server, caplog) -> None:
    """PostgreSQL's messages can quote what was sent (a constraint's DETAIL gives the failing row: readers' names and
    comments; a cast error the value): the log names the error's class, SQLSTATE, table and constraint only."""
    from medimg_demo.feedback.postgres_store import PostgresBackend

    backend = PostgresBackend(postgres_server)
    with caplog.at_level(logging.INFO), pytest.raises(StoreError):
        with backend._session("test query") as con:  # noqa: SLF001 - the session every operation runs in
            con.execute("SELECT CAST(%s AS integer)", ["DOE^JANE comment 1960"])
    assert "SQLSTATE 22P02" in caplog.text and "DOE^JANE" not in caplog.text
    with caplog.at_level(logging.INFO), pytest.raises(StoreError):
        with backend._session("test insert") as con:  # noqa: SLF001
            con.execute("CREATE TEMP TABLE t (reader text CHECK (length(reader) < 3))")
            con.execute("INSERT INTO t VALUES (%s)", ["DOE^JANE again"])
    assert "constraint t_reader_check" in caplog.text and "DOE^JANE" not in caplog.text
