"""A reader's share of Gradio's queue, judged at join: a few events waiting at most, and no second upload or analysis
waiting in line to be refused; other readers join as before."""

from __future__ import annotations

from types import SimpleNamespace

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from medimg_demo.web import fair_share, handlers
from medimg_demo.web.queue_share import QueueShare

PREDICT, PERFORMANCE = 8, 63


async def _joined(request: Request) -> JSONResponse:
    """Stands for Gradio's join: the body it would read, untouched by the middleware."""
    return JSONResponse({"event_id": "e1", "fn_index": (await request.json())["fn_index"]})


def _signed_in(account: str | None) -> dict:
    """The sign-in session Gradio's SessionMiddleware puts in a request's scope for a Hugging Face account."""
    return {"oauth_info": {"userinfo": {"preferred_username": account}}} if account else {}


def _event(fn: object, username: str | None, page: str, hf: str | None = None) -> SimpleNamespace:
    request = SimpleNamespace(scope={"type": "http", "headers": [], "session": _signed_in(hf)})
    return SimpleNamespace(fn=SimpleNamespace(fn=fn), username=username, session_hash=page, request=request)


class _HubSession:
    """Stands for Gradio's SessionMiddleware (outside the app's own): the account named by the test's header."""

    def __init__(self, app: object) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        account = dict(scope.get("headers", [])).get(b"x-hf-account")
        scope["session"] = _signed_in(account.decode() if account else None)
        await self.app(scope, receive, send)  # type: ignore[operator]


def _client(waiting: list) -> TestClient:
    blocks = SimpleNamespace(
        fns={PREDICT: SimpleNamespace(fn=handlers.predict), PERFORMANCE: SimpleNamespace(fn=lambda: None)},
        _queue=SimpleNamespace(event_queue_per_concurrency_id={"a": SimpleNamespace(queue=waiting[:3]),
                                                                "b": SimpleNamespace(queue=waiting[3:])}))
    app = Starlette(routes=[Route("/gradio_api/queue/join", _joined, methods=["POST"])],
                    middleware=[Middleware(_HubSession), Middleware(QueueShare, per_reader=4)])
    app.get_blocks = lambda: blocks  # type: ignore[attr-defined] - as Gradio's App has it
    app.cookie_id, app.tokens = "c1", {"tok-bob": "bob02", "tok-alice": "alice01"}  # type: ignore[attr-defined]
    return TestClient(app)


def _join(client: TestClient, fn_index: int, who: str | None, page: str = "p1", hf: str | None = None):  # noqa: ANN202
    headers = {"cookie": f"access-token-c1=tok-{who}"} if who else {}
    if hf:
        headers["x-hf-account"] = hf
    return client.post("/gradio_api/queue/join", json={"fn_index": fn_index, "session_hash": page, "data": []},
                       headers=headers)


def test_a_login_with_its_share_waiting_is_refused_and_another_joins() -> None:
    waiting = [_event(lambda: None, "bob02", f"tab{i}") for i in range(4)] + [_event(lambda: None, "alice01", "a")]
    client = _client(waiting)
    refused = _join(client, PERFORMANCE, "bob")
    assert refused.status_code == 429 and "Too many of your requests are waiting (4)" in refused.json()["detail"]
    assert _join(client, PERFORMANCE, "alice").json() == {"event_id": "e1", "fn_index": PERFORMANCE}
    # without a login, each page is a reader: bob's events are not this page's
    assert _join(client, PERFORMANCE, None, page="tab9").status_code == 200


def test_a_second_analysis_is_refused_at_join_while_the_readers_first_runs_or_waits() -> None:
    client = _client([_event(handlers.predict, "bob02", "tab1")])  # bob's analysis waits in line
    assert "still being worked on" in _join(client, PREDICT, "bob", page="tab2").json()["detail"]
    assert _join(client, PERFORMANCE, "bob").status_code == 200  # what takes no job place joins
    assert _join(client, PREDICT, "alice").status_code == 200
    client = _client([])
    with fair_share.one_job(SimpleNamespace(username="alice01", session_hash="a")):  # alice's first one runs
        assert _join(client, PREDICT, "alice").status_code == 429
        assert _join(client, PREDICT, "bob").status_code == 200
    assert _join(client, PREDICT, "alice").status_code == 200


def test_a_hugging_face_account_is_one_reader_over_all_its_pages() -> None:
    """As fair_share names readers: a signed-in account's pages share its place and its share of the queue (keyed by
    page, each page it opened had been a reader of its own); another account, or a page signed out, is apart."""
    client = _client([_event(handlers.predict, None, "tab1", hf="carol")])  # carol's analysis waits in line
    assert "still being worked on" in _join(client, PREDICT, None, page="tab2", hf="carol").json()["detail"]
    assert _join(client, PREDICT, None, page="tab3", hf="dave").status_code == 200
    assert _join(client, PREDICT, None, page="tab4").status_code == 200
    client = _client([_event(lambda: None, None, f"tab{i}", hf="carol") for i in range(4)])
    refused = _join(client, PERFORMANCE, None, page="tab9", hf="carol")
    assert refused.status_code == 429 and "waiting (4)" in refused.json()["detail"]
    client = _client([])
    with fair_share.one_job(SimpleNamespace(username=None, session_hash="tab1"), {"preferred_username": "carol"}):
        assert _join(client, PREDICT, None, page="tab2", hf="carol").status_code == 429
        assert _join(client, PREDICT, None, page="tab2", hf="dave").status_code == 200


def test_joins_sent_all_at_once_are_counted_while_gradio_takes_them() -> None:
    """Ten joins at once (Gradio has queued none of them yet when the next is judged): four go through, and of three
    analyses at once, one."""
    import asyncio

    import httpx

    async def slow_join(request: Request) -> JSONResponse:
        await asyncio.sleep(0.2)  # Gradio reading the body and queueing the event
        return await _joined(request)

    client = _client([])
    client.app.router.routes[0] = Route("/gradio_api/queue/join", slow_join, methods=["POST"])

    async def burst(fn_index: int, n: int) -> list[int]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            asked = [c.post("/gradio_api/queue/join", json={"fn_index": fn_index, "session_hash": f"t{i}", "data": []},
                            headers={"cookie": "access-token-c1=tok-bob"}) for i in range(n)]
            return sorted(r.status_code for r in await asyncio.gather(*asked))

    assert asyncio.run(burst(PERFORMANCE, 10)) == [200] * 4 + [429] * 6
    assert asyncio.run(burst(PREDICT, 3)) == [200] + [429] * 2
