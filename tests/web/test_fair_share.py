"""One upload or analysis at a time per reader: a second one of the same reader is refused at once (its place in
the queue and its decode slot go to the others); another reader goes on."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from conftest import lung_test_image

from medimg_demo.web import downloads, fair_share, handlers, uploads

BOB = SimpleNamespace(username="bob02", session_hash="page-of-bob")
CAROL = SimpleNamespace(username="carol03", session_hash="page-of-carol")


def test_a_reader_holds_one_job_and_gives_it_back_however_it_ends() -> None:
    with fair_share.one_job(BOB):
        with pytest.raises(fair_share.Busy, match="still being worked on"):
            with fair_share.one_job(SimpleNamespace(username="bob02", session_hash="another-tab")):
                pass
        with fair_share.one_job(CAROL):  # another login goes on
            assert fair_share.in_the_works() == 2
        with fair_share.one_job(None, {"preferred_username": "hf-dana"}), fair_share.one_job(None, None):
            pass  # a Hugging Face account of its own; a call from no page (the command line) is not limited
    with pytest.raises(RuntimeError):
        with fair_share.one_job(BOB):
            raise RuntimeError("the job failed")
    assert fair_share.in_the_works() == 0
    with fair_share.one_job(BOB):  # given back, even by the job that failed
        pass
    # without logins each page is a reader of its own
    page = SimpleNamespace(username=None, session_hash="page-1")
    with fair_share.one_job(page), fair_share.one_job(SimpleNamespace(username=None, session_hash="page-2")):
        with pytest.raises(fair_share.Busy):
            with fair_share.one_job(page):
                pass
    with fair_share.one_job(BOB, limit=2), fair_share.one_job(BOB, limit=2):  # MEDIMG_JOBS_PER_READER
        pass


def test_a_second_upload_of_a_reader_is_refused_at_once_and_not_kept_while_another_reader_uploads(
        tmp_path: Path, monkeypatch) -> None:
    started, release = threading.Event(), threading.Event()

    def slow_clean(data: bytes) -> tuple[bytes, str]:
        if data == b"bob's first":  # a scan slow to clean: held until the test lets it go
            started.set()
            assert release.wait(10)
        return data, ".png"

    monkeypatch.setattr(uploads, "clean_upload", slow_clean)
    monkeypatch.setattr(handlers, "WORK_DIR", tmp_path / "work")
    files = {}
    for name in ("bob1", "bob2", "carol"):
        files[name] = tmp_path / f"{name}.png"
    files["bob1"].write_bytes(b"bob's first")
    files["bob2"].write_bytes(b"bob's second")
    files["carol"].write_bytes(b"carol's")
    out: dict[str, object] = {}
    first = threading.Thread(target=lambda: out.setdefault("bob1", handlers.rename_upload(str(files["bob1"]), BOB)))
    first.start()
    try:
        assert started.wait(10)
        with pytest.raises(gr.Error, match="still being worked on"):
            handlers.rename_upload(str(files["bob2"]), SimpleNamespace(username="bob02", session_hash="tab-2"))
        assert not files["bob2"].exists()  # refused, and the raw upload went with its request all the same
        assert Path(handlers.rename_upload(str(files["carol"]), CAROL)).read_bytes() == b"carol's"
    finally:
        release.set()
        first.join(10)
    assert Path(str(out["bob1"])).read_bytes() == b"bob's first"
    assert fair_share.in_the_works() == 0


def test_analyse_report_and_copy_wait_for_nothing_of_another_reader_and_refuse_a_second_of_the_same() -> None:
    img = str(lung_test_image())
    with fair_share.one_job(BOB):  # bob's first job is in the works (a scan slow to decode)
        for call in (lambda: handlers.predict(img, None, 0.5, request=BOB),
                     lambda: downloads.report(img, None, request=BOB),
                     lambda: downloads.deidentify(img, request=BOB)):
            with pytest.raises(gr.Error, match="still being worked on"):
                call()
        out = handlers.predict(img, None, 0.5, request=CAROL)  # carol's analysis runs meanwhile
        assert out[7]["type"]["label"]
    assert fair_share.in_the_works() == 0
