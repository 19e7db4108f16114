"""Issue 12's findings, re-run as a hostile user would, against the running app over HTTP on loopback.

The app is started as a subprocess (like tests/web/test_browser.py) with MEDIMG_STATE_DIR and GRADIO_TEMP_DIR in a
temporary folder - here the *same* folder, the worst case: the feedback database sits inside Gradio's upload
cache - and the tiny test model. Uploads go through ``/gradio_api/upload``, files through ``/gradio_api/file=``,
events through the HTTP API (named endpoints, and helper events by ``fn_index`` as the browser calls them).
A second instance with ``MEDIMG_AUTH`` checks logins. Each test prints its measured figure.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import LUNG, REPO, dicom_bytes, gradient

httpx = pytest.importorskip("httpx")

DOCUMENTED = {"/predict", "/feedback", "/session_start", "/session_read", "/session_feedback", "/performance",
              "/feedback_summary", "/feedback_export", "/reader_study_export"}
PHI_STRINGS = [b"Doe^Jane", b"PID-998877", b"Hidden Road", b"Secretia", b"19600101"]
ACTIVE_TYPES = ("text/html", "image/svg+xml", "javascript", "xml", "text/plain")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class App:
    """A running app: its URL, state folder and Gradio upload folder."""

    def __init__(self, url: str, state: Path, uploads: Path, proc: subprocess.Popen, log: Path) -> None:
        self.url, self.state, self.uploads, self.proc, self.log = url, state, uploads, proc, log


def _start(tmp: Path, models: Path, extra: dict[str, str], uploads_in_state: bool) -> App:
    state = tmp / "state"
    uploads = state if uploads_in_state else tmp / "gradio-uploads"
    # leftovers of an "earlier run": an old raw upload (named after the patient) and a scratch file
    old = uploads / ("c" * 64) / "DOE_OLD_PID998877.dcm"
    scratch = state / "work" / "scan-leftover.dcm"
    for f in (old, scratch):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"old raw upload PID-998877")
    past = time.time() - 7200
    for f in (old, old.parent):
        os.utime(f, (past, past))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIMG_AUTH", "MEDIMG_OWNERS", "MEDIMG_HF_"))}
    env.update({"GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", "MEDIMG_STATE_DIR": str(state),
                "GRADIO_TEMP_DIR": str(uploads), "MEDIMG_MODELS_DIR": str(models), "MEDIMG_RAW_UPLOAD_TTL_S": "8",
                **extra})
    env.pop("MEDIMG_FEEDBACK_DB", None)
    env.pop("MEDIMG_RUNS_DIR", None)
    log = tmp / "app.log"
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/", timeout=2).status == 200:
                return App(url, state, uploads, proc, log)
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            pytest.fail(f"app exited early with code {proc.returncode}: {log.read_text()[-2000:]}")
    proc.kill()
    pytest.fail("app did not start within 120 s")


def _stop(app: App) -> None:
    app.proc.terminate()
    try:
        app.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        app.proc.kill()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_registry: Path) -> Iterator[App]:
    a = _start(tmp_path_factory.mktemp("security"), tiny_registry, {}, uploads_in_state=True)
    yield a
    _stop(a)


@pytest.fixture()
def client(app: App) -> Iterator[Any]:
    with httpx.Client(base_url=app.url, timeout=60) as c:
        yield c


# ------------------------------------------------------------------------------------------------- helpers

def _upload(client: Any, name: str, data: bytes) -> str:
    r = client.post("/gradio_api/upload", files={"files": (name, data, "application/octet-stream")})
    r.raise_for_status()
    return r.json()[0]


def _file(path: str, name: str = "scan") -> dict[str, Any]:
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def _call(client: Any, api_name: str, data: list[Any], session_hash: str | None = None) -> tuple[bool, Any]:
    """A named endpoint through Gradio's HTTP API: (True, outputs) or (False, error message). A body over the
    server's request limit (HTTP 413), and a page session of another login (HTTP 403), are refused at the door, with
    their message. ``session_hash``: the browser
    session whose gr.State the event reads."""
    body: dict[str, Any] = {"data": data}
    if session_hash:
        body["session_hash"] = session_hash
    r = client.post(f"/gradio_api/call/{api_name}", json=body)
    if r.status_code in (403, 413):  # refused at the door: a page session of another login, a body over the limit
        return False, r.text
    r.raise_for_status()
    event = None
    with client.stream("GET", f"/gradio_api/call/{api_name}/{r.json()['event_id']}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                payload = json.loads(line[5:]) if line[5:].strip() else None
                if event == "error" and isinstance(payload, dict):
                    payload = payload.get("error")
                return event == "complete", payload
    raise AssertionError(f"/{api_name}: the event stream ended without a result")


def _fn_index(client: Any, event: str, label: str) -> int:
    """The fn_index of the server handler the browser runs when ``event`` fires on a component (as the frontend finds
    it), taking inputs: the upload's own handler, not the browser-only step that holds the buttons meanwhile, and
    followed through such steps (a click that first holds the page, then builds the copy)."""
    cfg = client.get("/config").json()
    comp = next(c["id"] for c in cfg["components"] if label in (c.get("props", {}).get("label"), c.get("props", {}).get("value")))
    deps = [(dep.get("id", i), dep) for i, dep in enumerate(cfg["dependencies"])]
    todo = [i for i, dep in deps if [comp, event] in [list(t) for t in dep["targets"]]]
    while todo:
        for i in todo:
            dep = dict(deps)[i]
            if dep.get("backend_fn", True) and dep.get("inputs"):
                return i
        todo = [i for i, dep in deps if dep.get("trigger_after") in todo]
    raise AssertionError(f"no {event} event on {label}")


def _queue_fn(client: Any, fn_index: int, data: list[Any], session_hash: str | None = None,
              event_data: Any = None) -> tuple[bool, Any]:
    """An event called by fn_index through Gradio's queue, as the browser calls a queued event (POST
    /gradio_api/queue/join, then the session's event stream): (True, outputs) or (False, error message or the
    HTTP answer of a refused join)."""
    session_hash = session_hash or secrets.token_hex(6)
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": event_data,
                       "trigger_id": None})  # NaN and infinities as a client may send them (httpx refuses them)
    r = client.post("/gradio_api/queue/join", content=body, headers={"content-type": "application/json"})
    if r.status_code != 200:
        return False, f"HTTP {r.status_code}: {r.text[:500]}"
    event_id = r.json()["event_id"]
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
        for line in stream.iter_lines():
            msg = json.loads(line[5:]) if line.startswith("data:") else {}
            if msg.get("event_id") == event_id and msg.get("msg") == "process_completed":
                out = msg.get("output") or {}
                return (True, out.get("data")) if msg.get("success") else (False, out.get("error"))
            if msg.get("msg") == "unexpected_error":
                return False, msg.get("message")
    raise AssertionError(f"fn_index {fn_index}: the event stream ended without a result")


def _run_fn(client: Any, fn_index: int, data: list[Any]) -> tuple[int, Any]:
    """A helper event called as the browser calls it: an unqueued one by POST /gradio_api/run/predict, a queued one
    through the queue (the REST route refuses queued events: they cannot skip the concurrency limit).
    Returns (HTTP status, answer); a queued event's answer as the REST route gives it: 200 {"data": ...} or
    500 {"error": message}."""
    deps = client.get("/config").json()["dependencies"]
    if next((d.get("queue") is not False for i, d in enumerate(deps) if d.get("id", i) == fn_index), False):
        ok, out = _queue_fn(client, fn_index, data)
        return (200, {"data": out}) if ok else (500, {"error": out})
    r = client.post("/gradio_api/run/predict", json={"fn_index": fn_index, "data": data,
                                                      "session_hash": secrets.token_hex(6)})
    return r.status_code, r.json()


def _all_files(*roots: Path) -> list[Path]:
    """Every file under ``roots``. os.walk, not Path.rglob: on Python 3.11 rglob raises FileNotFoundError when a folder
    vanishes mid-walk (the shared temp folder churns, the upload reaper deletes), while os.walk skips it."""
    found = [Path(d) / n for root in roots for d, _, names in os.walk(root) for n in names]
    return [p for p in found if p.is_file()]


def _read(p: Path) -> bytes:
    """A file's bytes; empty if it is huge or was deleted since it was listed (then it is not on disk)."""
    try:
        return p.read_bytes() if p.stat().st_size < 50_000_000 else b""
    except FileNotFoundError:
        return b""


