"""The uploaded file's name is masked in the request body before Gradio stores the upload."""

from __future__ import annotations

import asyncio

from medimg_demo.web.upload_names import AnonymousUploadNames, mask_filenames


def _body(name: str, payload: bytes = b"\x00\x01DICM" * 500) -> bytes:
    return (b"--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"" + name.encode() + b"\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + payload + b"\r\n--XyZ--\r\n")


def test_names_are_masked_keeping_length_and_image_extension() -> None:
    body = _body("DOE_JANE_PID998877.dcm")
    out = mask_filenames(body)
    assert len(out) == len(body) and b"DOE" not in out and b'filename="uuuuuuuuuuuuuuuuuu.dcm"' in out
    assert b"PID" not in mask_filenames(b"filename*=UTF-8''PID998877%20x.pdf; name=a")
    assert mask_filenames(b'name="files"; filename="a.exe"') == b'name="files"; filename="uuuuu"'


def _run(chunks: list[bytes], path: str = "/gradio_api/upload", boundary: bytes | None = b"XyZ",
         content_type: bytes | None = None) -> bytes:
    seen = []

    async def app(scope, receive, send):  # noqa: ANN001, ANN202
        while True:
            m = await receive()
            seen.append(m.get("body", b""))
            if not m.get("more_body"):
                break

    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():  # noqa: ANN202
        return messages.pop(0)

    headers = [(b"content-type", b"multipart/form-data; boundary=" + boundary)] if boundary else []
    headers = [(b"content-type", content_type)] if content_type else headers
    asyncio.run(AnonymousUploadNames(app)({"type": "http", "method": "POST", "path": path, "headers": headers},
                                          receive, None))
    return b"".join(seen)


def test_a_name_split_across_chunks_is_masked_whatever_the_split() -> None:
    body = _body("DOE_JANE_PID998877.dcm", payload=bytes(range(256)) * 40)
    for cut in range(1, 200, 3):
        out = _run([body[:cut], body[cut:cut + 7], body[cut + 7:]])
        assert len(out) == len(body) and b"DOE_JANE" not in out and b"PID998877" not in out, cut
    assert _run([body], path="/gradio_api/queue/join") == body  # other routes untouched
    assert b"DOE_JANE" not in _run([body], boundary=None)  # no boundary: every name in the body is masked
    assert _run([body], path="/gradio_api/call/upload") == body  # an event named "upload" is no upload


def test_the_boundary_is_the_one_gradio_reads() -> None:
    """The boundary is read as Gradio's parser reads it: a pattern of our own took ``xboundary=z`` for the boundary,
    found no part headers with it, and passed the names to Gradio unmasked."""
    body = _body("DOE_JANE_PID998877.dcm")
    for content_type in (b"multipart/form-data; xboundary=z; boundary=XyZ", b'multipart/form-data; BOUNDARY="XyZ"',
                         b"multipart/form-data; charset=utf-8; boundary=XyZ"):
        out = _run([body[:70], body[70:]], content_type=content_type)
        assert len(out) == len(body) and b"DOE_JANE" not in out and b"PID998877" not in out, content_type


def test_names_the_parsers_accept_are_masked() -> None:
    for header in (b'filename ="DOE_JANE.dcm"', b'filename\t= "DOE_JANE.dcm"', b'filename="DOE\\"JANE.dcm"; x',
                   b'FileName*0="DOE;JANE.png"', b"filename=DOE_JANE.png"):
        out = mask_filenames(header)
        assert len(out) == len(header) and b"DOE" not in out and b"JANE" not in out, (header, out)


def test_the_file_itself_is_never_rewritten() -> None:
    payload = b"tEXt comment filename=DOE_JANE.png; and more " * 50
    body = _body("DOE_JANE_PID998877.png", payload=payload)
    for chunks in ([body], [body[:100], body[100:]], [body[:-60], body[-60:]]):
        out = _run(chunks)
        assert payload in out and b"PID998877" not in out
