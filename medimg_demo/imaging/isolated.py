"""Decode an upload in a child process with a memory limit and a time limit.

The checks before decoding (``dicom_guard``, ``codestream``, ``j2k_coding``, ``jpeg_markers``) refuse files whose
headers promise far more work than their image is worth, but a small file within every bound can still cost a
decoder seconds of CPU and hundreds of MB (a 752-byte JPEG 2000 frame with the smallest code-blocks allowed: 1.8 s
and +791 MB), and the decoders hold the GIL while they work, so in the server every other user waited. Here each
upload decodes in a child forked by the decode server (``decode_server``, started once, decoders warmed), so:

* the server's threads keep running while a file decodes;
* the child's address space is capped (``MEDIMG_DECODE_MEMORY_MB`` over its start, default 2048: an honest
  8000x8000 greyscale JPEG 2000 frame peaks near 390 MB, an 8000x8000 colour JPEG in a DICOM near 730 MB; on a system
  without ``/proc``, macOS among them, there is no cap) and it is killed at ``MEDIMG_DECODE_TIMEOUT_S`` (default 30):
  both are refused with a message;
* a decoder that crashes takes down its child, not the server;
* the server starts without the app's secrets in its environment, and each child confines itself with Landlock
  before it parses the upload (``sandbox``; ``MEDIMG_DECODE_SANDBOX=0`` turns it off): a decoder taken over by a
  hostile file can read no other file of the app's, write none, and open no TCP connection;
* at most ``MEDIMG_DECODE_WORKERS`` (default 2) children work at once (decoding, cleaning or de-identifying an
  upload), so memory stays bounded under load.

Nothing is unpickled from the child: it answers with the image's attributes as JSON and its arrays as raw float32
bytes, which are checked (shape, size, finite) and hashed again here, so a decoder that misbehaves cannot hand the
server code or a forged pixel hash. ``MEDIMG_DECODE_ISOLATION=0`` decodes in the calling process (where ``fork``
or Unix sockets are missing it is off); the command line, evaluation and training decode in-process (trusted
files, no other users).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import InputError
from . import decode_server as wire
from .child_answer import study_from_answer
from .clean import ACCEPTED, clean_in_process
from .decode import MAX_BYTES, read_bytes, read_file, too_large
from .deid import DeidResult, deidentify_with_report
from .sandbox import server_environment
from .study import MAX_SIDE, Study

log = logging.getLogger(__name__)

TIMEOUT_S = settings.number("MEDIMG_DECODE_TIMEOUT_S", 30, "seconds one decode may take", low=1)
MEMORY_MB = settings.number("MEDIMG_DECODE_MEMORY_MB", 2048, "megabytes one decode may use", low=64)
WORKERS = settings.whole("MEDIMG_DECODE_WORKERS", 2, "decodes at once", low=1)
#: How long the decode server may take to start (importing and warming the decoders: about 1 s here).
START_TIMEOUT_S = 120.0
_SLOTS = threading.BoundedSemaphore(WORKERS)
_LOCK = threading.Lock()
_server: dict[str, Any] = {}


def enabled() -> bool:
    """Whether uploads decode in a child process (``MEDIMG_DECODE_ISOLATION``, on by default where it can)."""
    return os.environ.get("MEDIMG_DECODE_ISOLATION", "1") != "0" and hasattr(os, "fork") and hasattr(socket, "AF_UNIX")


def _stop() -> None:
    proc, folder = _server.pop("proc", None), _server.pop("folder", None)
    if proc is not None:
        proc.stdin.close()  # the server exits when its stdin closes
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _sweep_stale() -> None:
    """Remove decode-server folders an earlier run left (killed before it could): those whose socket answers no one."""
    for folder in Path(tempfile.gettempdir()).glob("medimg-decode-*"):
        try:  # a server still starting (another app's) has no socket yet: only folders of 10 minutes or more
            if time.time() - folder.stat().st_mtime < 600:
                continue
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(str(folder / "s"))  # a live server of another run: left alone
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)


def _launch() -> tuple[subprocess.Popen, str, str]:
    """A new decode server, waited for until it says it is ready; killed and cleaned up on any failure."""
    folder = tempfile.mkdtemp(prefix="medimg-decode-")  # mode 0700: only this user can connect
    path = os.path.join(folder, "s")
    env = {**server_environment(os.environ), "PYTHONPATH": os.pathsep.join(  # the app's secrets left out
        [str(Path(__file__).resolve().parents[2]), *filter(None, [os.environ.get("PYTHONPATH")])])}
    # -P: the working folder is not put on the server's import path (a module planted there would run in it);
    # a session of its own: the terminal's Ctrl-C goes to the app, which then closes the server's stdin
    proc = subprocess.Popen([sys.executable, "-P", "-m", "medimg_demo.imaging.decode_server", path],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True)
    try:
        with selectors.DefaultSelector() as sel:  # not select(): it refuses descriptors over 1023
            sel.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
            ready = sel.select(START_TIMEOUT_S)
        line = proc.stdout.readline().decode(errors="replace").strip() if ready else ""  # type: ignore[union-attr]
        if line.split(" ", 1)[0] != "ready":
            raise RuntimeError("The decode server did not start; set MEDIMG_DECODE_ISOLATION=0 to decode in-process.")
        sandbox = line.partition(" ")[2]
        if sandbox.startswith("confined") or sandbox == "off":
            log.info("Decode children: %s", sandbox if sandbox != "off" else "not confined (MEDIMG_DECODE_SANDBOX=0)")
        else:
            log.warning("Decode children are not confined: %s; they still run under their memory and time limits",
                        sandbox)
        _server["sandbox"] = sandbox
    except BaseException:
        proc.kill()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return proc, folder, path


def _socket_path() -> str:
    """The running decode server's socket, started (or started again, if it died) first."""
    with _LOCK:
        proc = _server.get("proc")
        if proc is not None and proc.poll() is None:
            return str(_server["socket"])
        _stop()
        if not _server.get("atexit"):
            _sweep_stale()
            atexit.register(_stop)
            _server["atexit"] = True
        proc, folder, path = _launch()
        _server.update(proc=proc, folder=folder, socket=path)
        return path


