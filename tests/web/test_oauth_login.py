"""Issue 12, item 5: "Sign in with Hugging Face" end to end, offline, through Gradio's real (Space) OAuth routes.

A fake OpenID Connect provider (``FakeHub``: discovery, authorize, token, userinfo and JWKS routes in a thread on
loopback, id tokens signed RS256 with a key generated per run) stands in for huggingface.co. The app runs as a
subprocess with the variables a Space with ``hf_oauth: true`` gets (``SYSTEM=spaces``, ``SPACE_ID``,
``OAUTH_CLIENT_ID``, ``OAUTH_CLIENT_SECRET``, ``OAUTH_SCOPES``, ``OPENID_PROVIDER_URL``), so Gradio registers its
authlib routes (``/login/huggingface``, ``/login/callback``, ``/logout``), not the mocked local ones; the Hub is
unreachable (``HF_HUB_OFFLINE=1``, no token). An HTTP client follows the sign-in as a browser does, hop by hop, then
calls the documented endpoints through ``/gradio_api/call/<name>`` with the session cookie it got.

Departures from a real Space, all outside the app: the Space's public URL (``SPACE_HOST``, https) is not set, so
Gradio builds the callback URL from the request (``http://127.0.0.1:<port>/login/callback``); Gradio's session
cookie is ``Secure`` (a Space is served over https), so the test's cookie jar also sends secure cookies to loopback
http, as a browser sends them to the https Space; and the ``spaces`` package is not installed, so Gradio's Space
hot-reload watcher thread stops at start-up with a logged error (it plays no part in serving or signing in).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import http.cookiejar
import io
import json
import logging
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import LUNG, REPO, gradient
from test_security import _call  # the named-endpoint call over Gradio's HTTP API

httpx = pytest.importorskip("httpx")
pytest.importorskip("authlib")  # gradio[oauth]
jwk = pytest.importorskip("joserfc.jwk")  # authlib's JOSE back end
jwt = pytest.importorskip("joserfc.jwt")

pytestmark = pytest.mark.slow  # starts the app (about 10-20 s)

log = logging.getLogger(__name__)

CLIENT_ID = "medimg-test-client-" + secrets.token_hex(4)
CLIENT_SECRET = secrets.token_urlsafe(24)
SIGN_IN = "Sign in with Hugging Face first"  # auth.identity's message to a caller who is not signed in

USERS: dict[str, dict[str, str]] = {
    name: {"sub": secrets.token_hex(12), "name": full, "preferred_username": name,
           "profile": f"https://huggingface.co/{name}", "picture": f"https://huggingface.co/avatars/{name}.png",
           "website": ""}
    for name, full in (("alice", "Alice Owner"), ("bob", "Bob Reader"))
}


# ------------------------------------------------------------------------------------------------- fake provider

@dataclass
class FakeHub:
    """A minimal OpenID Connect provider on loopback with the routes Gradio's authlib client uses.

    ``/oauth/authorize`` plays the user's consent: the account is named by ``login_hint`` (the OIDC parameter a
    browser adds when choosing an account); it answers 302 to the client's ``redirect_uri`` with a one-time code
    and the client's ``state``. ``/oauth/token`` checks the client's id and secret (HTTP Basic or form), the code
    and the redirect URI, and returns an access token and an id token (RS256, ``kid`` in the served JWKS) with
    ``iss``, ``aud``, ``nonce``, ``at_hash`` and the profile claims (Gradio's ``gr.OAuthProfile`` is built from
    these claims, as authlib verified them). ``/oauth/userinfo`` returns the same claims for a bearer access token
    (served as the real provider does; Gradio does not call it). Every request is recorded in ``hits``.
    """

    url: str = ""
    key: Any = None
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> user
    hits: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status)
    lock: threading.Lock = field(default_factory=threading.Lock)
    rogue_key: Any = None  # when set, id tokens are signed with this key (not in the JWKS) instead

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": self.url + "/oauth/authorize",
            "token_endpoint": self.url + "/oauth/token",
            "userinfo_endpoint": self.url + "/oauth/userinfo",
            "jwks_uri": self.url + "/oauth/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": ["sub", "name", "preferred_username", "profile", "picture", "website"],
        }

    def authorize(self, q: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return 400, {}, {"error": "unauthorized_client"}
        if "openid" not in q.get("scope", "").split() or not q.get("state") or not q.get("redirect_uri"):
            return 400, {}, {"error": "invalid_request"}
        user = q.get("login_hint", "")
        if user not in USERS:
            return 200, {"content-type": "text/html"}, "<form>Sign in (the test names the account: login_hint)</form>"
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.codes[code] = {"user": user, "redirect_uri": q["redirect_uri"], "nonce": q.get("nonce", "")}
        sep = "&" if "?" in q["redirect_uri"] else "?"
        back = q["redirect_uri"] + sep + urllib.parse.urlencode({"code": code, "state": q["state"]})
        return 302, {"location": back}, ""

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, str], Any]:
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        if authorization.lower().startswith("basic "):
            pair = base64.b64decode(authorization[6:]).decode()
            client_id, _, client_secret = (urllib.parse.unquote(p) for p in pair.partition(":"))
        if client_id != CLIENT_ID or not secrets.compare_digest(client_secret, CLIENT_SECRET):
            return 401, {}, {"error": "invalid_client"}
        with self.lock:
            grant = self.codes.pop(form.get("code", ""), None)  # one use
        if form.get("grant_type") != "authorization_code" or grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {}, {"error": "invalid_grant"}
        access = "hf_oauth_" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[access] = grant["user"]
        digest = hashlib.sha256(access.encode()).digest()
        now = int(time.time())
        claims = {**USERS[grant["user"]], "iss": self.url, "aud": CLIENT_ID, "iat": now, "exp": now + 3600,
                  "auth_time": now, "nonce": grant["nonce"],
                  "at_hash": base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()}
        id_token = jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.rogue_key or self.key)
        return 200, {}, {"access_token": access, "token_type": "Bearer", "expires_in": 3600,
                         "scope": "openid profile", "id_token": id_token}

    def userinfo(self, authorization: str) -> tuple[int, dict[str, str], Any]:
        user = self.tokens.get(authorization.removeprefix("Bearer ").strip())
        return (200, {}, USERS[user]) if user else (401, {}, {"error": "invalid_token"})

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p, _ in self.hits if method in (None, m)]


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, headers: dict[str, str], body: Any) -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("content-type", headers.pop("content-type", "application/json"))
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            with hub.lock:
                hub.hits.append((self.command, self.path.split("?")[0], status))

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            parts = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(parts.query))
            if parts.path == "/.well-known/openid-configuration":
                self._answer(200, {}, hub.metadata())
            elif parts.path == "/oauth/jwks":
                self._answer(200, {}, {"keys": [hub.key.as_dict(private=False)]})
            elif parts.path == "/oauth/authorize":
                self._answer(*hub.authorize(q))
            elif parts.path == "/oauth/userinfo":
                self._answer(*hub.userinfo(self.headers.get("authorization", "")))
            else:
                self._answer(404, {}, {"error": "not_found"})

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
            form = dict(urllib.parse.parse_qsl(body))
            if self.path == "/oauth/token":
                self._answer(*hub.token(form, self.headers.get("authorization", "")))
            else:
                self._answer(404, {}, {"error": "not_found"})

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("fake hub: " + fmt, *args)

    return Handler


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    h = FakeHub(key=jwk.RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(4), "use": "sig", "alg": "RS256"}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(h))
    h.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-hub", daemon=True)
    thread.start()
    yield h
    server.shutdown()
    server.server_close()


# ------------------------------------------------------------------------------------------------- the app

@dataclass
class App:
    url: str
    state: Path
    proc: subprocess.Popen
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_registry: Path, hub: FakeHub) -> Iterator[App]:
    tmp = tmp_path_factory.mktemp("oauth")
    port = _free_port()
    drop = ("MEDIMG_AUTH", "MEDIMG_OWNERS", "MEDIMG_HF_", "MEDIMG_FEEDBACK_DB", "MEDIMG_RUNS_DIR", "HF_", "HUGGING",
            "OAUTH_", "OPENID_", "SPACE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and k != "SYSTEM"}
    env.update({
        "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_ANALYTICS_ENABLED": "False",
        "MEDIMG_STATE_DIR": str(tmp / "state"), "GRADIO_TEMP_DIR": str(tmp / "gradio-uploads"),
        "MEDIMG_MODELS_DIR": str(tiny_registry), "MEDIMG_HF_OAUTH": "1", "MEDIMG_OWNERS": "alice",
        # what a Space with `hf_oauth: true` gets (SPACE_HOST left out: see the module docstring)
        "SYSTEM": "spaces", "SPACE_ID": "medimg-test/oauth-e2e", "OAUTH_CLIENT_ID": CLIENT_ID,
        "OAUTH_CLIENT_SECRET": CLIENT_SECRET, "OAUTH_SCOPES": "openid profile", "OPENID_PROVIDER_URL": hub.url,
        # the Hub is unreachable and no token is stored: Gradio's mocked sign-in (a whoami call) cannot work
        "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp / "hf-home"), "NO_PROXY": "127.0.0.1,localhost",
    })
    log_file = tmp / "app.log"
    with open(log_file, "w") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if urllib.request.urlopen(url + "/", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            pytest.fail(f"app exited early with code {proc.returncode}: {log_file.read_text()[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("app did not start within 120 s")
    yield App(url, tmp / "state", proc, log_file)
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


# ------------------------------------------------------------------------------------------------- clients

def _browser(app: App) -> Any:
    """An HTTP client that keeps cookies as a browser does on the https Space: Gradio's session cookie is
    ``Secure``, which httpx's own jar never sends over http, so a jar whose policy treats loopback http as secure
    sets the Cookie header (httpx copies its jar per request, dropping a custom policy, hence the hooks)."""
    policy = http.cookiejar.DefaultCookiePolicy(secure_protocols=("https", "wss", "http"))
    jar = httpx.Cookies(http.cookiejar.CookieJar(policy))
    return httpx.Client(base_url=app.url, timeout=60, follow_redirects=False,
                        event_hooks={"request": [jar.set_cookie_header], "response": [jar.extract_cookies]})


@dataclass
class SignIn:
    client: Any  # httpx.Client holding the app's session cookie
    authorize_query: dict[str, str]
    callback: str


def _sign_in(app: App, hub: FakeHub, user: str) -> SignIn:
    """The browser's way through: app -> provider (the user picks ``user``) -> app's callback -> session cookie."""
    c = _browser(app)
    r = c.get("/login/huggingface")
    assert r.status_code in (302, 307), (r.status_code, r.text[:300])
    authorize = r.headers["location"]
    assert authorize.startswith(hub.url + "/oauth/authorize?"), authorize
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize).query))
    # the provider is another site: no app cookie goes there
    r = httpx.get(authorize + "&" + urllib.parse.urlencode({"login_hint": user}), follow_redirects=False)
    assert r.status_code == 302, (r.status_code, r.text[:300])
    callback = r.headers["location"]
    assert callback.startswith(app.url + "/login/callback?"), callback
    r = c.get(callback)
    assert r.status_code in (302, 307), (r.status_code, r.text[:500])
    assert urllib.parse.urlsplit(r.headers["location"]).path == "/"
    assert c.cookies.get("session"), "no session cookie after the callback"
    return SignIn(c, query, callback)


def _anonymous(app: App) -> Any:
    return _browser(app)


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((gradient(96, 96) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _predict(client: Any) -> dict[str, Any]:
    r = client.post("/gradio_api/upload", files={"files": ("scan.png", _png(), "application/octet-stream")})
    r.raise_for_status()
    ok, out = _call(client, "predict", [{"path": r.json()[0], "orig_name": "scan.png", "meta": {"_type": "gradio.FileData"}},
                                        None, 0.45, None, "File default", None, None])
    assert ok, out
    assert out[7]["prediction_id"], out[10]
    return out[7]


def _feedback(client: Any, prediction: Any, typed_reader: str, session_id: str) -> tuple[bool, Any]:
    return _call(client, "feedback", [prediction, typed_reader, session_id, "Agree", None, None, "", "", 4, 3, "",
                                      secrets.token_hex(8)])


def _rows(app: App, session_id: str) -> list[tuple[str, str]]:
    """(reader, phase) of the stored feedback rows of one session."""
    db = app.state / "feedback.sqlite"
    if not db.is_file():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT reader, phase FROM feedback WHERE session_id = ? ORDER BY id", (session_id,)).fetchall()
    finally:
        con.close()


def _summary_sessions(client: Any) -> set[str]:
    ok, out = _call(client, "feedback_summary", [])
    assert ok, out
    table = out[0]
    col = table["headers"].index("session_id")
    return {row[col] for row in table["data"]} - {"ALL"}


def _export_readers(client: Any) -> set[str]:
    ok, out = _call(client, "feedback_export", [])
    assert ok, out
    r = client.get(out[0]["url"])
    assert r.status_code == 200
    return {row["reader"] for row in csv.DictReader(io.StringIO(r.text))}


@pytest.fixture(scope="module")
def alice(app: App, hub: FakeHub) -> Iterator[SignIn]:
    s = _sign_in(app, hub, "alice")
    yield s
    s.client.close()


@pytest.fixture(scope="module")
def bob(app: App, hub: FakeHub) -> Iterator[SignIn]:
    s = _sign_in(app, hub, "bob")
    yield s
    s.client.close()


# ------------------------------------------------------------------------------------------------- tests

def test_sign_in_uses_the_provider_not_the_mock(app: App, hub: FakeHub, alice: SignIn) -> None:
    """Gradio's Space routes ran: discovery, an authorize redirect with state and nonce, the code exchanged with
    the client secret, the id token checked against the served JWKS; and the mocked local sign-in was not used."""
    q = alice.authorize_query
    assert q["client_id"] == CLIENT_ID and q["response_type"] == "code" and set(q["scope"].split()) == {"openid", "profile"}
    assert q["state"] and q["nonce"] and q["redirect_uri"].startswith(app.url + "/login/callback")
    token_calls = [h for h in hub.hits if h[:2] == ("POST", "/oauth/token")]
    assert token_calls and all(status == 200 for *_, status in token_calls), hub.hits
    assert {"/.well-known/openid-configuration", "/oauth/jwks"} <= set(hub.paths("GET"))
    # the callback's code is single-use: replaying it (e.g. from browser history) does not sign anyone in
    replay = _anonymous(app)
    r = replay.get(alice.callback)
    replay_signed_in = _call(replay, "feedback_summary", [])[0]
    replay.close()
    assert not replay_signed_in, r.status_code
    print(f"\nprovider requests: {len(hub.hits)} ({sorted(set(hub.paths()))}); replayed callback signed in: "
          f"{replay_signed_in}")
    assert "does not support OAuth features outside of a Space" not in app.log.read_text()  # the mock's warning


def test_anonymous_callers_are_refused(app: App) -> None:
    """Without a sign-in, storing or reading feedback is refused with the sign-in message; analysing stays open
    (README: "storing or reading feedback needs a Hugging Face sign-in"). A session cookie signed with another key
    counts as no sign-in."""
    anon = _anonymous(app)
    forged = httpx.Client(base_url=app.url, timeout=60, headers={"cookie": "session=" + _forged_session_cookie()})
    try:
        prediction = _predict(anon)  # open to anyone
        results: dict[str, tuple[bool, Any]] = {}
        for name, client in (("anonymous", anon), ("forged cookie", forged)):
            results[f"{name} /feedback"] = _feedback(client, prediction, "mallory", "anon-session")
            results[f"{name} /feedback_summary"] = _call(client, "feedback_summary", [])
            results[f"{name} /feedback_export"] = _call(client, "feedback_export", [])
            results[f"{name} /session_start"] = _call(client, "session_start", ["mallory", "anon-session", None, 2, 0])
    finally:
        anon.close()
        forged.close()
    refused = {k: (not ok and SIGN_IN in str(msg)) for k, (ok, msg) in results.items()}
    print(f"\nanonymous or forged-cookie calls refused with the sign-in message: {sum(refused.values())} of {len(refused)}")
    assert all(refused.values()), results
    assert _rows(app, "anon-session") == []


def _forged_session_cookie() -> str:
    """A Starlette session cookie claiming alice, signed with a key that is not the app's."""
    from itsdangerous import TimestampSigner

    payload = {"oauth_info": {"access_token": "x", "expires_at": int(time.time()) + 3600, "scope": "openid profile",
                              "userinfo": USERS["alice"]}}
    data = base64.b64encode(json.dumps(payload).encode())
    return TimestampSigner(hashlib.sha256(b"not-the-secret-v4").hexdigest()).sign(data).decode()


