"""A reader's share of the raw-upload disk: so many megabytes within a raw upload's life, refused past it before a
byte is stored; other readers upload as before, and the share comes back as old uploads leave the window."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from medimg_demo.web import upload_share
from medimg_demo.web.request_limits import MAX_UPLOAD_BODY_BYTES
from medimg_demo.web.upload_share import UploadShare

MB = 1_000_000


def _client(stored: list[int]) -> TestClient:
    async def upload(request: Request) -> JSONResponse:  # stands for Gradio's upload route: what reached it
        stored.append(len(await request.body()))
        return JSONResponse(["/tmp/gradio/x/scan.dcm"])

    async def other(request: Request) -> JSONResponse:
        return JSONResponse({"ok": len(await request.body())})

    app = Starlette(routes=[Route("/gradio_api/upload", upload, methods=["POST"]),
                            Route("/gradio_api/queue/join", other, methods=["POST"])],
                    middleware=[Middleware(UploadShare, mb_per_reader=3, window_s=120)])
    app.cookie_id, app.tokens = "c1", {"tok-bob": "bob02", "tok-alice": "alice01"}  # type: ignore[attr-defined]
    return TestClient(app)


def _send(client: TestClient, who: str, nbytes: int, path: str = "/gradio_api/upload"):  # noqa: ANN202
    return client.post(path, content=b"x" * nbytes, headers={"cookie": f"access-token-c1=tok-{who}"})


def test_a_login_past_its_share_is_refused_before_anything_is_stored_and_another_uploads(monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(upload_share, "_now", lambda: clock[0])
    stored: list[int] = []
    client = _client(stored)
    assert [_send(client, "bob", MB).status_code for _ in range(3)] == [200, 200, 200]
    refused = _send(client, "bob", MB)
    assert refused.status_code == 429 and "uploaded 3 MB in the last 120 s" in refused.text
    assert stored == [MB] * 3  # the refused body never reached the route
    assert _send(client, "alice", 2 * MB).status_code == 200  # another login's share is its own
    assert _send(client, "bob", 10 * MB, "/gradio_api/queue/join").status_code == 200  # only uploads count
    clock[0] += 121  # bob's uploads have left the window (their raw files are gone by now)
    assert _send(client, "bob", 3 * MB).status_code == 200
    assert _send(client, "bob", 1).status_code == 429


def test_an_upload_that_declares_no_length_counts_as_the_largest_allowed() -> None:
    stored: list[int] = []
    client = _client(stored)
    client.app.user_middleware[0].kwargs["mb_per_reader"] = MAX_UPLOAD_BODY_BYTES * 1.5 / MB
    client.app.middleware_stack = client.app.build_middleware_stack()

    def chunked(who: str):  # noqa: ANN202 - a body sent in chunks, its length declared nowhere
        return client.post("/gradio_api/upload", content=iter([b"x" * 1000, b"y" * 1000]),
                           headers={"cookie": f"access-token-c1=tok-{who}"})

    assert chunked("bob").status_code == 200 and stored == [2000]
    assert chunked("bob").status_code == 429  # charged as the largest upload allowed: half of one is left
    assert _send(client, "bob", MB).status_code == 200  # a declared megabyte still fits
    assert chunked("alice").status_code == 200
    assert UploadShare(None, mb_per_reader=0).budget == 0  # 0: no limit (the middleware passes every upload on)


def test_a_chunked_body_beside_a_small_declared_length_counts_as_the_largest_allowed() -> None:
    """The server follows Transfer-Encoding over Content-Length (h11 takes both): a body sent in chunks beside
    "Content-Length: 1" was charged one byte, and one login stored 590 MB past a 300 MB share in a live run."""
    import asyncio

    reached: list[str] = []

    async def route(scope: dict, receive: object, send: object) -> None:
        reached.append(scope["path"])

    share = UploadShare(route, mb_per_reader=MAX_UPLOAD_BODY_BYTES * 1.5 / MB)
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    def upload(headers: list[tuple[bytes, bytes]]) -> None:
        scope = {"type": "http", "method": "POST", "path": "/gradio_api/upload", "app": None,
                 "headers": [(b"cookie", b"none"), *headers]}
        asyncio.run(share(scope, None, send))

    upload([(b"content-length", b"1"), (b"transfer-encoding", b"chunked")])
    upload([(b"Transfer-Encoding", b"chunked"), (b"content-length", b"0")])
    assert reached == ["/gradio_api/upload"] and sent[0]["status"] == 429  # the first one took the whole share
