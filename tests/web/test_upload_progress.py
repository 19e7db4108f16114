"""Gradio's upload-progress ids through its own routes: bounded, forgotten when done with, and bound to a login."""

from __future__ import annotations

import gradio as gr
import pytest
from gradio import routes
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from medimg_demo.web import upload_progress
from medimg_demo.web.upload_progress import GuardUploadProgress


def _client(guarded: bool = True) -> TestClient:
    with gr.Blocks() as demo:
        gr.File()
    demo.queue()
    demo.max_file_size = None  # as launch() sets it
    kwargs = {"middleware": [Middleware(GuardUploadProgress)]} if guarded else {}
    app = routes.App.create_app(demo, app_kwargs=kwargs)
    app.tokens = {"tok-alice": "alice", "tok-bob": "bob"}  # as Gradio's login keeps them
    return TestClient(app)


def _as(client: TestClient, who: str) -> dict[str, str]:
    return {"cookie": f"access-token-{client.app.cookie_id}=tok-{who}"}


@pytest.fixture()
def table() -> object:
    statuses = routes.file_upload_statuses
    statuses._statuses.clear()
    statuses._signals.clear()
    return statuses


def _upload(client: TestClient, upload_id: str, headers: dict | None = None) -> int:
    return client.post("/gradio_api/upload", params={"upload_id": upload_id}, headers=headers or {},
                       files={"files": ("scan.png", b"12345")}).status_code


def test_gradio_alone_keeps_the_event_of_every_upload(table) -> None:  # noqa: ANN001
    """What the middleware is for: without it, the table grows with every upload (and every made-up id asked)."""
    client = _client(guarded=False)
    assert _upload(client, "page-upload-1") == 200
    assert "done" in client.get("/gradio_api/upload_progress", params={"upload_id": "page-upload-1"}).text
    assert set(table._signals) == {"page-upload-1"}  # followed to its end, and still kept (made-up ids too, 3 s each)


def test_ids_are_bounded_and_forgotten_once_done_with(table, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.delenv("MEDIMG_AUTH", raising=False)
    monkeypatch.delenv("MEDIMG_AUTH_FILE", raising=False)
    monkeypatch.delenv("MEDIMG_HF_OAUTH", raising=False)
    client = _client()
    for bad in ("x" * 65, "a b", "", "é"):
        assert client.get("/gradio_api/upload_progress", params={"upload_id": bad}).status_code == 400
        assert _upload(client, bad) == 400
    assert client.get("/gradio_api/upload_progress?upload_id=ok1&upload_id=" + "x" * 100).status_code == 400
    # the page's way: upload, then follow it to "done"; nothing is left behind
    assert _upload(client, "page-upload-1") == 200
    followed = client.get("/gradio_api/upload_progress", params={"upload_id": "page-upload-1"}).text
    assert '"msg": "done"' in followed
    assert client.get("/gradio_api/upload_progress", params={"upload_id": "made-up"}).status_code == 404
    assert not table._signals and not table._statuses
    # an upload nobody follows is forgotten after FORGET_AFTER_S (here at once), at the next request naming an id
    monkeypatch.setattr(upload_progress, "FORGET_AFTER_S", 0.0)
    assert _upload(client, "never-followed") == 200
    assert _upload(client, "next-upload") == 200
    assert "never-followed" not in table._statuses and "never-followed" not in table._signals
    assert client.post("/gradio_api/upload", files={"files": ("scan.png", b"1")}).status_code == 200  # no id: as before


def test_another_login_cannot_follow_an_upload(table, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("MEDIMG_AUTH", "alice:pw-a,bob:pw-b")
    client = _client()
    alice, bob = _as(client, "alice"), _as(client, "bob")
    assert _upload(client, "alices-upload", alice) == 200
    assert client.get("/gradio_api/upload_progress", params={"upload_id": "alices-upload"},
                      headers=bob).status_code == 403
    assert _upload(client, "alices-upload", bob) == 403  # nor add to it
    assert "done" in client.get("/gradio_api/upload_progress", params={"upload_id": "alices-upload"},
                                headers=alice).text