def test_the_reader_is_the_signed_in_account(app: App, alice: SignIn) -> None:
    """Alice types "mallory" as the reader of a feedback submission: the row is alice's."""
    sid = "alice-typed-mallory-" + secrets.token_hex(3)
    ok, msg = _feedback(alice.client, _predict(alice.client), "mallory", sid)
    assert ok, msg
    stored = _rows(app, sid)
    print(f"\nfeedback typed as 'mallory' by alice stored as: {stored}")
    assert stored == [("alice", "free")]


@pytest.mark.skipif(not (LUNG / "manifest.csv").is_file(), reason="shared lung data not found")
def test_a_reading_session_runs_as_the_signed_in_account(app: App, alice: SignIn) -> None:
    """Alice starts a reading session typing "mallory": the session, her own read and her feedback are alice's."""
    sid = "alice-session-" + secrets.token_hex(3)
    page = secrets.token_hex(6)  # one browser page: its gr.State holds the session
    ok, out = _call(alice.client, "session_start", ["mallory", sid, None, 2, 0], page)
    assert ok, out
    progress = next(o for o in out if isinstance(o, str) and "Case 1 of 2" in o)  # gr.State comes back as None
    assert "reader `alice`" in progress, progress
    ok, out = _call(alice.client, "session_read", ["adenocarcinoma", "IIIa", 4], page)
    assert ok, out
    ok, out = _call(alice.client, "session_feedback", ["Agree", "Agree", "Agree", "", "", 4, 3, ""], page)
    assert ok, out
    stored = _rows(app, sid)
    print(f"\nreading session started as 'mallory' by alice stored as: {stored}")
    assert stored == [("alice", "unaided"), ("alice", "aided")]