def _dicom_with_phi() -> bytes:
    return dicom_bytes((gradient(96, 96) * 3000).astype(np.uint16), slope=1, intercept=-1024, window=(40, 400))


def _multiframe_dicom(n: int = 16) -> bytes:
    frames = np.stack([(gradient(64, 64) * 1000 + 100 * k).astype(np.uint16) for k in range(n)])
    return dicom_bytes(frames, slope=1, intercept=-1024, phi=False, spacing=None)


def _predict(client: Any, path: str, frame: int | None = None) -> tuple[bool, Any]:
    return _call(client, "predict", [_file(path), None, 0.45, frame, "File default", None, None])


# ------------------------------------------------------------------------------------------------- findings

def test_startup_sweep_removed_leftovers_of_an_earlier_run(app: App) -> None:
    left = [p for p in _all_files(app.uploads, app.state) if b"old raw upload" in _read(p)]
    print(f"\nleftovers after start-up: {len(left)} (2 planted)")
    assert left == []


def test_no_private_file_is_served(app: App, client: Any) -> None:
    """The feedback DB (inside Gradio's cache here), runs, scratch folder, logs and raw uploads: all refused."""
    ok, out = _predict(client, _upload(client, "scan.png", _png()))  # creates the store and its predictions table
    assert ok, out
    runs = app.state / "runs" / "metrics.csv"
    logs = app.state / "logs" / "app.log"
    work = app.state / "work" / "scratch.txt"
    for f in (runs, logs, work):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("private")
    db = app.state / "feedback.sqlite"
    assert db.is_file()
    raw = _upload(client, "DOE_JANE_PID998877.dcm", _dicom_with_phi())  # uploaded, not yet used by any event
    assert Path(raw).is_file()  # the check below could fail: the raw upload is on disk, in Gradio's cache
    private = [db, *db.parent.glob("feedback.sqlite-*"), runs, logs, work, Path(raw)]
    served = []
    for f in private:
        r = client.get(f"/gradio_api/file={f}")
        if r.status_code == 200:
            served.append(f.name)
    public = out[4]["url"]  # a rendered PNG: served (a positive control of the check)
    assert client.get(public).status_code == 200
    print(f"\nprivate files served: {len(served)} of {len(private)}")
    assert served == []


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((gradient(96, 96) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_no_active_content_is_served_inline(app: App, client: Any) -> None:
    """Uploaded HTML/SVG/JS/XML, through the API and through the upload event; a stray HTML file in the public
    folder (served from allowed_paths, Gradio's inline case): never inline, never an active type."""
    payloads = {"evil.html": b"<html><script>fetch('/gradio_api/file=feedback.sqlite')</script></html>",
                "evil.svg": b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
                "evil.js": b"alert(document.cookie)", "evil.xml": b"<?xml version='1.0'?><x/>"}
    rename = _fn_index(client, "upload", "Scan")
    answers, refused = [], 0
    for name, data in payloads.items():
        answers.append(client.get(f"/gradio_api/file={_upload(client, name, data)}"))
        path = _upload(client, name, data)
        status, body = _run_fn(client, rename, [_file(path, name)])
        refused += status != 200 and "not a recognised image" in json.dumps(body)
        assert not Path(path).exists()  # refused and not kept
        answers.append(client.get(f"/gradio_api/file={path}"))
    stray = app.state / "public" / "images" / "stray.html"
    stray.parent.mkdir(parents=True, exist_ok=True)  # made by the first picture published, if this test runs first
    stray.write_bytes(payloads["evil.html"])
    answers.append(client.get(f"/gradio_api/file={stray}"))
    inline_active = [r for r in answers if r.status_code == 200 and "attachment" not in r.headers.get("content-disposition", "")
                     and any(t in r.headers.get("content-type", "") for t in ACTIVE_TYPES)]
    served = [r for r in answers if r.status_code == 200]
    assert served and all(r.headers["x-content-type-options"] == "nosniff" for r in served)
    assert all("sandbox" in r.headers["content-security-policy"] for r in served)
    print(f"\nactive content served inline: {len(inline_active)} of {len(answers)} answers; "
          f"uploads refused by the upload handler: {refused} of {len(payloads)}")
    assert inline_active == [] and refused == len(payloads)


def test_no_raw_upload_on_disk_after_a_request(app: App, client: Any) -> None:
    """A DICOM named after its patient, through the API (/predict), through the browser's events (upload
    handler, then predict and the de-identified copy), and uploaded but never used: neither its name nor its bytes
    nor its PHI stay on disk."""
    name = f"DOE_JANE_PID998877_{secrets.token_hex(4)}.dcm"
    data = _dicom_with_phi()
    # 1. straight to the API
    raw = _upload(client, name, data)
    assert Path(raw).read_bytes() == data
    ok, out = _predict(client, raw)
    assert ok, out
    # 2. as the browser does it: the upload event's handler, then /predict and the copy on the working file
    raw2 = _upload(client, name, data)
    status, body = _run_fn(client, _fn_index(client, "upload", "Scan"), [_file(raw2, name)])
    assert status == 200, body
    working = body["data"][0]["path"]
    assert _predict(client, working)[0]
    status, body = _run_fn(client, _fn_index(client, "click", "De-identified DICOM copy"), [_file(working)])
    assert status == 200, body
    # 3. uploaded and never used by any request (a client that goes away): deleted after the TTL (8 s here)
    unused = Path(_upload(client, name, data))
    assert unused.is_file()
    deadline = time.time() + 30
    while unused.exists() and time.time() < deadline:
        time.sleep(0.5)
    everything = sorted(set(_all_files(app.uploads, app.state)))
    by_name = [p for p in _all_files(app.uploads, app.state, Path(tempfile.gettempdir())) if "PID998877_" in p.name]
    by_bytes = [p for p in everything if _read(p) == data]
    by_phi = [p for p in everything if any(s in _read(p) for s in PHI_STRINGS)]
    print(f"\nraw uploads on disk after the requests: {len(by_bytes)}; files named after the upload: {len(by_name)}; "
          f"files holding PHI: {len(by_phi)} (of {len(everything)} files)")
    assert (by_name, by_bytes, by_phi) == ([], [], [])


@pytest.mark.slow
def test_a_stopped_server_leaves_no_working_copy(tmp_path: Path, tiny_registry: Path) -> None:
    """SIGTERM (how Spaces, Docker and systemd stop a server) ends the app as Ctrl-C does: it exits cleanly and
    its cleaned working copies, the public files (here a de-identified copy) and Gradio's cached files go with it, not at the next
    start, even while a page is still connected; a stranger's file and another instance's working copy in a shared
    upload folder stay."""
    stopped = _start(tmp_path, tiny_registry, {}, uploads_in_state=False)
    page = httpx.Client(base_url=stopped.url, timeout=None)
    try:
        with httpx.Client(base_url=stopped.url, timeout=60) as c:
            raw = _upload(c, "scan.dcm", _dicom_with_phi())
            status, body = _run_fn(c, _fn_index(c, "upload", "Scan"), [_file(raw, "scan.dcm")])
            assert status == 200, body
            working = Path(body["data"][0]["path"])
            assert working.is_file() and _predict(c, str(working))[0]
            status, body = _run_fn(c, _fn_index(c, "click", "De-identified DICOM copy"), [_file(str(working))])
            assert status == 200, body
            copy = Path(body["data"][0]["value"]["path"] if "value" in body["data"][0] else body["data"][0]["path"])
            assert copy.is_file() and copy.is_relative_to(stopped.state / "public")  # served where it lies
        cached = stopped.uploads / ("f" * 64) / "image.png"  # a file Gradio cached while the server ran
        cached.parent.mkdir()
        cached.write_bytes(b"x")
        # a browser tab still open: its heartbeat stream holds a connection while the server stops (the server
        # thread then outlives Gradio's 5 s wait, and Gradio's own clean-up of its cache never runs)
        beat = page.send(page.build_request("GET", f"/gradio_api/heartbeat/{secrets.token_hex(6)}"), stream=True)
        assert beat.status_code == 200
        stranger = stopped.uploads / "someone-elses-file.txt"
        stranger.write_bytes(b"x")
        other = stopped.uploads / f"medimg-{secrets.token_hex(16)}" / "scan.png"  # another instance's working copy
        other.parent.mkdir()
        other.write_bytes(b"x")
    finally:
        stopped.proc.terminate()
        code = stopped.proc.wait(timeout=30)
        page.close()
    left = [p for p in _all_files(stopped.uploads, stopped.state / "work") if p not in (stranger, other)]
    print(f"\nexit code after SIGTERM with a page open: {code}; files left in the upload and scratch folders: "
          f"{len(left)}")
    assert code == 0, stopped.log.read_text()[-2000:]
    assert not working.exists() and not copy.exists() and not cached.exists() and left == []
    assert stranger.exists() and other.exists()


@pytest.mark.slow
def test_handed_out_files_expire_while_the_server_runs(tmp_path: Path, tiny_registry: Path) -> None:
    """A de-identified copy (served from the public folder where it lies, not copied into Gradio's cache) and the
    working copy go after MEDIMG_FILE_MAX_AGE_S, while the server runs (the app's reaper; Gradio's ``delete_cache``
    never visits components shown with new properties), and keeps what Gradio cached when the app was built. The
    sample cases, which Gradio's own clean-up used to delete after that age, still open and analyse."""
    started_at = time.time()
    app = _start(tmp_path, tiny_registry, {"MEDIMG_FILE_MAX_AGE_S": "10"}, uploads_in_state=False)
    try:
        built = {d for d in app.uploads.iterdir() if d.is_dir() and len(d.name) == 64}
        with httpx.Client(base_url=app.url, timeout=60) as c:
            raw = _upload(c, "scan.dcm", _dicom_with_phi())
            status, body = _run_fn(c, _fn_index(c, "upload", "Scan"), [_file(raw, "scan.dcm")])
            assert status == 200, body
            working = Path(body["data"][0]["path"])
            status, body = _run_fn(c, _fn_index(c, "click", "De-identified DICOM copy"), [_file(str(working))])
            assert status == 200, body
            out = body["data"][0]
            copy = Path(out["value"]["path"] if "value" in out else out["path"])
        public = list((app.state / "public" / "deidentified").glob("*.dcm"))
        # served where it lies (a static path): no second copy in Gradio's cache, which only its age bounded
        assert copy.is_file() and copy == public[0] and not copy.is_relative_to(app.uploads) and working.is_file()
        started, deadline = time.time(), time.time() + 60
        while (copy.exists() or working.exists() or public[0].exists()) and time.time() < deadline:
            time.sleep(0.5)
        waited = time.time() - started
        print(f"\ncached copy, working copy and public copy gone after {waited:.0f} s (max age 10 s): "
              f"{not copy.exists()}, {not working.exists()}, {not public[0].exists()}")
        assert not copy.exists() and not working.exists() and not public[0].exists()
        assert all(d.is_dir() for d in built)  # what Gradio keeps for the app's life stays
        # sample cases still open after Gradio's own delete_cache has run (its first pass: 60 s after start)
        time.sleep(max(0.0, started_at + 70 - time.time()))
        with httpx.Client(base_url=app.url, timeout=60) as c:
            deps = c.get("/config").json()["dependencies"]
            load = next(d.get("id", i) for i, d in enumerate(deps) if d.get("api_name") == "load_example")
            status, body = _run_fn(c, load, [0])
            assert status == 200, body
            sample = body["data"][0]["value"]["path"]
            ok, out = _predict(c, sample)
        print(f"sample case 70 s after start (file age 10 s): on disk {Path(sample).is_file()}, analysed {ok}")
        assert Path(sample).is_file() and ok, out
        assert app.proc.poll() is None
    finally:
        _stop(app)


def test_run_history_and_share_buttons_are_off(client: Any) -> None:
    cfg = client.get("/config").json()
    images = [c for c in cfg["components"] if c["type"] in ("image", "gallery")]
    sharing = [c["props"].get("label") for c in images if "share" in (c["props"].get("buttons") or ["share"])]
    print(f"\nrun history: {cfg.get('run_history')}; images with a share button: {len(sharing)} of {len(images)}")
    assert cfg.get("run_history") is False and images and sharing == []


def test_only_documented_endpoints_and_helpers_are_safe(app: App, client: Any) -> None:
    """The API lists the documented endpoints only; the helper events a browser needs stay callable by fn_index
    (Gradio cannot tell them from the browser), so each must be harmless: the upload handler deletes no file it
    did not receive as a raw upload, and no helper reads a file outside Gradio's cache."""
    named = set(client.get("/gradio_api/info").json()["named_endpoints"])
    assert named == DOCUMENTED, named
    rename = _fn_index(client, "upload", "Scan")
    # someone else's cleaned working copy and output image, named by their paths in the cache
    status, body = _run_fn(client, rename, [_file(_upload(client, "a.png", _png()))])
    victim_copy = Path(body["data"][0]["path"])
    ok, out = _predict(client, str(victim_copy))
    victim_png = Path(out[4]["path"])
    deleted = 0
    for victim in (victim_copy, victim_png):
        assert victim.is_file()
        _run_fn(client, rename, [_file(str(victim))])
        deleted += not victim.is_file()
    # files outside the cache: refused before any handler runs
    outside = [app.state / "feedback.sqlite", Path("/etc/hostname")]
    read = 0
    for target in outside:
        for fn in (rename, _fn_index(client, "click", "De-identified DICOM copy")):
            status, body = _run_fn(client, fn, [_file(str(target))])
            read += status == 200
    assert all(t.exists() for t in outside if t.parent.exists())
    print(f"\nnamed endpoints: {len(named)} (documented {len(DOCUMENTED)}); victims deleted through the upload "
          f"handler: {deleted} of 2; helper calls that read a file outside the cache: {read} of 4")
    assert deleted == 0 and read == 0


def test_frame_3_of_a_16_frame_dicom_through_the_api(client: Any) -> None:
    ok, out = _predict(client, _upload(client, "cine.dcm", _multiframe_dicom(16)), frame=3)
    assert ok, out
    print(f"\nfresh API client, frame 3 of 16: {out[6].split(' · ')[-3] if ok else out}")
    assert "frame 3 of 16 shown" in out[6]
    ok, out = _predict(client, _upload(client, "cine.dcm", _multiframe_dicom(16)), frame=17)
    assert not ok and "16 frames" in str(out)


def _rows(app: App) -> list[tuple]:
    con = sqlite3.connect(f"file:{app.state / 'feedback.sqlite'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT id, reader, pred_type, image_sha256, comment, idempotency_key, session_id "
                           "FROM feedback ORDER BY id").fetchall()
    finally:
        con.close()


def _feedback(client: Any, prediction: Any, comment: str = "", key: str = "", corrected_type: str = "",
              reader: str = "api01", session_id: str = "") -> tuple[bool, Any]:
    return _call(client, "feedback", [prediction, reader, session_id, "Agree", None, None, corrected_type, "", 4, 3,
                                      comment, key])


def test_feedback_cannot_be_forged_duplicated_or_unbounded(app: App, client: Any) -> None:
    ok, out = _predict(client, _upload(client, "scan.png", _png()))
    assert ok, out
    shown = out[7]
    assert len(shown["prediction_id"]) == 32
    before = len(_rows(app))
    forged = {"model": shown["model"], "type": {"label": "forged", "probabilities": {"forged": 1.0}},
              "image_sha256": "0" * 64}
    attempts = [
        _feedback(client, forged),  # a client-made prediction
        _feedback(client, {**shown, "prediction_id": "f" * 32}),  # an id the server never gave
        _feedback(client, {**shown, "type": {"label": "forged"}}, corrected_type="x" * 2_000_000),  # 2 MB label
        _feedback(client, shown, corrected_type="not-a-label-of-this-model"),
        _feedback(client, shown, comment="c" * 4001),
        _feedback(client, shown, session_id="s" * 201),
    ]
    rejected = sum(not ok for ok, _ in attempts)
    assert all(isinstance(msg, str) and msg for ok, msg in attempts if not ok), attempts  # a message, not a bare 500
    # the same submission sent twice (a retry after a lost answer): one row
    key = "retry-" + secrets.token_hex(8)
    first = _feedback(client, {**shown, "type": {"label": "forged"}}, comment="=HYPERLINK(\"http://x\",\"x\")", key=key)
    again = _feedback(client, shown, comment="=HYPERLINK(\"http://x\",\"x\")", key=key)
    assert first[0] and again[0] and first[1] == again[1], (first, again)
    rows = _rows(app)[before:]
    print(f"\nforged or unbounded submissions rejected: {rejected} of {len(attempts)}; rows stored for 2 identical "
          f"submissions: {len(rows)}")
    assert rejected == len(attempts) and len(rows) == 1
    assert rows[0][2] == shown["type"]["label"] and rows[0][3] == shown["image_sha256"]  # from the server's record
    # the CSV export neutralises formulas
    ok, exported = _call(client, "feedback_export", [])
    assert ok, exported
    text = client.get(exported[0]["url"]).text
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text and '"=HYPERLINK' not in text


@pytest.mark.skipif(not (LUNG / "manifest.csv").is_file(), reason="shared lung data not found")
def test_long_session_ids_resume(app: App, client: Any) -> None:
    """Through the HTTP API, as two pages (gradio_client's heartbeats are connections the server's stop waited 5 s
    for: this module's teardown took 7 s)."""
    long_id = "reader-study-" + "x" * 150
    first, second = secrets.token_hex(8), secrets.token_hex(8)
    ok, start = _call(client, "session_start", ["api02", long_id, None, 2, 0], first)
    assert ok and "Case 1 of 2" in start[1], start
    assert _call(client, "session_read", ["adenocarcinoma", "IIIa", 4], first)[0]
    assert _call(client, "session_feedback", ["Agree", "Agree", "Agree", "", "", 4, 3, ""], first)[0]
    ok, resumed = _call(client, "session_start", ["api02", long_id, None, 2, 0], second)
    print(f"\nsession id of {len(long_id)} characters resumed at: {resumed[1].split(' - ')[0]}")
    assert ok and "Case 2 of 2" in resumed[1], resumed


def test_the_same_file_uploaded_twice_serves_both_requests(app: App, client: Any) -> None:
    """Gradio names an upload by its bytes, and the app masks its name, so two clinicians uploading the same file
    shared one path: the first request deleted the file the second was about to read. Each upload now has its own."""
    data = _png()
    first, second = _upload(client, "case01.png", data), _upload(client, "case02.png", data)
    assert first != second and Path(first).read_bytes() == Path(second).read_bytes() == data
    for path in (first, second):
        ok, out = _predict(client, path)
        assert ok, out
        assert not Path(path).exists()  # each request removed its own upload
    ok, out = _predict(client, first)  # naming another's (or one's used) upload again deletes nothing more
    assert not ok and "could not be opened" in out


def test_store_errors_are_clear_messages(app: App, client: Any) -> None:
    """The feedback store becomes unusable under a running server: a message that says what to do, no bare 500."""
    ok, out = _predict(client, _upload(client, "scan.png", _png()))
    assert ok
    db = app.state / "feedback.sqlite"
    moved = db.with_name("feedback.sqlite.moved")
    db.rename(moved)
    db.mkdir()  # a folder where the database file was: SQLite cannot open it
    try:
        ok_fb, msg = _feedback(client, out[7])
        ok_pred, shown = _predict(client, _upload(client, "scan.png", _png()))
    finally:
        db.rmdir()
        moved.rename(db)
    print(f"\nfeedback on a broken store: {msg!r}")
    assert not ok_fb and "feedback store" in msg and "MEDIMG_STATE_DIR" in msg
    assert ok_pred and shown[7]["prediction_id"] is None and "Feedback cannot be given" in shown[10]


# ------------------------------------------------------------------------------------------------- logins

@pytest.fixture(scope="module")
def auth_app(tmp_path_factory: pytest.TempPathFactory, tiny_registry: Path) -> Iterator[App]:
    a = _start(tmp_path_factory.mktemp("auth"), tiny_registry,
               {"MEDIMG_AUTH": "alice01:pw-alice-1,bob02:pw-bob-2", "MEDIMG_OWNERS": "alice01"}, uploads_in_state=False)
    yield a
    _stop(a)


@pytest.mark.slow
def test_logins_are_enforced_when_configured(auth_app: App) -> None:
    from gradio_client import Client, handle_file

    with httpx.Client(base_url=auth_app.url, timeout=60) as anon:
        refused = [anon.get("/config").status_code, anon.get("/gradio_api/info").status_code,
                   anon.post("/gradio_api/upload", files={"files": ("a.png", _png())}).status_code,
                   anon.post("/gradio_api/call/predict", json={"data": []}).status_code]
        wrong = anon.post("/login", data={"username": "alice01", "password": "wrong"}).status_code
    assert all(code in (401, 403) for code in refused), refused
    assert wrong >= 400
    png = auth_app.state.parent / "scan.png"
    png.write_bytes(_png())
    alice = Client(auth_app.url, auth=("alice01", "pw-alice-1"), verbose=False, download_files=False)
    bob = Client(auth_app.url, auth=("bob02", "pw-bob-2"), verbose=False, download_files=False)
    a_pred = alice.predict(handle_file(str(png)), None, api_name="/predict")[7]
    alice.predict(a_pred, "", "alice-session", "Agree", None, None, "", "", 4, 4, "", "", api_name="/feedback")
    b_pred = bob.predict(handle_file(str(png)), None, api_name="/predict")[7]
    # bob types alice's name: the row is still bob's
    bob.predict(b_pred, "alice01", "bob-session", "Agree", None, None, "", "", 4, 4, "", "", api_name="/feedback")
    with pytest.raises(Exception, match="another reader"):  # bob's feedback on alice's prediction
        bob.predict(a_pred, "", "bob-session", "Agree", None, None, "", "", 4, 4, "", "", api_name="/feedback")
    con = sqlite3.connect(f"file:{auth_app.state / 'feedback.sqlite'}?mode=ro", uri=True)
    readers = dict(con.execute("SELECT session_id, reader FROM feedback").fetchall())
    con.close()
    assert readers == {"alice-session": "alice01", "bob-session": "bob02"}

    def sessions(c: Any) -> set[str]:
        table = c.predict(api_name="/feedback_summary")
        return {row[table["headers"].index("session_id")] for row in table["data"]}

    seen_by_bob, seen_by_alice = sessions(bob), sessions(alice)
    print(f"\nanonymous requests refused: {sum(c in (401, 403) for c in refused)} of {len(refused)}; "
          f"bob's row stored as {readers['bob-session']}; bob sees {sorted(seen_by_bob)}, "
          f"owner alice sees {sorted(seen_by_alice)}")
    assert "alice-session" not in seen_by_bob and {"alice-session", "bob-session"} <= seen_by_alice
    # the owner's export (every reader's rows) is served to her login only: it had gone to any login with its link
    url = alice.predict(api_name="/feedback_export")["url"]
    got = {who: httpx.get(url, cookies=c.cookies, timeout=30) for who, c in (("alice", alice), ("bob", bob))}
    assert got["alice"].status_code == 200 and "bob-session" in got["alice"].text
    assert got["bob"].status_code == 403 and "bob-session" not in got["bob"].text, got["bob"].status_code


def test_the_uploaded_name_never_reaches_disk(app: App, client: Any) -> None:
    """Gradio stores an upload under the name the browser sends; the app masks that name in the request body,
    so not even Gradio's first copy is named after the patient."""
    name = f"DOE_JANE_PID998877_{secrets.token_hex(4)}.dcm"
    raw = _upload(client, name, _dicom_with_phi())  # checked at once, before any handler of the app runs
    named = [p for p in _all_files(app.uploads, app.state, Path(tempfile.gettempdir())) if "PID998877_" in p.name]
    assert "PID998877" not in raw and "DOE" not in raw and raw.endswith(".dcm") and named == []
