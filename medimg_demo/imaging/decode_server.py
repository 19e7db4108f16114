"""The decode server: a process of its own that forks one child per upload to decode it (``isolated`` is its client).

Started by the client as ``python -m medimg_demo.imaging.decode_server SOCKET``; it imports and warms the decoders
once (``jail_warm``), prints ``ready`` and whether its children can be confined, then accepts connections on the
Unix socket (in a folder only its user can open). For each connection it forks a child, which reads the request,
caps its own address space and CPU time, arms an alarm that kills it at the time limit (even inside a decoder's C
code), confines itself (``sandbox``: no file but its upload and the libraries, no TCP), decodes, answers and
exits. The server never decodes anything itself, and exits when its client's pipe on stdin closes.

Wire format, both ways: messages of an 8-byte big-endian length and that many bytes. Request: a JSON header
(``op``: "decode", "clean" or "deid", ``frame``, ``timeout_s``, ``memory_mb``, ``path`` or null), then the upload's bytes when
``path`` is null. Answer: a JSON header (``["ok", attributes]``, ``["cleaned", extension]``, ``["deidentified", [identity removed, warnings]]``, ``["refused", message]``,
``["memory", ""]`` or ``["error", type name]``), then, for "ok", the pixels and the values as float32 bytes; for
"cleaned" and "deidentified", the file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

import numpy as np

from . import syscall_filter
from .sandbox import abi, confine, remember_roots

log = logging.getLogger(__name__)

#: Study fields carried as JSON (the arrays go as bytes; the client computes the hash again).
FIELDS = ("source_format", "modality", "body_part", "pixel_spacing_mm", "spacing_source", "n_frames", "frame_index",
          "window", "invert", "warnings")
_LEN = struct.Struct(">Q")


def send(sock: socket.socket, data: bytes) -> None:
    sock.sendall(_LEN.pack(len(data)))
    sock.sendall(data)


def recv(sock: socket.socket, limit: int, deadline: float | None = None) -> bytes:
    """One message of at most ``limit`` bytes (ValueError over it, EOFError if the peer stopped), all of it by
    ``deadline`` (``time.monotonic()``; socket.timeout past it) where one is given."""
    (size,) = _LEN.unpack(_exactly(sock, _LEN.size, deadline))
    if size > limit:
        raise ValueError(f"a message of {size} bytes, over {limit}")
    return _exactly(sock, size, deadline)


def _exactly(sock: socket.socket, size: int, deadline: float | None) -> bytes:
    buf, got = bytearray(size), 0
    view = memoryview(buf)
    while got < size:
        if deadline is not None:  # a peer trickling bytes cannot stretch a per-call timeout without end
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("the answer did not arrive in time")
            sock.settimeout(left)
        n = sock.recv_into(view[got:], min(size - got, 1 << 20))
        if n == 0:
            raise EOFError("the peer closed the connection")
        got += n
    return bytes(buf)


def _address_space() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * resource.getpagesize()


#: Longest a child waits for its request (100 MB over a Unix socket takes well under a second).
REQUEST_TIMEOUT_S = 60.0


def _alarm(seconds: float) -> None:
    """End this process in ``seconds`` (SIGALRM's default action ends it wherever it is, C code included)."""
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, max(0.001, seconds))


def _limit(timeout_s: float, memory_mb: float) -> int:
    """Cap this child: killed by SIGALRM at the time limit (SIGXCPU past it in CPU time), and refused memory past
    ``memory_mb`` over what it holds now. Returns what it held (its address space in bytes; 0 if unknown)."""
    _alarm(timeout_s)
    cpu = max(1, math.ceil(timeout_s)) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    try:
        base = _address_space()
        resource.setrlimit(resource.RLIMIT_AS, (base + int(memory_mb * 1024 * 1024),) * 2)
        return base
    except (OSError, ValueError):  # no /proc (not Linux): the time limits still hold
        return 0


def _peak_address_space() -> int:
    with open("/proc/self/status") as fh:
        return next((int(line.split()[1]) * 1024 for line in fh if line.startswith("VmPeak:")), 0)


def _memory_failure(exc: BaseException, base: int, memory_mb: float) -> bool:
    """Whether a failed decode ran out of the memory allowed: a MemoryError anywhere in its chain, or a decoder's
    own failure after the child had used over half of its allowance (OpenJPEG reports a failed allocation as a
    decode error; a sound 8000x8000 JPEG 2000 frame peaks near 390 MB)."""
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, MemoryError):
            return True
        chain = chain.__cause__ or chain.__context__
    return bool(base) and exc.__cause__ is not None and _peak_address_space() - base > memory_mb * 1024 * 1024 / 2