def test_owner_sees_everyone_and_a_reader_only_himself(app: App, alice: SignIn, bob: SignIn) -> None:
    """MEDIMG_OWNERS=alice: her summary and export hold every reader's rows; bob's hold only his (typing alice's
    name does not make him alice), and his feedback on the prediction shown to alice is refused."""
    a_sid, b_sid = "owner-alice-" + secrets.token_hex(3), "reader-bob-" + secrets.token_hex(3)
    a_pred = _predict(alice.client)
    assert _feedback(alice.client, a_pred, "", a_sid)[0]
    ok, msg = _feedback(bob.client, _predict(bob.client), "alice", b_sid)  # bob types the owner's name
    assert ok, msg
    ok_other, msg_other = _feedback(bob.client, a_pred, "", b_sid)  # bob on the prediction shown to alice
    assert (_rows(app, a_sid), _rows(app, b_sid)) == ([("alice", "free")], [("bob", "free")])
    assert not ok_other and "another reader" in str(msg_other), msg_other
    seen_by_bob, seen_by_alice = _summary_sessions(bob.client), _summary_sessions(alice.client)
    export_bob, export_alice = _export_readers(bob.client), _export_readers(alice.client)
    print(f"\nbob (reader) sees sessions {sorted(seen_by_bob)}, exports readers {sorted(export_bob)}; alice (owner) "
          f"sees {len(seen_by_alice)} sessions incl. bob's: {b_sid in seen_by_alice}, exports readers {sorted(export_alice)}")
    assert b_sid in seen_by_bob and a_sid not in seen_by_bob and export_bob == {"bob"}
    assert {a_sid, b_sid} <= seen_by_alice and {"alice", "bob"} <= export_alice


