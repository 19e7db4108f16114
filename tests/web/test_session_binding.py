"""With logins on, a page's Gradio session hash answers only the login that first used it."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from medimg_demo.web.session_binding import BindSessionsToLogins, SessionBinding


async def _echo(request: Request) -> PlainTextResponse:
    """Stands for Gradio's route: answers with the hash Starlette reads (the last of a repeated parameter)."""
    if request.method == "POST":
        try:
            return PlainTextResponse(str((await request.json()).get("session_hash")))
        except (ValueError, RecursionError):  # as FastAPI answers a body it cannot parse
            return PlainTextResponse("bad body", status_code=400)
    return PlainTextResponse(request.query_params.get("session_hash") or request.path_params.get("h", ""))


def _client(binding: SessionBinding) -> TestClient:
    routes = [Route("/gradio_api/queue/join", _echo, methods=["POST"]),
              Route("/gradio_api/cancel", _echo, methods=["POST"]),
              Route("/gradio_api/run/predict", _echo, methods=["POST"]),
              Route("/gradio_api/component_server", _echo, methods=["POST"]),
              Route("/gradio_api/queue/data", _echo), Route("/gradio_api/heartbeat/{h}", _echo),
              Route("/gradio_api/stream/{h}/{run}/{c}/playlist.m3u8", _echo), Route("/gradio_api/info", _echo)]
    app = Starlette(routes=routes, middleware=[Middleware(BindSessionsToLogins, binding=binding)])
    app.cookie_id = "c1"  # type: ignore[attr-defined] - as Gradio's App carries them
    app.tokens = {"tok-alice": "alice", "tok-bob": "bob"}  # type: ignore[attr-defined]
    return TestClient(app)


def _as(who: str) -> dict[str, str]:
    return {"cookie": f"access-token-c1=tok-{who}"}


@pytest.fixture()
def logins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIMG_AUTH", "alice:pw-a,bob:pw-b")


def test_another_login_cannot_read_join_cancel_or_beat_a_page_s_session(logins: None) -> None:
    client = _client(SessionBinding())
    assert client.post("/gradio_api/queue/join", json={"session_hash": "page-a", "fn_index": 0},
                       headers=_as("alice")).text == "page-a"
    bob = _as("bob")
    assert client.get("/gradio_api/queue/data", params={"session_hash": "page-a"}, headers=bob).status_code == 403
    assert client.post("/gradio_api/queue/join", json={"session_hash": "page-a"}, headers=bob).status_code == 403
    assert client.post("/gradio_api/cancel", json={"session_hash": "page-a", "event_id": "x"},
                       headers=bob).status_code == 403
    assert client.get("/gradio_api/heartbeat/page-a", headers=bob).status_code == 403
    for route in ("/gradio_api/run/predict", "/gradio_api/component_server"):  # unqueued events, component servers
        assert client.post(route, json={"session_hash": "page-a", "data": []}, headers=bob).status_code == 403
    assert client.get("/gradio_api/stream/page-a/0/7/playlist.m3u8", headers=bob).status_code == 403
    # not signed in at all is another identity too; the owner goes on as before
    assert client.get("/gradio_api/queue/data", params={"session_hash": "page-a"}).status_code == 403
    mine = client.get("/gradio_api/queue/data", params={"session_hash": "page-a"}, headers=_as("alice"))
    assert mine.text == "page-a"
    # a repeated parameter: Starlette reads the last, so every one named must be the caller's
    sneaky = client.get("/gradio_api/queue/data?session_hash=page-b&session_hash=page-a", headers=bob)
    assert sneaky.status_code == 403
    assert client.get("/gradio_api/heartbeat/page-b", headers=bob).text == "page-b"  # bob's own page was bound above
    assert client.get("/gradio_api/info", headers=bob).status_code == 200  # other routes are not touched


def test_without_logins_nothing_is_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDIMG_AUTH", raising=False)
    monkeypatch.delenv("MEDIMG_AUTH_FILE", raising=False)
    monkeypatch.delenv("MEDIMG_HF_OAUTH", raising=False)
    binding = SessionBinding()
    client = _client(binding)
    client.post("/gradio_api/queue/join", json={"session_hash": "page-a"}, headers=_as("alice"))
    assert client.get("/gradio_api/queue/data", params={"session_hash": "page-a"}, headers=_as("bob")).text == "page-a"
    assert not binding._owner


def test_no_caller_can_push_another_login_s_pages_out_and_strange_hashes_are_refused(logins: None) -> None:
    """A live run pushed alice's page out of a shared table with 20,001 requests of no login, then read it as bob;
    hashes of 250 KB grew the table 250 KB a request."""
    binding = SessionBinding(per_login=3, per_anonymous=3)
    client = _client(binding)
    assert client.get("/gradio_api/heartbeat/page-a", headers=_as("alice")).status_code == 200
    for i in range(10):  # bob and callers with no login flood the table
        client.post("/gradio_api/reset", json={"session_hash": f"flood-{i}"})
        client.post("/gradio_api/reset", json={"session_hash": f"bobs-{i}"}, headers=_as("bob"))
    assert client.get("/gradio_api/queue/data", params={"session_hash": "page-a"}, headers=_as("bob")).status_code == 403
    assert "flood-0" not in binding._owner and len(binding._pages["login:bob"]) == 3  # bob forgot his own oldest
    assert client.post("/gradio_api/queue/join", json={"session_hash": "x" * 250_000},
                       headers=_as("bob")).status_code == 400
    assert client.get("/gradio_api/heartbeat/page%0Aa", headers=_as("bob")).status_code == 400


def test_a_call_stream_named_by_a_page_s_hash_is_refused_to_another_login(logins: None) -> None:
    """Gradio's GET /call/{api}/{id} streams the session ``id`` names where it is no event's id."""
    client = _client(SessionBinding())
    client.post("/gradio_api/queue/join", json={"session_hash": "page-a"}, headers=_as("alice"))
    for path in ("/gradio_api/call/predict/page-a", "/gradio_api/call/v2/predict/page-a"):
        assert client.get(path, headers=_as("bob")).status_code == 403
        assert client.get(path, headers=_as("alice")).status_code in (200, 404)  # reaches the app


def test_the_login_is_read_as_gradio_reads_cookies_and_a_deep_body_is_no_server_error(logins: None) -> None:
    """SimpleCookie stopped at a cookie it disliked (a JSON value before the login's): the login read as anonymous,
    its pages never bound; nested brackets raised RecursionError, a 500 with a traceback."""
    client = _client(SessionBinding())
    odd = {"cookie": 'pref={"a": 1}; x=a b; access-token-c1=tok-alice'}
    client.post("/gradio_api/queue/join", json={"session_hash": "page-a"}, headers=odd)
    assert client.get("/gradio_api/heartbeat/page-a", headers=_as("bob")).status_code == 403
    assert client.get("/gradio_api/heartbeat/page-a", headers=_as("alice")).status_code == 200
    deep = client.post("/gradio_api/queue/join", content=b"[" * 100_000 + b"]" * 100_000,
                       headers={**_as("bob"), "content-type": "application/json"})
    assert deep.status_code != 500