def _answer(sock: socket.socket) -> None:
    """The child's whole job: one request in, one answer out."""
    from ..errors import InputError
    from .clean import clean_in_process
    from .deid import deidentify_with_report
    from .decode import MAX_BYTES, read_bytes, read_file

    _alarm(REQUEST_TIMEOUT_S)  # a peer that sends half a request does not keep a child waiting
    head = json.loads(recv(sock, 1 << 16))
    path = head.get("path")
    data = None if path is not None else recv(sock, MAX_BYTES)
    frame = head.get("frame")
    memory_mb = float(head["memory_mb"])
    base = _limit(float(head["timeout_s"]), memory_mb)
    if sandboxed():  # whether each could was found at the start (``sandbox_check``) and logged by the client
        confine(path)
        syscall_filter.restrict()
    try:
        if head.get("op") == "clean":
            cleaned, ext = clean_in_process(data or b"")
            send(sock, json.dumps(["cleaned", ext]).encode())
            send(sock, cleaned)
            return
        if head.get("op") == "deid":
            result = deidentify_with_report(data or b"")
            send(sock, json.dumps(["deidentified", [result.identity_removed, list(result.warnings)]]).encode())
            send(sock, result.data)
            return
        study = read_file(path, frame) if data is None else read_bytes(data, frame)
    except InputError as exc:
        kind, payload = ("memory", "") if _memory_failure(exc, base, memory_mb) else ("refused", str(exc))
        send(sock, json.dumps([kind, payload]).encode())
        return
    except MemoryError:
        send(sock, json.dumps(["memory", ""]).encode())
        return
    except Exception as exc:  # noqa: BLE001 - the type only goes back (messages may quote values)
        send(sock, json.dumps(["error", type(exc).__name__]).encode())
        return
    meta: dict[str, Any] = {k: getattr(study, k) for k in FIELDS}
    meta["shape"] = list(study.pixels.shape)
    meta["has_values"] = study.values is not None
    send(sock, json.dumps(["ok", meta]).encode())
    send(sock, np.ascontiguousarray(study.pixels, dtype=np.float32).tobytes())
    send(sock, b"" if study.values is None else np.ascontiguousarray(study.values, dtype=np.float32).tobytes())


def sandboxed() -> bool:
    """Whether children are to be confined (``MEDIMG_DECODE_SANDBOX``, on by default; see ``sandbox``)."""
    return os.environ.get("MEDIMG_DECODE_SANDBOX", "1") != "0"


def sandbox_check() -> str:
    """Whether a child can be confined here: "confined" (with the Landlock ABI and whether seccomp applies too), "off",
    or why not; tried in a throwaway child at the start, so that the client can say so once."""
    if not sandboxed():
        return "off"
    version = abi()  # asked here, before any fork: the children inherit the answers
    remember_roots()
    syscall_filter.prepare()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        why, filtered = confine(None), syscall_filter.restrict()
        seccomp = "seccomp: no sockets, no programs" if filtered is None else f"no seccomp: {filtered}"
        os.write(w, (f"{why}; {seccomp}" if why else f"confined (Landlock ABI {version}; {seccomp})").encode()[:500])
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        said = fh.read(500).decode(errors="replace")
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # already reaped (SIGCHLD ignored)
        pass
    return said.replace("\n", " ") or "the check ended without an answer"


def _child(conn: socket.socket) -> None:
    code = 0
    try:
        _answer(conn)
    except BaseException:  # noqa: BLE001 - a child never returns into the server's loop
        code = 1
    finally:
        try:
            conn.close()
        finally:
            os._exit(code)


def serve(path: str) -> None:
    """Warm the decoders, listen on ``path``, and fork a child per connection until stdin closes."""
    from .jail_warm import warm

    warm()

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the app's Ctrl-C stops the app, which closes stdin: then it ends
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sys.stdout.write(f"ready {sandbox_check()}\n")
    sys.stdout.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nobody reads the pipe after this: a decoder's output must not fill it
    stdin = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([listener, stdin], [], [])
        if stdin in ready and not os.read(stdin, 4096):
            return  # the client is gone
        if listener in ready:
            conn, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                _child(conn)
            conn.close()


if __name__ == "__main__":
    serve(sys.argv[1])
