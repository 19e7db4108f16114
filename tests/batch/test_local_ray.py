"""Ray for one machine listens on the loopback interface only: nothing a batch run starts is reachable from the
network (an unauthenticated Ray cluster runs any code sent to it, and holds the scans being scored)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

_LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


def _listening() -> set[tuple[str, str]]:
    """(address as /proc/net writes it, port) of every TCP socket listening on this machine (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                address, port = fields[1].split(":")
                found.add((address, port))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket tables")
def test_local_ray_listens_on_loopback_only(monkeypatch) -> None:
    ray = pytest.importorskip("ray")
    from ray._private import ray_constants

    from medimg_demo.batch.local_ray import LOOPBACK_SWITCH, start_local_ray, stop_local_ray

    monkeypatch.setenv(LOOPBACK_SWITCH, "1")  # restored after: the switch and the constant stay set in the process
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", ray_constants.ENABLE_RAY_CLUSTER)

    if ray.is_initialized():
        ray.shutdown()
    before = _listening()
    shared = Path(tempfile.gettempdir()) / "ray"
    sessions = set(shared.glob("session_*")) if shared.is_dir() else set()
    scratch = start_local_ray(1)
    try:
        assert ray.get(ray.remote(lambda: 1).remote()) == 1  # a worker ran: its servers are listening too
        opened = _listening() - before
        assert list(scratch.glob("session_*/logs")), list(scratch.iterdir())  # Ray's session folder is the run's own
    finally:
        stop_local_ray(scratch)
    assert len(opened) >= 3, opened  # GCS, raylet, workers
    assert {address for address, _ in opened} <= _LOOPBACK, opened
    assert not scratch.exists()  # removed at the stop, worker logs and all
    assert (set(shared.glob("session_*")) if shared.is_dir() else set()) == sessions  # nothing new in /tmp/ray
