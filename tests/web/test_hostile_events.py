"""The Analyse viewer, reading-session display, reader-study summary and sample-case events, attacked as a hostile
client would: over HTTP on loopback against the running app, each event called by its ``fn_index`` through Gradio's
queue (as the browser calls it) whatever its API visibility, with forged numbers, clicks, state, paths and indices.

One app per module in the worst layout of tests/web/test_security.py (Gradio's upload cache *is* the state folder),
and one with logins (``MEDIMG_AUTH``, owner ``alice01``). Each test prints its measured figure.
"""

from __future__ import annotations

import io
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import LUNG, dicom_bytes, gradient
from test_security import PHI_STRINGS, App, _dicom_with_phi, _file, _queue_fn, _start, _stop, _upload

httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.slow  # each module fixture starts the app (20-60 s on 2 cores)

#: Longest side a viewer picture may have: the 2048 px decode cap plus the colour bar beside it.
MAX_SIDE = int(2048 * 1.1)
NAN, INF = float("nan"), float("inf")
needs_data = pytest.mark.skipif(not (LUNG / "manifest.csv").is_file(), reason="shared lung data not found")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_registry: Path) -> Iterator[App]:
    # views of all pages within 3 MB (a 96 px DICOM's view: 80 KB; a 768 px PNG's: 4.7 MB)
    a = _start(tmp_path_factory.mktemp("hostile"), tiny_registry, {"MEDIMG_VIEW_BUDGET_MB": "3"}, uploads_in_state=True)
    yield a
    _stop(a)


@pytest.fixture()
def client(app: App) -> Iterator[Any]:
    with httpx.Client(base_url=app.url, timeout=120) as c:
        yield c


def _fn(client: Any, name: str) -> int:
    """The fn_index of the first event whose handler Gradio named ``name`` (private events keep their name)."""
    for i, dep in enumerate(client.get("/config").json()["dependencies"]):
        if dep.get("api_name") == name:
            return int(dep.get("id", i))
    raise AssertionError(f"no event {name}")


def _direct(client: Any, fn_index: int, data: list[Any], session: str, event_data: Any = None) -> tuple[int, Any]:
    """POST /gradio_api/run/predict, as the browser calls an unqueued event (NaN and infinities sent as JSON allows)."""
    body = json.dumps({"fn_index": fn_index, "data": data, "session_hash": session, "event_data": event_data})
    r = client.post("/gradio_api/run/predict", content=body, headers={"content-type": "application/json"})
    return r.status_code, r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text


def _analysed(client: Any, data: bytes, name: str = "scan.dcm") -> tuple[str, dict[str, Any]]:
    """A page session that has analysed ``data`` as the browser does (upload handler, then the private predict):
    (session hash, cleaned working copy)."""
    session = secrets.token_hex(8)
    ok, out = _queue_fn(client, _fn(client, "rename_upload"), [_file(_upload(client, name, data), name)], session)
    assert ok, out
    work = out[0]
    ok, out = _queue_fn(client, _fn(client, "predict_1"), [work, None, 0.45, None, "File default", None, None], session)
    assert ok, out
    return session, work


def _png_side(client: Any, file_data: dict[str, Any]) -> int:
    from PIL import Image

    return max(Image.open(io.BytesIO(client.get(file_data["url"]).content)).size)


def _pictures(out: list[Any]) -> list[dict[str, Any]]:
    """The FileData of redraw's outputs: the overview and the compare slider's two pictures."""
    pics = [o for o in out if isinstance(o, dict) and "path" in o]
    for o in out:
        if isinstance(o, dict) and isinstance(o.get("value"), list):
            pics += [v for v in o["value"] if isinstance(v, dict) and "path" in v]
    return pics


def _message(err: Any) -> str:
    """The message of a refused event ("" for Gradio's bare "Error")."""
    return err if isinstance(err, str) else ""


# --------------------------------------------------------------------------------------------------- queue

def test_queued_events_cannot_skip_the_queue(app: App, client: Any) -> None:
    """Outside a Space Gradio leaves the REST route open: every queued event (model runs, redraws, reports,
    exports) ran at once through POST /gradio_api/run/predict, past MEDIMG_CONCURRENCY (6 predicts of a 4000 px
    PNG at once: +1.25 GB RSS, against +0.7 GB through the queue)."""
    deps = client.get("/config").json()["dependencies"]
    queued = [int(d.get("id", i)) for i, d in enumerate(deps) if d.get("backend_fn", True) and d.get("queue") is not False]
    session, work = _analysed(client, _dicom_with_phi())
    ran = []
    for fn in queued:
        status, _ = _direct(client, fn, [], session)
        ran += [fn] if status != 404 else []
    predict = _fn(client, "predict_1")
    status, _ = _direct(client, predict, [work, None, 0.45, None, "File default", None, None], session)
    named = client.post("/gradio_api/run/predict", json={"data": [work, None, 0.45, None, "File default", None, None]})
    print(f"\nqueued events run past the queue: {len(ran)} of {len(queued)}; a real predict: HTTP {status}; "
          f"the named /predict: HTTP {named.status_code}")
    assert ran == [] and status == 404 and named.status_code == 404


