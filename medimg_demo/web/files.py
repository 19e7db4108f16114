"""What the web app may serve, and how.

* **Served**: only what the app made for display lives in the public folder (``paths.public_dir()``): rendered
  PNGs, error-gallery images, report PDFs, feedback exports and de-identified DICOM copies. It is the one entry of
  ``launch(allowed_paths=...)``; the feedback store, runs, scratch folder and logs are in ``blocked_paths``
  (Gradio checks the block list first); every ``/gradio_api/file=`` answer is sent with ``nosniff``, a
  sandboxing CSP and, for anything but a raster image, as a download, and a raw upload is never served back
  (:class:`SecureFileHeaders`).
* **Uploads** are cleaned and never kept raw: see :mod:`.uploads`; what the app makes to serve: :mod:`.outputs`.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from ..errors import ConfigError
from ..paths import private_paths, public_dir, upload_dir
from .uploads import spellings

log = logging.getLogger(__name__)

#: Raster types a browser may show inline; everything else served from /file= is a download.
INLINE_TYPES = {b"image/png", b"image/jpeg", b"image/webp", b"image/gif"}


# --------------------------------------------------------------------------------------------- serving policy

def allowed_paths() -> list[str]:
    """Folders the web server may serve from besides Gradio's cache: the public folder only."""
    folder = public_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return [str(folder.resolve())]


def serve_in_place() -> None:
    """The public folder's files are served where they lie (Gradio's static paths), not copied into Gradio's cache
    with each hand-out: those copies were bounded by their age only, so a flood of redraws filled the cache past the
    public folder's byte budgets. Still served only as allowed and not blocked (Gradio checks static files so)."""
    gr.set_static_paths(allowed_paths())


def blocked_paths() -> list[str]:
    """What Gradio must refuse to serve whatever GRADIO_TEMP_DIR and MEDIMG_STATE_DIR are (checked before
    allowed paths and Gradio's own cache): the feedback store and its journals, runs, scratch folder, logs."""
    return [str(p.resolve()) for p in private_paths()]


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def check_layout() -> None:
    """Refuse folder settings under which a private file would be served or a served file blocked."""
    uploads, public = upload_dir(), public_dir()
    for private in private_paths():
        for name, folder in (("GRADIO_TEMP_DIR", uploads), ("the public folder", public)):
            if _inside(folder, private):
                raise ConfigError(f"{name} ({folder.name}) lies inside a private folder of the app ({private.name}); "
                                  "point GRADIO_TEMP_DIR at a folder of its own, outside MEDIMG_STATE_DIR.")
    if _inside(uploads, public):
        raise ConfigError("GRADIO_TEMP_DIR lies inside the public folder (MEDIMG_STATE_DIR/public): uploads would be "
                          "served as generated files. Give GRADIO_TEMP_DIR a folder of its own.")
    try:
        home: list[Path] = [Path.home()]
    except RuntimeError:  # no HOME and no passwd entry (a container under an arbitrary uid)
        home = []
    for shared in (Path(tempfile.gettempdir()), *home):
        if _inside(shared, uploads):
            raise ConfigError(f"GRADIO_TEMP_DIR ({uploads}) is or contains {shared}, a folder other programs use: the app "
                              "removes Gradio's files there by age (tmp* files, hash-named folders) and would remove "
                              "theirs. Give GRADIO_TEMP_DIR a folder of its own.")


async def _not_found(send: Any) -> None:
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"text/plain"), (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": b"Not found"})


class SecureFileHeaders:
    """ASGI middleware for ``/gradio_api/file=`` answers: never active content inline, never a raw upload, never a
    URL fetched; Gradio's older ``/gradio_api/file/<path>`` route, which serves the same files (and fetches URLs) but
    which the app never links, answers 404.

    Gradio already serves files of its cache that are not raster images as downloads, but serves anything under
    ``allowed_paths`` inline with its guessed type; this makes the rule unconditional: ``nosniff``, a CSP that
    allows nothing (and sandboxes a document), and ``Content-Disposition: attachment`` with a neutral type for
    everything but PNG/JPEG/WebP/GIF.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    @staticmethod
    def _raw_upload(scope: dict) -> bool:
        """Whether the file asked for is a raw upload still waiting for its handler: never served back (the app
        shows uploads only as cleaned copies)."""
        blocks = getattr(scope.get("app"), "get_blocks", lambda: None)()
        uploaded = getattr(blocks, "upload_file_set", None)
        if not uploaded:
            return False
        return bool(spellings(uploaded, scope["path"].split("/file=", 1)[1]))

    @staticmethod
    def _remote(scope: dict) -> bool:
        """Whether the file asked for is a URL: Gradio would fetch it from the server (an open proxy, and the URL,
        which the client chose, in the log); the app never hands out such a link."""
        return scope["path"].split("/file=", 1)[1].strip().lower().startswith(("http:", "https:"))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope.get("type") == "http" else ""
        if "/gradio_api/file/" in path:  # Gradio's older file route (same files, URLs fetched): the app links none
            await _not_found(send)
            return
        if "/file=" not in path:
            await self.app(scope, receive, send)
            return
        if self._raw_upload(scope) or self._remote(scope):
            await _not_found(send)
            return

        async def guarded_send(message: dict) -> None:
            if message.get("type") == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"content-security-policy", b"x-content-type-options")]
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"").split(b";")[0].strip().lower()
                if ctype not in INLINE_TYPES:
                    headers = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-disposition")]
                    headers += [(b"content-type", b"application/octet-stream"), (b"content-disposition", b"attachment")]
                headers += [(b"x-content-type-options", b"nosniff"),
                            (b"content-security-policy", b"default-src 'none'; sandbox")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, guarded_send)
