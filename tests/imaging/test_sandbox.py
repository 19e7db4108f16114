"""A decode child confined with Landlock reads its upload and the libraries, and nothing else of the app's: not the
feedback store, not the app's environment, no file written, no TCP connection, no signal to the app; the decode
server starts without the app's secrets in its environment."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from medimg_demo.imaging import isolated, sandbox, syscall_filter
from medimg_demo.paths import private_paths


def _in_confined_child(upload: Path, probes: dict) -> dict:
    """Run ``probes`` (name -> callable) in a forked child after :func:`sandbox.confine`; each one's outcome."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        res: dict[str, str | None] = {"confine": sandbox.confine(str(upload)), "filter": syscall_filter.restrict()}
        for name, probe in probes.items():
            try:
                probe()
                res[name] = "allowed"
            except OSError as exc:
                res[name] = type(exc).__name__
        os.write(w, json.dumps(res).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        said = fh.read()
    os.waitpid(pid, 0)
    return json.loads(said)


@pytest.mark.skipif(sandbox.abi() < 1, reason="no Landlock on this system")
def test_a_confined_child_reads_its_upload_and_the_libraries_and_nothing_else_of_the_apps(tmp_path: Path) -> None:
    upload, store = tmp_path / "scan.png", tmp_path / "feedback.sqlite"
    upload.write_bytes(b"the upload")
    store.write_bytes(b"every reader's answers")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    app = os.getpid()
    local = socket.socket(socket.AF_UNIX)  # a pathname Unix socket, as the local PostgreSQL server's
    local.bind(str(tmp_path / "pg.sock"))
    local.listen(1)
    syscall_filter.prepare()  # as the decode server does before it forks
    with listener, local:
        got = _in_confined_child(upload, {
            "its upload": lambda: upload.read_bytes(),
            "a module not yet imported": lambda: __import__("xml.dom.minidom"),
            "its own limits": lambda: Path("/proc/self/status").read_text(),
            "the feedback store": lambda: store.read_bytes(),
            "the app's environment": lambda: Path(f"/proc/{app}/environ").read_bytes(),
            "a new file": lambda: (tmp_path / "out.txt").write_text("x"),
            "the upload, overwritten": lambda: upload.write_bytes(b"x"),
            "the folder listed": lambda: os.listdir(tmp_path),
            "a TCP connection": lambda: socket.create_connection(("127.0.0.1", port), timeout=2).close(),
            "a signal to the app": lambda: os.kill(app, 0),
            # Landlock's network rules are TCP only; seccomp (syscall_filter) denies every socket and program
            "a UDP datagram out": lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", port)),
            "a Unix socket": lambda: socket.socket(socket.AF_UNIX).connect(str(tmp_path / "pg.sock")),
            "a socket pair": lambda: socket.socketpair(),
            "a program started": lambda: os.execv("/bin/true", ["true"]),
        })
    assert got.pop("confine") is None
    filtered = got.pop("filter") is None
    allowed = {"its upload", "a module not yet imported", "its own limits"}
    if sandbox.abi() < 4:  # TCP rules came with ABI 4, scoping (signals) with ABI 6
        allowed.add("a TCP connection")
    if sandbox.abi() < 6:
        allowed.add("a signal to the app")
    if not filtered:  # no libseccomp here: what Landlock alone leaves
        allowed |= {"a UDP datagram out", "a Unix socket", "a socket pair"}
    assert {k for k, v in got.items() if v == "allowed"} == allowed, got
    assert filtered or syscall_filter._filter is None, "libseccomp is here, yet the filter was not loaded"
    assert upload.read_bytes() == b"the upload"


def test_no_readable_folder_holds_or_lies_in_a_private_folder_of_the_app(tmp_path: Path, monkeypatch) -> None:
    repo = Path(sandbox.__file__).resolve().parents[2]
    roots = [Path(p).resolve() for p in sandbox.readable_roots()]
    assert Path(sandbox.__file__).resolve().parent.parent in roots  # the package
    assert repo not in roots  # not the repository around it (its var/ is the default state folder)
    for private in private_paths():
        for root in roots:
            assert not (root == private.resolve() or root in private.resolve().parents), (root, private)
    # a state folder inside the installed packages' folder (an odd layout): that folder is left out, not the store let in
    site = next(r for r in roots if r.name == "site-packages")
    monkeypatch.setenv("MEDIMG_STATE_DIR", str(site / "medimg-state"))
    assert str(site) not in sandbox.readable_roots()


def test_the_decode_server_starts_without_the_apps_secrets(monkeypatch) -> None:
    if not isolated.enabled() or not Path("/proc/self/environ").exists():
        pytest.skip("no decode server, or no /proc, here")
    monkeypatch.setenv("MEDIMG_AUTH", "alice01:pw-alice-1")
    monkeypatch.setenv("MEDIMG_DB_URL", "postgresql://medimg:pw-db@localhost/medimg")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("OAUTH_CLIENT_SECRET", "oauth-secret")
    monkeypatch.setenv("MEDIMG_DECODE_TIMEOUT_S", "29")
    proc, folder, _ = isolated._launch()
    try:
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        names = {e.split(b"=", 1)[0].decode() for e in environ if e}
        assert not names & {"MEDIMG_AUTH", "MEDIMG_DB_URL", "HF_TOKEN", "OAUTH_CLIENT_SECRET"}
        assert {"MEDIMG_DECODE_TIMEOUT_S", "PATH", "PYTHONPATH"} <= names
        assert not any(b"pw-" in e or b"secret" in e for e in environ)
        if sandbox.abi() >= 1:
            assert isolated._server["sandbox"].startswith("confined (Landlock ABI")
        if syscall_filter.prepare() is None:  # libseccomp here: the server's children are filtered too
            assert "seccomp: no sockets, no programs" in isolated._server["sandbox"]
    finally:
        proc.kill()
        proc.wait()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