def start() -> None:
    """Start the decode server now (the app calls it at launch, so the first upload does not wait for it)."""
    if enabled():
        _socket_path()


def _too_costly(what: str) -> InputError:
    return InputError(f"Decoding this image {what} allowed for one upload on this server; it may be damaged or built "
                      "to exhaust the server. Export it again (uncompressed DICOM, PNG or JPEG) and upload it again.")


def _connect(head: dict[str, Any], src: bytes | str) -> tuple[socket.socket, Any]:
    """A connection to the decode server (started again first if it died) with the request sent, and the server."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(30)
        try:
            path = _socket_path()
        except RuntimeError as exc:  # logged at launch; a user is asked to try again
            raise InputError("The server's decoder is not available; try again in a moment.") from exc
        proc = _server.get("proc")
        sock.connect(path)
        wire.send(sock, json.dumps(head).encode())
        if isinstance(src, bytes):
            wire.send(sock, src)
    except BaseException:
        sock.close()
        raise
    return sock, proc


def _dead(proc: Any) -> bool:
    """Whether the server ``proc`` has ended, or ends within half a second: a killed server's socket closes a moment
    before the process can be waited for."""
    if proc is None:
        return True
    try:
        proc.wait(0.5)
    except subprocess.TimeoutExpired:
        return False
    return True


def _first_answer(head: dict[str, Any], src: bytes | str, deadline: float) -> tuple[socket.socket, list[Any]]:
    """The connection and the child's first message. A server that died since the last upload leaves the request
    unsent, or reset before any child took it: then, and only then, the server is started again and asked once more
    (a live server's child that stops is that request's failure, not the server's)."""
    for attempt in (0, 1):
        proc = _server.get("proc")
        try:
            sock, proc = _connect(head, src)
        except OSError as exc:
            log.warning("The decode server could not be reached (%s)", type(exc).__name__)
            if attempt or not _dead(proc):
                raise
            continue
        try:
            return sock, json.loads(wire.recv(sock, 1 << 16, deadline))
        except (ConnectionResetError, BrokenPipeError) as exc:
            sock.close()
            if attempt or not _dead(proc):
                raise
            log.warning("The decode server died with the request (%s); starting it again", type(exc).__name__)
        except BaseException:
            sock.close()
            raise
    raise InputError("The server's decoder could not be reached; try again in a moment.")


def _ask(src: bytes | str, frame: int | None, timeout_s: float, memory_mb: float,
         op: str = "decode") -> Any:
    """The child's Study of ``src`` (``op`` "decode"), its (cleaned bytes, extension) ("clean"), or its
    de-identified copy ("deid")."""
    head = {"op": op, "frame": frame, "timeout_s": timeout_s, "memory_mb": memory_mb,
            "path": None if isinstance(src, bytes) else src}
    t0 = time.monotonic()
    deadline = t0 + timeout_s + 5  # the child ends itself at timeout_s; this bounds the whole answer
    try:
        sock, first = _first_answer(head, src, deadline)
        with sock:
            kind, payload = first
            if kind == "ok" and op == "decode":
                limit = MAX_SIDE * MAX_SIDE * 4
                return study_from_answer(payload, wire.recv(sock, limit, deadline), wire.recv(sock, limit, deadline))
            if kind == "cleaned" and op == "clean" and payload in (".png", ".jpg", ".dcm"):
                return wire.recv(sock, MAX_BYTES + (1 << 20), deadline), payload  # de-identifying adds a little
            if kind == "deidentified" and op == "deid":
                removed, warnings = payload
                if type(removed) is not bool or not all(isinstance(w, str) for w in warnings):
                    raise ValueError("an inconsistent answer")
                return DeidResult(wire.recv(sock, MAX_BYTES + (1 << 20), deadline), removed, tuple(warnings))
    except (EOFError, OSError, ValueError, KeyError, TypeError, RecursionError, OverflowError) as exc:
        log.warning("A decode child stopped without an answer (%s)", type(exc).__name__)
        if time.monotonic() - t0 >= timeout_s - 0.05:
            raise _too_costly(f"took longer than the {timeout_s:g} s") from exc
        raise _too_costly("stopped the decoder (it ran out of the memory or the work)") from exc
    if kind == "refused":
        raise InputError(str(payload)[:2000])
    if kind == "memory":
        raise _too_costly(f"needs more than the {memory_mb:.0f} MB of memory")
    log.info("An upload failed to decode in its child (%s)", str(payload)[:100])
    raise InputError("The image could not be decoded; it may be damaged. Export it again and upload it again.")


def clean_isolated(data: bytes) -> tuple[bytes, str]:
    """:func:`clean.clean_in_process` (an upload de-identified or stripped of its metadata, or refused) in a child
    process under the same limits as a decode (in-process when :func:`enabled` is false)."""
    if not enabled():
        return clean_in_process(data)
    if not data:
        raise InputError(f"The file is empty. Accepted: {ACCEPTED} (.dcm or no extension).")
    if len(data) > MAX_BYTES:
        raise too_large(len(data))
    with _SLOTS:
        return _ask(data, None, TIMEOUT_S, MEMORY_MB, op="clean")  # type: ignore[no-any-return]


def deidentify_isolated(data: bytes) -> DeidResult:
    """:func:`deid.deidentify_with_report` (a de-identified copy for download) in a child process under the same
    limits as a decode (in-process when :func:`enabled` is false): a raw upload's bytes parse there."""
    if not enabled():
        return deidentify_with_report(data)
    if len(data) > MAX_BYTES:
        raise too_large(len(data))
    with _SLOTS:
        return _ask(data, None, TIMEOUT_S, MEMORY_MB, op="deid")  # type: ignore[no-any-return]


def read_isolated(src: str | Path | bytes, frame: int | None = None, timeout_s: float | None = None,
                  memory_mb: float | None = None) -> Study:
    """Decode an upload (cleaned bytes or a file path) as :func:`decode.read_bytes` / :func:`decode.read_file` do,
    in a child process under a memory and a time limit (in-process when :func:`enabled` is false)."""
    if not enabled():
        return read_bytes(src, frame) if isinstance(src, bytes) else read_file(src, frame)
    if isinstance(src, bytes) and len(src) > MAX_BYTES:  # de-identifying adds a little: refused as in-process
        raise too_large(len(src))
    with _SLOTS:
        return _ask(src if isinstance(src, bytes) else os.path.abspath(src), frame,
                    TIMEOUT_S if timeout_s is None else timeout_s, MEMORY_MB if memory_mb is None else memory_mb)
