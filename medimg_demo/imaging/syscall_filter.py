"""Deny a decode child the system calls no decoder needs, with seccomp (through libseccomp, by ``pyseccomp``).

Landlock (``sandbox``) keeps a confined child from files, TCP and signals, but not from UDP, pathname Unix sockets
(the local PostgreSQL server's, say) or starting another program. A decoder taken over by a hostile file could have
sent what it could read, or the pixels of the upload it holds, over UDP. After :func:`restrict` a child can create no
socket of any kind and start no program: ``socket``, ``socketpair``, ``execve`` and ``execveat`` fail with EPERM.
It keeps the socket it was handed (its answer goes back over it). This works where Landlock does not (a kernel before
5.13, or one with Landlock off), on any Linux with seccomp (3.5 and later) and libseccomp.

:func:`prepare` loads libseccomp and builds the filter in the decode server, before it forks (finding the library runs
``ldconfig``, and building and loading in each child took 1 ms); a child only loads it (0.13 ms).
"""

from __future__ import annotations

import errno
from typing import Any

#: What a decode child may not do (each fails with EPERM): open a socket, start a program.
DENIED = ("socket", "socketpair", "execve", "execveat")

_filter: Any = None  # built by prepare() in the decode server; the children inherit it
_why_not = "not prepared (syscall_filter.prepare runs in the decode server)"


def prepare() -> str | None:
    """Load libseccomp and build the filter (in the decode server, before any fork); None when ready, else why not."""
    global _filter, _why_not
    try:
        import pyseccomp as seccomp

        rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        for name in DENIED:
            rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
    except (ImportError, OSError, RuntimeError, AttributeError, ValueError) as exc:  # no package or libseccomp (macOS)
        _filter, _why_not = None, f"seccomp is not available here ({type(exc).__name__}: {exc})"
        return _why_not
    _filter, _why_not = rules, ""
    return None


def restrict() -> str | None:
    """Deny this process (a decode child) the :data:`DENIED` calls, for good, its children too; None when done,
    else why not (nothing was changed)."""
    if _filter is None:
        return _why_not
    try:
        _filter.load()
        return None
    except (OSError, RuntimeError, ValueError) as exc:
        return f"seccomp refused the filter ({type(exc).__name__}: {exc})"
