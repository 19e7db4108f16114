"""Served and uploaded files, without a server: cleaning uploads, serving policy, start-up sweep, logins."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from conftest import dicom_bytes, gradient
from medimg_demo.errors import AccessError, ConfigError, InputError
from medimg_demo.web import auth, files, lifecycle, outputs, request_limits, uploads

PHI = b"PID998877"


def _png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", "DOE^JANE PID998877")
    info.add_itxt("Comment", "PID998877 again", zip=True)
    buf = io.BytesIO()
    Image.fromarray((gradient() * 255).astype(np.uint8)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue() + b"after IEND " + PHI


def _jpeg_with_exif(progressive: bool) -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "DOE^JANE PID998877"  # ImageDescription
    buf = io.BytesIO()
    rgb = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(buf, "JPEG", exif=exif, comment=b"PID998877", progressive=progressive)
    return buf.getvalue() + b"after EOI " + PHI


@pytest.mark.parametrize("data", [_png_with_text(), _jpeg_with_exif(False), _jpeg_with_exif(True)],
                         ids=["png", "jpeg", "progressive-jpeg"])
def test_raster_uploads_lose_their_metadata_not_their_pixels(data: bytes) -> None:
    assert PHI in data
    clean, ext = uploads.clean_upload(data)
    assert PHI not in clean and ext in (".png", ".jpg")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(clean))), np.asarray(Image.open(io.BytesIO(data))))


def test_a_jpeg_with_restarts_and_fill_bytes_keeps_its_pixels_and_one_with_too_many_scans_is_refused() -> None:
    buf = io.BytesIO()
    rgb = (np.random.default_rng(1).random((64, 80, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(buf, "JPEG", comment=b"PID998877", restart_marker_blocks=2)
    data = buf.getvalue()
    sos = data.index(b"\xff\xda")
    padded = data[:sos] + b"\xff" * 5000 + data[sos:]  # fill bytes before a marker are legal (T.81 B.1.1.2)
    clean, _ = uploads.clean_upload(padded)
    assert PHI not in clean and b"\xff" * 5000 not in clean  # dropped: they carry nothing
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(clean))), np.asarray(Image.open(io.BytesIO(data))))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", progressive=True)
    data = buf.getvalue()
    last = data[data.rindex(b"\xff\xda"):-2]
    with pytest.raises(InputError, match="more than 64 scans"):  # refused while cleaning, before it is kept
        uploads.clean_upload(data[:-2] + (b"\xff" * 100 + last) * 80 + b"\xff\xd9")  # fill runs between scans


def test_dicom_uploads_are_deidentified_on_arrival() -> None:
    data = dicom_bytes((gradient(64, 64) * 1000).astype(np.uint16))
    assert b"PID-998877" in data
    clean, ext = uploads.clean_upload(data)
    assert ext == ".dcm" and b"PID-998877" not in clean and b"Doe^Jane" not in clean


@pytest.mark.parametrize("data", [b"<html><script>alert(1)</script></html>", b"<svg onload=alert(1)/>",
                                  b"alert(document.cookie)", b"", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"])
def test_anything_but_an_image_is_refused(data: bytes) -> None:
    with pytest.raises(InputError):
        uploads.clean_upload(data)


def test_read_upload_consumes_even_a_refused_file(tmp_path) -> None:
    raw = tmp_path / "DOE_JANE_PID998877.html"
    raw.write_bytes(b"<script>alert(1)</script>")
    with pytest.raises(InputError):
        uploads.clean_upload(uploads.read_upload(raw, consume=True))
    assert not raw.exists()


def test_working_copies_have_random_names(tmp_path) -> None:
    a = uploads.working_copy(b"x", ".png", tmp_path)
    b = uploads.working_copy(b"x", ".png", tmp_path)
    assert a != b and a.name == "scan.png" and a.parent.name.startswith("medimg-")


def test_private_paths_are_blocked_and_only_public_is_allowed(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDIMG_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("MEDIMG_FEEDBACK_DB", raising=False)
    monkeypatch.delenv("MEDIMG_RUNS_DIR", raising=False)
    assert files.allowed_paths() == [str((tmp_path / "public").resolve())]
    blocked = files.blocked_paths()
    for name in ("feedback.sqlite", "feedback.sqlite-wal", "runs", "work", "logs"):
        assert str((tmp_path / name).resolve()) in blocked, name
    monkeypatch.setenv("MEDIMG_AUTH_FILE", str(tmp_path / "logins.json"))  # a logins file wherever it was put
    assert str((tmp_path / "logins.json").resolve()) in files.blocked_paths()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # the worst case: Gradio's cache is the state folder
    files.check_layout()
    for bad in (tmp_path / "runs" / "gradio", tmp_path / "public" / "gradio", Path(tempfile.gettempdir()), Path.home()):
        monkeypatch.setenv("GRADIO_TEMP_DIR", str(bad))
        with pytest.raises(ConfigError, match="GRADIO_TEMP_DIR"):
            files.check_layout()


def test_input_files_by_url_are_recognised_in_any_event_body() -> None:
    file_by_url = {"path": "https://example.org/DOE_JANE.dcm", "meta": {"_type": "gradio.FileData"}}
    for body in ({"data": [file_by_url], "fn_index": 3}, {"data": [None, [{"x": [file_by_url]}]]},
                 {"data": [{"path": " HTTP://127.0.0.1/x.png"}]}):
        assert request_limits.names_remote_file(json.dumps(body).encode()), body
    for body in ({"data": [{"path": "/tmp/gradio/abc/scan.png", "url": "http://127.0.0.1:7860/gradio_api/file=x"}]},
                 {"data": ["see https://example.org in my comment", {"path": "relative/https://x"}]}):
        assert not request_limits.names_remote_file(json.dumps(body).encode()), body
    assert request_limits.names_remote_file(b'{"data": [{"path": "\\u0068ttps://example.org/x.dcm"}]}')
    assert not request_limits.names_remote_file(b"not json but http")
    assert not request_limits.names_remote_file(b"[" * 100_000 + b"http")


def _serve(ctype: bytes, disposition: bytes = b"inline") -> dict[bytes, bytes]:
    async def app(scope, receive, send):  # noqa: ANN001, ANN202
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", ctype), (b"content-disposition", disposition)]})
        await send({"type": "http.response.body", "body": b"x"})

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/gradio_api/file=/some/where/x"}
    asyncio.run(files.SecureFileHeaders(app)(scope, None, send))
    return dict(sent[0]["headers"])


@pytest.mark.parametrize("target", ["https://example.org/DOE_JANE.dcm", "HTTP://10.0.0.1/x.png", " http:x"])
def test_a_file_asked_for_by_url_is_never_fetched(target: str) -> None:
    """Gradio's /file= route fetches an http(s) "file" from the server: refused (404) before Gradio sees it."""
    called: list[dict] = []

    async def app(scope, receive, send):  # noqa: ANN001, ANN202
        called.append(scope)

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(files.SecureFileHeaders(app)({"type": "http", "path": f"/gradio_api/file={target}"}, None, send))
    assert called == [] and sent[0]["status"] == 404