def test_oversized_inputs_are_refused_before_they_are_kept(app: App, client: Any) -> None:
    """Gradio keeps every input value a client sends in that session's state: 5 requests with a 20 MB value kept
    150 MB; a file name of 20 MB to show_file, a 20 MB JSON to the helper behind the switch button."""
    from test_security import _call

    def rss_mb() -> float:
        return int(Path(f"/proc/{app.proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024

    huge = "a" * 20_000_000
    before, answers = rss_mb(), []
    for k in range(5):
        for fn, data in ((_fn(client, "show_file"), [{"path": "x.dcm", "orig_name": huge, "meta": {"_type": "gradio.FileData"}}]),
                         (_fn(client, "suggestion"), [{"x": huge}]), (_fn(client, "feedback_choices"), [{"model": huge}])):
            r = client.post("/gradio_api/queue/join" if k % 2 else "/gradio_api/run/predict",
                            json={"fn_index": fn, "data": data, "session_hash": secrets.token_hex(8)})
            answers.append(r.status_code)
    time.sleep(1)
    growth = rss_mb() - before
    # the largest body the page sends still passes: feedback with a 4,000-character comment of 4-byte characters
    ok, msg = _call(client, "feedback", [{"prediction_id": "f" * 32}, "reader01", "", "Agree", None, None, "", "", 4, 3,
                                         "\U0001F600" * 4000, ""])
    print(f"\n20 MB inputs refused: {sum(s == 413 for s in answers)} of {len(answers)}; RSS growth {growth:.0f} MB; "
          f"a full feedback form: {msg!r}")
    assert all(s == 413 for s in answers) and growth < 60
    assert not ok and "not known to this server" in msg  # reached the handler (the prediction id is made up)


def test_only_the_upload_route_takes_a_large_body_and_it_has_a_bound(app: App, client: Any) -> None:
    """Only Gradio's upload route counts as an upload: a path that merely ended in /upload (an event called as
    /gradio_api/call/upload) passed uncapped and was parsed whole before any login check. The upload route's whole
    body is bounded too: Gradio's max_file_size bounds file parts only, and keeps a text part in memory."""
    import socket
    from urllib.parse import urlparse

    from medimg_demo.web.request_limits import MAX_UPLOAD_BODY_BYTES

    big = b'{"data": ["' + b"a" * 20_000_000 + b'"], "fn_index": 0}'
    named = {path: client.post(path, content=big, headers={"content-type": "application/json"}).status_code
             for path in ("/gradio_api/call/upload", "/gradio_api/run/upload", "/gradio_api/api/upload",
                          "/gradio_api/call/v2/upload")}
    where = urlparse(app.url)
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:  # a length over the bound
        sock.sendall(b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B"
                     b"\r\nContent-Length: %d\r\n\r\n0123456789" % (MAX_UPLOAD_BODY_BYTES + 1))
        declared = sock.recv(200).split(b"\r\n")[0]

    def text_part() -> Iterator[bytes]:  # no length given: counted as it streams
        yield b'--B\r\nContent-Disposition: form-data; name="notes"\r\n\r\n'
        for _ in range(MAX_UPLOAD_BODY_BYTES // 1_000_000 + 5):
            yield b"a" * 1_000_000
        yield b"\r\n--B--\r\n"

    streamed = client.post("/gradio_api/upload", content=text_part(),
                           headers={"content-type": "multipart/form-data; boundary=B"})
    session = secrets.token_hex(8)  # a real upload still passes (and is used up: no patient's file left behind)
    ok, out = _queue_fn(client, _fn(client, "rename_upload"), [_file(_upload(client, "scan.dcm", _dicom_with_phi()))],
                        session)
    real = out[0]["path"] if ok else ""
    print(f"\n20 MB bodies to paths ending in /upload: {named}; a declared {MAX_UPLOAD_BODY_BYTES + 1} byte upload: "
          f"{declared.decode()}; an unbounded text part: HTTP {streamed.status_code}")
    assert set(named.values()) == {413}, named
    assert b" 413 " in declared and streamed.status_code == 413 and "MEDIMG_MAX_UPLOAD_MB" in streamed.text
    assert real.endswith(".dcm")


def test_gradios_older_file_route_serves_nothing(app: App, client: Any) -> None:
    """Gradio also serves files through /gradio_api/file/<path>, which the app never links: it fetched a URL for
    anyone (an open proxy) and skipped the raw-upload refusal and the download headers of /file=. 404 for all."""
    from PIL import Image

    _, work = _analysed(client, _dicom_with_phi())
    png = io.BytesIO()
    Image.fromarray((gradient() * 255).astype(np.uint8)).save(png, format="PNG")
    raw = _upload(client, "scan.png", png.getvalue())  # a raw upload, waiting for its handler
    answers = {target: client.get(f"/gradio_api/file/{target}").status_code
               for target in ("https://example.org/DOE_JANE.dcm", raw, raw.lstrip("/"), work["path"])}
    print(f"\n/gradio_api/file/ answers: {sorted(set(answers.values()))}")
    assert set(answers.values()) == {404}, answers
    assert client.get(work["url"]).status_code == 200  # the link the app hands out still serves its own copy


def test_a_refused_request_uses_its_upload_up_and_no_file_is_copied_twice(app: App, client: Any) -> None:
    """A request refused before it read its raw upload (a frame number out of range, a report with no result on
    screen) left the file, a patient's DICOM, for the reaper; the upload handler, given a file that is not a fresh
    upload (its own working copy), wrote another copy of up to 100 MB a call, and the de-identified copy a new one
    a call."""
    session = secrets.token_hex(8)
    left = []
    for name, data in (("predict", [None, 0.45, 200_000, "File default", None, None]), ("report", [None])):
        raw = _upload(client, "scan.dcm", _dicom_with_phi())
        ok, out = _queue_fn(client, _fn(client, name), [_file(raw), *data], session)
        assert not ok, (name, out)
        left += [name] if Path(raw).exists() else []
    session, work = _analysed(client, _dicom_with_phi())
    copied, copy_out = _queue_fn(client, _fn(client, "rename_upload"), [work], session)
    copies = [_queue_fn(client, _fn(client, "deidentify"), [work], session) for _ in range(3)]
    print(f"\nraw uploads left by refused requests: {left}; the upload handler given a working copy: "
          f"{'copied' if copied else 'refused'}; de-identified copies of one working copy: "
          f"{len({json.dumps(out) for _, out in copies})}")
    assert left == []
    assert not copied and "Upload the scan itself" in _message(copy_out)
    assert all(ok for ok, _ in copies) and len({json.dumps(out) for _, out in copies}) == 1


def test_deep_links_are_not_written(app: App, client: Any) -> None:
    """Gradio's deep-link route wrote the session's input values (here a patient's file name sent as orig_name) to
    an unpruned folder of the upload cache and served it back."""
    session, work = _analysed(client, _dicom_with_phi())
    name = f"DOE_JANE_PID998877_{secrets.token_hex(4)}.dcm"
    _queue_fn(client, _fn(client, "deidentify"), [{**work, "orig_name": name}], session)
    r = client.get("/gradio_api/deep_link", params={"session_hash": session})
    written = [p for p in app.uploads.rglob("*") if p.is_file() and name.encode() in p.read_bytes()]
    print(f"\ndeep link: HTTP {r.status_code}; files holding the sent file name: {len(written)}")
    assert r.status_code == 404 and written == []


def test_analysed_views_stay_within_the_memory_budget(client: Any) -> None:
    """Each page kept its analysed view (scan, values, heatmap) as long as Gradio kept the page, up to 10,000
    pages: a client analysing 2048 px PNGs in new pages added 50-60 MB per page without bound (580 MB after 8).
    Now the views of all pages share MEDIMG_VIEW_BUDGET_MB (3 MB here): the oldest page is asked to analyse
    again, the newest still redraws and reports."""
    from PIL import Image

    pages = []
    for k in range(3):
        buf = io.BytesIO()
        Image.fromarray((np.random.default_rng(k).random((768, 768)) * 255).astype(np.uint8)).save(buf, format="PNG")
        pages.append(_analysed(client, buf.getvalue(), "big.png"))
    redraw, report = _fn(client, "redraw"), _fn(client, "report")
    args = [None, "File default", None, None, 0.3, "2x", "Heatmap peak", None, True]
    first = _queue_fn(client, redraw, args, pages[0][0])
    first_report = _queue_fn(client, report, [pages[0][1], None], pages[0][0])
    last = _queue_fn(client, redraw, args, pages[-1][0])
    print(f"\nthe first of 3 pages after the budget was spent: redraw {first[1]!r}; the last page redraws: {last[0]}")
    assert not first[0] and "Analyse again" in first[1] and not first_report[0] and "Analyse again" in first_report[1]
    assert last[0] and _pictures(last[1])


# -------------------------------------------------------------------------------------------------- viewer

def test_redraw_with_forged_numbers_draws_the_file_view_or_refuses(client: Any) -> None:
    """Window centre/width, opacity, zoom and its centre forged (NaN, infinities, 1e308, negative, text, lists,
    unknown choices): each answer is the picture of a valid request (a forged window: the file's own view) or a
    refusal; no picture larger than the decode cap (zoom never scales the output). Before: a NaN centre or opacity
    drew a black picture, a text or list centre failed inside the handler."""
    session, _ = _analysed(client, _dicom_with_phi())
    redraw = _fn(client, "redraw")

    def draw(window: Any, c: Any, w: Any, opacity: Any, zoom: Any, centre: Any) -> tuple[bool, Any]:
        return _queue_fn(client, redraw, [None, window, c, w, opacity, zoom, centre, None, "forged"], session)

    ok, base = draw("File default", None, None, 0.45, "2x", "Image centre")
    assert ok, base
    same_as_file_view = [("Manual", NAN, 400, 0.45), ("Manual", 40, NAN, 0.45), ("Manual", INF, 400, 0.45),
                         ("Manual", 40, INF, 0.45), ("Manual", "abc", 400, 0.45), ("Manual", [1, 2], 400, 0.45),
                         ("Manual", {"x": 1}, 400, 0.45), ("Manual", True, 400, 0.45), ("File default", None, None, NAN)]
    drawn, sides, wrong = [], [], []
    for window, c, w, opacity in same_as_file_view:
        ok, out = draw(window, c, w, opacity, "2x", "Image centre")
        drawn.append(ok)
        if not ok or out[0]["path"] != base[0]["path"]:
            wrong.append((window, c, w, opacity, out if not ok else "another picture"))
    forged = [("Manual", 1e308, 1e308, 0.45, "4x", "Heatmap peak"), ("Manual", -1e308, 1e-300, 0.45, "4x", "Chosen point"),
              ("Manual", 40, -5, 0.45, "2x", "Image centre"), ("File default", None, None, INF, "1x", "Heatmap peak"),
              ("File default", None, None, -1, "1x", "Heatmap peak"), ("File default", None, None, 0.45, "1000x", "Heatmap peak"),
              ("File default", None, None, 0.45, "-4x", "Heatmap peak"), ("File default", None, None, 0.45, 1e9, None),
              ("Evil", None, None, 0.45, "4x", "Heatmap peak"), ("File default", None, None, "0.5", "2x", "Nowhere")]
    refused = 0
    for args in forged:
        ok, out = draw(*args)
        refused += not ok
        sides += [_png_side(client, p) for p in _pictures(out)] if ok else []
    sides += [_png_side(client, p) for p in _pictures(base)]
    print(f"\nforged window/opacity values drawn as the file's view: {len(same_as_file_view) - len(wrong)} of "
          f"{len(same_as_file_view)}; other forged values refused: {refused} of {len(forged)}; largest picture "
          f"{max(sides)} px (cap {MAX_SIDE}); server up: {client.get('/config').status_code}")
    assert wrong == [] and max(sides) <= MAX_SIDE and client.get("/config").status_code == 200


def test_forged_results_give_the_feedback_lists_nothing_more(client: Any) -> None:
    """The feedback form's correction lists come from the result JSON the page holds, which a client can forge: only
    a served model's id gives its labels; anything else gives empty lists, never an error, another model's id or a
    path (an unknown id's error message lists every model)."""
    from medimg_demo.web.catalog import model_choices

    fn, session = _fn(client, "feedback_choices"), secrets.token_hex(8)
    served = {mid for _, mid in model_choices()}
    labels = ["adenocarcinoma", "large_cell_carcinoma", "normal", "squamous_cell_carcinoma"]
    forged = [None, {}, [], "lung_ct.tiny_v0", 5, NAN, {"model": 5}, {"model": {"id": "lung_ct.tiny_v0"}},
              {"model": ["lung_ct.tiny_v0"]}, {"model": "../../etc/passwd"}, {"model": "auto"}, {"model": ""},
              {"model": "lung_ct.tiny_v0/../x"}, {"model": "x" * 100_000}, {"model": "lung_ct.tiny_v0", "y": [[[[1]]]]}]
    answers = [_direct(client, fn, [value], session) for value in forged]
    real = _direct(client, fn, [{"model": "lung_ct.tiny_v0", "status": "ok", "stage": {"label": "Ib"}}], session)
    print(f"\nforged results: {sum(s != 200 for s, _ in answers)} of {len(forged)} errors; lists given: "
          f"{sum(bool(b['data'][3]['choices']) for s, b in answers if s == 200)}")
    assert all(status == 200 for status, _ in answers), answers
    for value, (_, body) in zip(forged, answers):
        _, _, _, kinds, stages, _ = body["data"]
        given = [v for _, v in kinds["choices"]]
        assert given in ([], labels), (value, given)  # only the served model named exactly gives its labels
        text = json.dumps(body)
        assert "Unknown" not in text and "/" not in text, (value, text[:300])  # no error message, no path
        assert not any(mid in text for mid in served - {"lung_ct.tiny_v0"}), (value, text[:300])
    assert [v for _, v in real[1]["data"][3]["choices"]] == labels and real[1]["data"][4]["visible"]
    refused = _direct(client, fn, [{"model": "lung_ct.tiny_v0", "status": "refused"}], session)
    assert [v for _, v in refused[1]["data"][3]["choices"]] == labels  # feedback on a refusal: the types to name
    assert not refused[1]["data"][4]["visible"]  # it showed no stage: none to correct
    assert not refused[1]["data"][2]["visible"] and not refused[1]["data"][5]["visible"]  # nor a pathway, a heatmap


def test_a_forged_click_never_breaks_the_viewer(client: Any) -> None:
    """The overview's click comes from the client (event_data): NaN was kept as the zoom centre, and every later
    redraw around the chosen point failed; text, 1e400 or lists gave bare errors."""
    session, _ = _analysed(client, _dicom_with_phi())
    pick, redraw = _fn(client, "pick_point"), _fn(client, "redraw")
    clicks = [[NAN, 5], [5, NAN], [INF, -INF], [1e308, -1e308], ["a", "b"], [[1], [2]], [1, 2, 3], 5, None, [True, False],
              "1e400"]
    broken, errors = [], []
    for index in clicks:
        raw = json.dumps({"fn_index": pick, "data": [None, "1x"], "session_hash": session,
                          "event_data": {"index": index, "value": None}})
        if index == "1e400":  # an integer of 401 digits (JSON has no limit)
            raw = raw.replace('"1e400"', "1" + "0" * 400)
        r = client.post("/gradio_api/run/predict", content=raw, headers={"content-type": "application/json"})
        errors += [index] if r.status_code != 200 else []
        ok, out = _queue_fn(client, redraw, [None, "File default", None, None, 0.45, "2x", "Chosen point", None, True], session)
        broken += [index] if not ok else []
    status, body = _direct(client, pick, [None, "1x"], session, {"index": [100, 50], "value": None})
    print(f"\nforged clicks: {len(errors)} of {len(clicks)} answered with an error; redraws broken after them: "
          f"{len(broken)} of {len(clicks)}; a real click: {body['data'][1:] if status == 200 else body}")
    assert broken == [] and errors == []
    assert status == 200 and body["data"][1:] == ["Chosen point", "2x"]


def test_state_cannot_be_forged_or_borrowed_from_another_page(client: Any) -> None:
    """gr.State inputs come from the server's session store: a forged View or ReadingSession sent as JSON is
    ignored, and a page (session hash) that analysed nothing gets none of another page's pictures."""
    victim, work = _analysed(client, _dicom_with_phi())
    attacker = secrets.token_hex(8)
    view = {"pixels": [[0.5] * 4] * 4, "values": None, "invert": False, "heatmap": None, "spacing_mm": None,
            "default_window": None, "modality": "CT", "model_id": "lung_ct.tiny_v0", "frame_index": 0}
    reading = {"reader": "carol03", "session_id": "carol-study", "model_id": "lung_ct.tiny_v0", "cases": [], "index": 0}
    calls = {
        "redraw": [view, "File default", None, None, 0.45, "4x", "Chosen point", [1, 2], True],
        "report": [work, view],
        "session_redraw": [reading, 128, 255, "2x", 50, 50],
        "session_feedback": [reading, "Agree", None, None, None, None, 3, 3, ""],
        "session_read": [reading, None, None, 3],
    }
    answers = {name: _queue_fn(client, _fn(client, name), data, attacker) for name, data in calls.items()}
    drawn = [name for name, (ok, out) in answers.items() if ok and _pictures(out or [])]
    stored = [name for name, (ok, _) in answers.items() if ok and name.startswith("session_") and name != "session_redraw"]
    print(f"\nforged state: pictures drawn {len(drawn)} of {len(calls)}, session answers stored {len(stored)}; "
          f"report: {_message(answers['report'][1])!r}")
    assert drawn == [] and stored == [] and not answers["report"][0]
    assert "Analyse the scan first" in _message(answers["report"][1])
    ok, out = _queue_fn(client, _fn(client, "redraw"), [None, "File default", None, None, 0.45, "4x", "Heatmap peak", None, True], victim)
    assert ok and _pictures(out)  # the victim's own page still draws


def test_file_events_never_read_serve_or_delete_files_outside_the_cache(app: App, client: Any) -> None:
    """show_file, deidentify and report given the feedback database (inside Gradio's cache in this layout),
    /etc/passwd, a traversal and a relative path: refused before the handler runs; nothing deleted, nothing
    published."""
    session, _ = _analysed(client, _dicom_with_phi())
    db = app.state / "feedback.sqlite"
    targets = [db, Path("/etc/passwd"), app.uploads / ".." / app.state.name / "feedback.sqlite", Path("feedback.sqlite"),
               app.state / "work" / "x.dcm"]
    (app.state / "work").mkdir(exist_ok=True)
    (app.state / "work" / "x.dcm").write_bytes(_dicom_with_phi())
    public = app.state / "public"
    published_before = sorted(p for p in public.rglob("*") if p.is_file())
    accepted = []
    for target in targets:
        for name, data in (("show_file", [_file(str(target))]), ("show_file_1", [_file(str(target))]),
                           ("deidentify", [_file(str(target))]), ("report", [_file(str(target)), None])):
            ok, out = _queue_fn(client, _fn(client, name), data, session)
            accepted += [(name, str(target))] if ok else []
    new = [p for p in public.rglob("*") if p.is_file() and p not in published_before and p.suffix in (".dcm", ".pdf")]
    gone = [t for t in (db, app.state / "work" / "x.dcm") if not t.exists()]
    (app.state / "work" / "x.dcm").unlink(missing_ok=True)
    print(f"\nfile events given paths outside the cache: {len(accepted)} of {len(targets) * 4} accepted; "
          f"files deleted: {len(gone)}; copies or reports published: {len(new)}")
    assert accepted == [] and gone == [] and new == []


def test_input_files_given_by_url_are_refused_at_the_door(app: App, client: Any) -> None:
    """Gradio downloads an input file whose path is a URL into its cache, under the URL's file name, where no upload
    handler treats it as a raw upload: refused (HTTP 400) before Gradio parses the event, for every file event and
    the public /predict endpoint, whatever the case of the scheme; and its /file= route, asked for a URL, would fetch
    it from the server: 404. Nothing is fetched."""
    session, _ = _analysed(client, _dicom_with_phi())
    answers = []
    for url in ("https://example.org/DOE_JANE_PID998877.dcm", "HTTP://127.0.0.1:1/DOE_JANE_PID998877.png"):
        for name, data in (("show_file", [_file(url)]), ("deidentify", [_file(url)]), ("report", [_file(url), None]),
                           ("predict", [_file(url), None, 0.45, None, "File default", None, None])):
            ok, out = _queue_fn(client, _fn(client, name), data, session)
            answers.append((ok, str(out)))
    fetched = client.get("/gradio_api/file=https://example.org/DOE_JANE_PID998877.dcm")  # Gradio would fetch it
    kept = [p for p in app.uploads.rglob("*DOE_JANE*")]
    fetches = [line for line in app.log.read_text().splitlines() if "example.org" in line or "127.0.0.1:1/" in line]
    print(f"\ninput files by URL: {sum(not ok and 'HTTP 400' in out for ok, out in answers)} of {len(answers)} "
          f"refused with 400; GET file=URL: {fetched.status_code}; files kept under the URL's name: {len(kept)}; "
          f"fetches in the log: {len(fetches)}")
    assert all(not ok and "HTTP 400" in out and "upload the file itself" in out for ok, out in answers), answers
    assert fetched.status_code == 404 and kept == [] and fetches == []


def test_no_identifier_leaves_through_the_viewer(app: App, client: Any) -> None:
    """A DICOM with fake identifiers (also typed into Modality and Body Part), named after its patient, through every
    viewer path (upload handler, analysis, 4x redraw around a clicked point, report, de-identified copy, file boxes):
    no identifier in any answer, served file (the PDF's text too) or file on disk, and no file named after the upload.
    Without the code-string rule the free-text Modality stayed in the working copy and the copy served."""
    from pypdf import PdfReader

    from pydicom import dcmread

    name = f"DOE_JANE_PID998877_{secrets.token_hex(4)}.dcm"
    ds = dcmread(io.BytesIO(_dicom_with_phi()))
    ds.Modality = ds.BodyPartExamined = "Scan of DOE JANE PID998877"  # free text in code strings (a live hostile run)
    forged = io.BytesIO()
    ds.save_as(forged, enforce_file_format=True)
    session, work = _analysed(client, forged.getvalue(), name)
    answers: list[Any] = []
    _, click = _direct(client, _fn(client, "pick_point"), [None, "1x"], session, {"index": [30, 40], "value": None})
    answers.append(click)
    for fn, data in (("redraw", [None, "Brain", None, None, 0.3, "4x", "Chosen point", None, True]),
                     ("report", [work, None]), ("deidentify", [work])):
        ok, out = _queue_fn(client, _fn(client, fn), data, session)
        assert ok, (fn, out)
        answers.append(out)
    report, copy = answers[2][0], answers[3][0]
    for box, value in (("show_file_1", report), ("show_file", copy)):
        answers.append(_direct(client, _fn(client, box), [value], session)[1])
    served = [client.get(p["url"]) for a in answers[1:4] for p in _pictures(a)]
    assert all(r.status_code == 200 for r in served) and len(served) >= 5
    pdf_text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(served[-2].content)).pages).encode()
    blobs = [json.dumps(answers).encode(), pdf_text, *(r.content for r in served)]
    on_disk = [p for p in app.uploads.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000]
    leaks = [s for s in PHI_STRINGS + [b"PID998877"] if any(s in b for b in blobs)]
    files_with_phi = [p for p in on_disk if any(s in p.read_bytes() for s in PHI_STRINGS + [b"PID998877"])]
    named = [p for p in on_disk if "PID998877" in p.name or "DOE" in p.name]
    print(f"\nidentifiers in answers or served files: {len(leaks)}; files on disk holding PHI: {len(files_with_phi)} "
          f"of {len(on_disk)}; files named after the upload: {len(named)}")
    assert (leaks, files_with_phi, named) == ([], [], [])
    assert served[-2].headers["content-disposition"] == "attachment"  # the PDF is a download


def test_file_box_events_leave_no_empty_files(app: App, client: Any) -> None:
    """Gradio's gr.File opened an empty temporary file in the upload folder on every event that took a file box and
    never removed it (a live hostile run: 300 calls, 300 files in 1.9 s, gone only after the raw-upload TTL)."""
    session, work = _analysed(client, dicom_bytes((gradient(48, 48) * 1000).astype(np.uint16)))

    def leftovers() -> int:
        return sum(1 for p in app.uploads.glob("tmp*") if p.is_file() and p.stat().st_size == 0)

    before = leftovers()
    answers = [_direct(client, _fn(client, "show_file"), [work], session)[0] for _ in range(100)]
    print(f"\n100 show_file calls: {leftovers() - before} empty files left in the upload folder")
    assert answers == [200] * 100 and leftovers() - before == 0


def test_sample_cases_by_forged_index(client: Any) -> None:
    """load_example takes the sample's index from the client: out of range, negative, huge, text, lists and null
    are refused and the server stays up; a negative index within range is Python's (the same sample as its
    positive twin), so no file outside the sample list can be named."""
    cfg = client.get("/config").json()
    samples = next((c for c in cfg["components"] if c["type"] == "dataset"), None)
    if samples is None:
        pytest.skip("no sample cases (shared data not found)")
    n, fn = len(samples["props"]["samples"]), _fn(client, "load_example")
    raw_big = '{"fn_index": %d, "data": [1%s], "session_hash": "x"}' % (fn, "0" * 400)

    def load(index: Any) -> tuple[int, Any]:
        return _direct(client, fn, [index], secrets.token_hex(6))

    forged = [n, -n - 1, 999_999, 10**30, "0", 1.5, [0], {"a": 1}, None]
    answers = [load(i) for i in forged]
    big = client.post("/gradio_api/run/predict", content=raw_big, headers={"content-type": "application/json"})
    refused = sum(status != 200 for status, _ in answers) + (big.status_code != 200)
    paths = {load(i)[1]["data"][0]["value"]["path"] for i in range(n)}
    negative = {load(i)[1]["data"][0]["value"]["path"] for i in range(-n, 0)}
    print(f"\nforged sample indices refused: {refused} of {len(forged) + 1}; negative indices gave "
          f"{len(negative - paths)} file(s) outside the {n} samples; server up: {client.get('/config').status_code}")
    assert refused == len(forged) + 1 and negative == paths and client.get("/config").status_code == 200


@needs_data
def test_session_redraw_with_forged_display_values(client: Any) -> None:
    """Window level/width, zoom and its centre forged: clipped or refused; the case is always drawn at the
    session's display size (never scaled by a value)."""
    from medimg_demo.web.session_view import DISPLAY_PX

    session = secrets.token_hex(8)
    ok, out = _queue_fn(client, _fn(client, "session_start"), ["hostile01", "hostile-display", None, 2, 0], session)
    assert ok, out
    redraw = _fn(client, "session_redraw")
    forged = [(NAN, NAN, "4x", NAN, NAN), (1e308, -1e308, "4x", -1e308, 1e308), (INF, 1, "2x", 0, 100),
              (-5, 0, "1x", 50, 50), ("abc", [1], "1x", 50, 50), (128, 255, "1000x", 50, 50), (128, 255, "4x", 1e9, -1e9)]
    sides, refused = [], 0
    for values in forged:
        ok, out = _queue_fn(client, redraw, [None, *values], session)
        refused += not ok
        sides += [_png_side(client, p) for p in _pictures(out)] if ok else []
    print(f"\nforged display values: {len(forged) - refused} drawn ({sorted(set(sides))} px), {refused} refused")
    assert sides and set(sides) == {DISPLAY_PX} and client.get("/config").status_code == 200


# ---------------------------------------------------------------------------------------------------- logins

USERS = {"alice01": "pw-alice-1", "bob02": "pw-bob-2", "carol03": "pw-carol-3"}
FORMULA_SESSION = '=HYPERLINK("http://evil.example","x")'


@pytest.fixture(scope="module")
def auth_app(tmp_path_factory: pytest.TempPathFactory, tiny_registry: Path) -> Iterator[App]:
    a = _start(tmp_path_factory.mktemp("hostile-auth"), tiny_registry,
               {"MEDIMG_AUTH": ",".join(f"{u}:{p}" for u, p in USERS.items()), "MEDIMG_OWNERS": "alice01"},
               uploads_in_state=False)
    yield a
    _stop(a)


def _login(app: App, user: str) -> Any:
    c = httpx.Client(base_url=app.url, timeout=120)
    r = c.post("/login", data={"username": user, "password": USERS[user]})
    assert r.status_code < 400, r.text
    return c


def _read_session(c: Any, session_id: str, typed: str = "", n: int = 2) -> str:
    page = secrets.token_hex(8)
    ok, out = _queue_fn(c, _fn(c, "session_start"), [typed, session_id, None, n, 0], page)
    assert ok, out
    for _ in range(n):
        ok, out = _queue_fn(c, _fn(c, "session_read"), [None, "adenocarcinoma", "IIIa", 4], page)
        assert ok, out
        ok, out = _queue_fn(c, _fn(c, "session_feedback"), [None, "Agree", "Agree", "Agree", None, None, 4, 3,
                                                         '=HYPERLINK("http://evil.example","y")'], page)
        assert ok, out
    return page


@pytest.fixture(scope="module")
def readers(auth_app: App) -> Iterator[dict[str, Any]]:
    """Logged-in clients; bob (typing alice's name) and carol read sessions of their own and a shared one."""
    if not (LUNG / "manifest.csv").is_file():
        pytest.skip("shared lung data not found")
    clients = {u: _login(auth_app, u) for u in USERS}
    _read_session(clients["bob02"], "bob-own-session", typed="alice01")
    _read_session(clients["carol03"], "carol-secret-session")
    _read_session(clients["carol03"], FORMULA_SESSION)
    _read_session(clients["carol03"], "shared-session")
    _read_session(clients["bob02"], "shared-session")
    yield clients
    for c in clients.values():
        c.close()


def test_summary_and_exports_show_readers_their_own_work(auth_app: App, readers: dict[str, Any]) -> None:
    """A reader sees only their own rows, sessions and verdicts (/feedback_summary, the summary view for any
    session named, both CSV exports); the owner sees every reader's. CSVs: formulas neutralised, downloads only,
    never from a private folder."""
    import csv

    seen: dict[str, str] = {}
    csv_headers = []
    for user in ("bob02", "alice01"):
        c, page = readers[user], secrets.token_hex(8)
        texts = []
        ok, out = _queue_fn(c, _fn(c, "feedback_summary"), [], page)
        assert ok, out
        texts.append(json.dumps(out))
        for chosen in (None, "carol-secret-session", FORMULA_SESSION, "shared-session"):
            ok, out = _queue_fn(c, _fn(c, "summary_view"), [chosen], page)  # refused: a session not offered
            texts += [json.dumps(out)] if ok else []
        for name in ("reader_study_export", "feedback_export"):
            ok, out = _queue_fn(c, _fn(c, name), [], page)
            assert ok, out
            path = Path(out[0]["path"])
            assert auth_app.state / "public" in path.parents or auth_app.uploads in path.parents, path
            assert not any(p in path.parents for p in (auth_app.state / "work", auth_app.state / "runs"))
            r = c.get(out[0]["url"])
            csv_headers.append((r.status_code, r.headers.get("content-disposition"), r.headers.get("content-type"),
                                r.headers.get("x-content-type-options")))
            texts.append(r.text)
            for row in list(csv.reader(io.StringIO(r.text)))[1:]:
                assert not any(cell.startswith(("=", "+", "@", "\t", "\r")) or (cell.startswith("-") and not _number(cell))
                               for cell in row), row
        seen[user] = "\n".join(texts)
    bob, alice = seen["bob02"], seen["alice01"]
    print(f"\nbob sees carol's work: {bob.count('carol')} mentions, her sessions: {bob.count('carol-secret')}; "
          f"owner alice: {alice.count('carol03')} rows of carol's, {alice.count('carol-secret')} of her session; "
          f"CSV answers {set(csv_headers)}")
    assert "carol" not in bob and '""x""' not in bob and '\\"x\\"' not in bob  # carol's rows and session names
    assert "bob02" in bob and "alice01" not in bob  # bob typed alice's name: his rows are his
    assert "carol03" in alice and "carol-secret-session" in alice and '""x""' in alice and "'=HYPERLINK" in alice
    assert set(csv_headers) == {(200, "attachment", "application/octet-stream", "nosniff")}


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_a_borrowed_page_shows_nothing_to_another_login(auth_app: App, readers: dict[str, Any]) -> None:
    """Gradio keys page state and the event stream by the session hash alone: bob's login on alice's page (a page left
    open when she signed out) got her scan redrawn, her case report and her reading-session case, and could read her
    page's event stream. Now the hash is bound to her login (``session_binding``): every request of bob's naming it is
    refused at the door, queued or not, and her stream too; alice goes on."""
    alice, bob = readers["alice01"], readers["bob02"]
    page, work = _analysed(alice, _dicom_with_phi())
    ok, out = _queue_fn(alice, _fn(alice, "session_start"), ["", "alice-session", None, 2, 0], page)
    assert ok, out
    attempts = {
        "redraw": (_fn(bob, "redraw"), [None, "File default", None, None, 0.45, "4x", "Heatmap peak", None, True]),
        "report": (_fn(bob, "report"), [work, None]),
        "session_redraw": (_fn(bob, "session_redraw"), [None, 100, 200, "2x", 40, 40]),
        "left_frame": (_fn(bob, "left_frame"), [None, 99]),
    }
    got = {name: _queue_fn(bob, fn, data, page) for name, (fn, data) in attempts.items()}
    click = {"index": [10, 10], "value": None}
    direct = {who: [_direct(c, _fn(c, "back_if_beyond"), [None, 99], page),
                    _direct(c, _fn(c, "preset_values"), [None, "File default"], page),
                    _direct(c, _fn(c, "pick_point"), [None, "1x"], page, click)] for who, c in (("bob", bob), ("alice", alice))}
    stream = bob.get("/gradio_api/queue/data", params={"session_hash": page})
    beat = bob.get(f"/gradio_api/heartbeat/{page}")
    refused = [name for name, (ok, out) in got.items() if not ok and str(out).startswith("HTTP 403")]
    mine = {name: _queue_fn(alice, fn, data, page)[0] for name, (fn, data) in attempts.items() if name != "left_frame"}
    print(f"\nalice's page under bob's login: {len(refused)} of {len(attempts)} queued events and "
          f"{sum(st == 403 for st, _ in direct['bob'])} of 3 direct ones refused, her stream {stream.status_code}, "
          f"heartbeat {beat.status_code}; under her own login: {sum(mine.values())} of {len(mine)} answered")
    assert refused == list(attempts) and [st for st, _ in direct["bob"]] == [403] * 3
    assert stream.status_code == 403 and beat.status_code == 403
    assert all(mine.values()) and not _queue_fn(alice, _fn(alice, "left_frame"), [None, 99], page)[0]  # told the range
    assert [st for st, _ in direct["alice"]] == [200] * 3
    assert direct["alice"][1][1]["data"] == [40.0, 400.0] and "Chosen point" in direct["alice"][2][1]["data"]


def test_a_refusal_reaches_the_page_not_the_server_log(auth_app: App, readers: dict[str, Any]) -> None:
    """Gradio printed a traceback, message included, for every refused call (about 25 lines each)."""
    c = readers["carol03"]
    for _ in range(3):
        ok, out = _queue_fn(c, _fn(c, "session_start"), ["", "carol-secret-session", None, 2, 9], secrets.token_hex(8))
        assert not ok and "started with the model" in str(out), out
    log = auth_app.log.read_text(errors="replace")
    print(f"\nrefusals in the server log: {log.count('started with the model')}")
    assert "started with the model" not in log


def test_another_logins_working_copy_is_no_key_to_its_scan(auth_app: App, readers: dict[str, Any]) -> None:
    """A live hostile run: bob, holding the path of alice's cleaned working copy (a random name, but seen on a shared
    screen or in a log), analysed it, had its report and its de-identified copy made on his own page; a "//" in
    front of the path also gave a second de-identified copy. Now each is refused under his login, and alice's own
    calls work, one copy for every spelling."""
    alice, bob = readers["alice01"], readers["bob02"]
    page, work = _analysed(alice, _dicom_with_phi())
    spellings = [work, {**work, "path": "/" + work["path"]}, {**work, "path": work["path"].replace("/medimg-", "/./medimg-")}]
    mine, _ = _analysed(bob, dicom_bytes((gradient(48, 48) * 1000).astype(np.uint16)))  # bob's page has a result
    tried = []
    for file in spellings:
        tried += [_queue_fn(bob, _fn(bob, "predict_1"), [file, None, 0.45, None, "File default", None, None], mine),
                  _queue_fn(bob, _fn(bob, "deidentify"), [file], mine), _queue_fn(bob, _fn(bob, "report"), [file, None], mine)]
    refused = [out for ok, out in tried if not ok and "another login" in json.dumps(out)]
    copies = {json.dumps(_queue_fn(alice, _fn(alice, "deidentify"), [file], page)[1][0]["path"]) for file in spellings}
    print(f"\nbob's calls on alice's working copy: {len(refused)} of {len(tried)} refused; alice's copies for "
          f"{len(spellings)} spellings: {len(copies)}")
    assert len(refused) == len(tried) and len(copies) == 1
