"""Confine a decode child before it parses an upload, so that a decoder taken over by a hostile file (a memory bug in
a C codec) finds nothing to take: the decode server starts with the app's secrets left out of its environment
(:func:`server_environment`), and each child, with Linux's Landlock (:func:`confine`), may then

* read files only under the interpreter's and the system's library folders, the ``medimg_demo`` package, its own
  ``/proc/self`` and the one upload it was given: not the feedback store, other uploads, the app's
  ``/proc/<pid>/environ`` or the repository beside the package (whose ``var/`` is the default state folder);
* write, create or remove no file anywhere (its answer goes over the socket it was handed);
* open no TCP connection and bind no TCP port (Landlock ABI 4 and later), and neither signal processes outside
  itself nor reach abstract Unix sockets (ABI 6 and later).

Without Landlock (a kernel before 5.13, or one where it is off; macOS), or where it refuses, the child runs as
before: :func:`confine` says why, and the client logs it once. UDP, pathname Unix sockets and starting programs are
left to seccomp (``syscall_filter``), which the child applies after this. Written on the kernel's interface (three system calls,
two structures): the ``landlock`` package (1.0.0.dev5, alpha) covers file rules only, not the network or scoping.
"""

from __future__ import annotations

import ctypes
import functools
import os
import site
import sys
import sysconfig
from pathlib import Path

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_PR_SET_NO_NEW_PRIVS = 38
_RULE_PATH_BENEATH = 1
_READ_FILE, _READ_DIR = 1 << 2, 1 << 3

#: Environment variables the decode server keeps (besides ``LC_*`` and ``*_NUM_THREADS``, and ``MEDIMG_*`` but for
#: :data:`SECRETS`): what Python, the libraries and the decoders' limits read. HF_TOKEN, OAuth secrets, cloud keys
#: and the like are left out.
KEEP = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "LD_LIBRARY_PATH",
        "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
SECRETS = ("MEDIMG_AUTH", "MEDIMG_AUTH_FILE", "MEDIMG_DB_URL")


def server_environment(environ: dict[str, str] | os._Environ) -> dict[str, str]:
    """The decode server's environment: ``environ`` without what it does not need (secrets among it)."""
    return {k: v for k, v in environ.items()
            if k in KEEP or k.startswith("LC_") or k.endswith("_NUM_THREADS")
            or (k.startswith("MEDIMG_") and k not in SECRETS)}


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    """The C library, as this process has it loaded (no ``find_library``: it runs ``ldconfig``, which a confined
    child may not)."""
    try:
        return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def abi() -> int:
    """The kernel's Landlock ABI version; 0 where there is none (asked once: the decode server asks before it
    forks, so its children know it)."""
    libc = _libc()
    if libc is None:
        return 0
    version = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(0, int(version))


def _fs_rights(version: int) -> int:
    rights = (1 << 13) - 1  # ABI 1: execute ... make_sym
    if version >= 2:
        rights |= 1 << 13  # refer
    if version >= 3:
        rights |= 1 << 14  # truncate
    if version >= 5:
        rights |= 1 << 15  # ioctl on devices
    return rights


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _private() -> list[Path]:
    from ..paths import private_paths, upload_dir

    return [p.resolve() for p in (*private_paths(), upload_dir())]


def readable_roots() -> list[str]:
    """Folders (and files) a confined child may read beneath: the interpreter's, the installed packages', the
    system's libraries, and this package; none that holds, or lies in, a private folder of the app (the state
    folder, whose default is the repository's ``var/``; the upload folder). Worked out anew on each call (2 ms):
    the decode server keeps its answer (:func:`remember_roots`) for its children."""
    paths = set(sysconfig.get_paths().values()) | {sys.prefix, sys.base_prefix, sys.exec_prefix}
    paths |= set(site.getsitepackages()) | {site.getusersitepackages()}
    paths |= {str(Path(__file__).resolve().parents[1]), "/usr", "/lib", "/lib32", "/lib64", "/etc/ld.so.cache",
              "/dev/null", "/dev/urandom"}
    private = _private()

    def allowed(path: str) -> bool:
        real = Path(path).resolve()
        return not any(p == real or real in p.parents or p in real.parents for p in private)

    return sorted(p for p in paths if p and os.path.exists(p) and allowed(p))


_ROOTS: list[str] = []


def remember_roots() -> list[str]:
    """Work out :func:`readable_roots` once, in the decode server before it forks: its children use this answer."""
    _ROOTS[:] = readable_roots()
    return list(_ROOTS)


def confine(upload: str | None = None) -> str | None:
    """Confine this process (a decode child) as the module says, with ``upload`` (a file path) readable too; for
    good, and its children with it. None when done; else why not (nothing was changed)."""
    version = abi()
    if version < 1:
        return "Landlock is not available on this system"
    libc = _libc()
    assert libc is not None
    attr = _RulesetAttr(_fs_rights(version), 0b11 if version >= 4 else 0, 0b11 if version >= 6 else 0)
    size = ctypes.sizeof(ctypes.c_uint64) * (1 if version < 4 else 2 if version < 6 else 3)
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return f"Landlock refused the rules ({os.strerror(ctypes.get_errno())})"
    try:
        rules = [(p, _READ_FILE | (_READ_DIR if os.path.isdir(p) else 0)) for p in (_ROOTS or readable_roots())]
        rules.append((f"/proc/{os.getpid()}", _READ_FILE | _READ_DIR))  # its own limits and peak memory only
        if upload:
            rules.append((upload, _READ_FILE))
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # gone since: nothing to allow
            try:
                rule = _PathBeneath(rights, fd)
                if libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)) < 0:
                    return f"Landlock refused a rule ({os.strerror(ctypes.get_errno())})"
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return f"no_new_privs was refused ({os.strerror(ctypes.get_errno())})"
        if libc.syscall(_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) < 0:
            return f"Landlock could not be enforced ({os.strerror(ctypes.get_errno())})"
        return None
    finally:
        os.close(ruleset)