@pytest.mark.parametrize("ctype", [b"text/html; charset=utf-8", b"image/svg+xml", b"text/javascript",
                                   b"application/xml", b"application/pdf", b"application/octet-stream"])
def test_file_answers_never_carry_active_content_inline(ctype: bytes) -> None:
    headers = _serve(ctype)
    assert headers[b"content-disposition"] == b"attachment"
    assert headers[b"content-type"] == b"application/octet-stream"
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert b"sandbox" in headers[b"content-security-policy"]


def test_raster_images_stay_inline_with_nosniff() -> None:
    headers = _serve(b"image/png")
    assert headers[b"content-disposition"] == b"inline" and headers[b"content-type"] == b"image/png"
    assert headers[b"x-content-type-options"] == b"nosniff"


def test_startup_sweep_removes_leftovers_and_nothing_else(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDIMG_STATE_DIR", str(tmp_path / "state"))
    cache = tmp_path / "uploads"
    old_raw = cache / ("a" * 64) / "DOE_JANE_PID998877.dcm"
    fresh = cache / ("b" * 64) / "example.png"
    other = cache / "someone-elses-file.txt"
    scratch = tmp_path / "state" / "work" / "scan-123.dcm"
    for f in (old_raw, fresh, other, scratch):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    for f in (old_raw, old_raw.parent, other):
        os.utime(f, (two_hours_ago, two_hours_ago))
    assert lifecycle.sweep(max_age_s=60, folders=[cache]) == 2
    assert not old_raw.parent.exists() and not scratch.exists()
    assert fresh.exists() and other.exists()


def test_logins_from_a_secrets_file_or_the_environment(tmp_path, monkeypatch) -> None:
    for var in ("MEDIMG_AUTH", "MEDIMG_AUTH_FILE", "MEDIMG_HF_OAUTH", "MEDIMG_OWNERS"):
        monkeypatch.delenv(var, raising=False)
    assert not auth.logins_on() and auth.gradio_auth() is None
    assert auth.identity(None, None, " reader07 ") == "reader07"  # a laptop: the typed pseudonym
    monkeypatch.setenv("MEDIMG_AUTH", "alice01:pw-a,bob02:pw:with:colons")
    check = auth.gradio_auth()
    assert check("alice01", "pw-a") and check("bob02", "pw:with:colons")
    assert not check("alice01", "pw-b") and not check("carol", "pw-a") and not check("alice01", "")
    secrets_file = tmp_path / "logins.json"
    secrets_file.write_text('{"carol03": "pw-c"}')
    monkeypatch.setenv("MEDIMG_AUTH_FILE", str(secrets_file))
    assert auth.credentials() == {"carol03": "pw-c"}
    secrets_file.write_text("# readers\ncarol03:pw-c\ndave04:pw-d\n")
    assert set(auth.credentials()) == {"carol03", "dave04"}
    secrets_file.write_text("carol03 without a password\n")
    with pytest.raises(ConfigError, match="user:password") as exc:
        auth.credentials()
    assert "pw-" not in str(exc.value)


def test_with_logins_the_reader_is_the_login_not_what_was_typed(monkeypatch) -> None:
    monkeypatch.delenv("MEDIMG_AUTH_FILE", raising=False)
    monkeypatch.delenv("MEDIMG_HF_OAUTH", raising=False)
    monkeypatch.setenv("MEDIMG_AUTH", "alice01:pw-a,bob02:pw-b")
    monkeypatch.setenv("MEDIMG_OWNERS", "alice01")

    class Request:
        username = "bob02"

    assert auth.identity(Request(), None, "alice01") == "bob02"
    with pytest.raises(AccessError, match="Log in"):
        auth.identity(None, None, "alice01")
    assert auth.sees_everyone("alice01") and not auth.sees_everyone("bob02")
    monkeypatch.delenv("MEDIMG_AUTH")
    monkeypatch.setenv("MEDIMG_HF_OAUTH", "1")

    class Profile:
        username = "hf-carol"

    assert auth.identity(None, Profile(), "alice01") == "hf-carol"
    with pytest.raises(AccessError, match="Sign in with Hugging Face"):
        auth.identity(None, None, "alice01")


def test_public_names_are_keyed_not_plain_content_hashes() -> None:
    """The same picture gets the same name within the process, but not the SHA-256 of its bytes that anyone holding
    the image could compute (and ask for, to learn whether it was analysed here)."""
    import hashlib

    data = b"\x89PNG the same picture"
    assert outputs.content_name(data) == outputs.content_name(data) != outputs.content_name(data + b"!")
    assert outputs.content_name(data) != hashlib.sha256(data).hexdigest()[:32]
    assert len(outputs.content_name(data)) == 32