def test_logout_ends_the_sign_in(app: App, hub: FakeHub) -> None:
    """After /logout the browser's cookie no longer signs anyone in, and the reading session the page held can no
    longer store rows as the reader who left (signed out, or another account using the page's session hash)."""
    s = _sign_in(app, hub, "alice")
    c = s.client
    before_cookie = c.cookies.get("session")
    assert _call(c, "feedback_summary", [])[0]
    page = secrets.token_hex(6)
    sid = "logout-" + secrets.token_hex(3)
    has_data = (LUNG / "manifest.csv").is_file()
    if has_data:
        assert _call(c, "session_start", ["", sid, None, 2, 0], page)[0]
    r = c.get("/logout")
    assert r.status_code in (302, 307) and urllib.parse.urlsplit(r.headers["location"]).path == "/"
    after = {"/feedback_summary": _call(c, "feedback_summary", []),
             "/feedback": _feedback(c, _predict(c), "alice", sid)}
    if has_data:  # the page's gr.State still holds alice's session: reading on must not store rows as alice,
        # neither signed out nor signed in as someone else (bob holding the page's session hash)
        after["/session_read"] = _call(c, "session_read", ["adenocarcinoma", "IIIa", 4], page)
        after["/session_feedback"] = _call(c, "session_feedback", ["Agree", "Agree", "Agree", "", "", 4, 3, ""], page)
        other = _sign_in(app, hub, "bob").client
        after["/session_read as bob"] = _call(other, "session_read", ["adenocarcinoma", "IIIa", 4], page)
        other.close()
    c.close()
    refused = {k: not ok for k, (ok, _) in after.items()}
    # Starlette sessions live in the cookie: a copy of the pre-logout cookie is not revoked by /logout (Gradio's
    # design); reported, not asserted
    with httpx.Client(base_url=app.url, timeout=60, headers={"cookie": f"session={before_cookie}"}) as old:
        old_cookie_works = _call(old, "feedback_summary", [])[0]
    print(f"\ncalls refused after logout: {sum(refused.values())} of {len(refused)}; rows stored in the session after "
          f"logout: {len(_rows(app, sid))}; a saved copy of the pre-logout cookie still signs in: {old_cookie_works}")
    assert all(refused.values()), after
    # the page's session hash is bound to alice's sign-in (session_binding): signed out, or as bob, it is refused at
    # the door; calls that name no page are told to sign in
    page_bound = ("/session_read", "/session_feedback", "/session_read as bob")
    assert all(SIGN_IN in str(msg) for k, (_, msg) in after.items() if k not in page_bound), after
    assert all("belongs to another login" in str(msg) for k, (_, msg) in after.items() if k in page_bound), after
    assert _rows(app, sid) == []


def test_an_id_token_signed_by_another_key_signs_no_one_in(app: App, hub: FakeHub) -> None:
    """The app trusts only an id token that verifies against the provider's JWKS: the provider (or someone in the
    middle) signing with a key it does not publish yields no session."""
    hub.rogue_key = jwk.RSAKey.generate_key(2048, parameters={"kid": hub.key.kid, "use": "sig", "alg": "RS256"})
    try:
        c = _browser(app)
        authorize = c.get("/login/huggingface").headers["location"]
        back = httpx.get(authorize + "&login_hint=alice", follow_redirects=False).headers["location"]
        r = c.get(back)
        cookie = c.cookies.get("session")
        c.close()  # the server drops the connection after its 500: ask again on a new one, with the same cookie
        with httpx.Client(base_url=app.url, timeout=60, headers={"cookie": f"session={cookie}"} if cookie else {}) as again:
            signed_in = _call(again, "feedback_summary", [])[0]
    finally:
        hub.rogue_key = None
    print(f"\ncallback with a forged id token: HTTP {r.status_code}; signed in: {signed_in}")
    assert not signed_in and r.status_code >= 400
