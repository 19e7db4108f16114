"""Ray for one machine: started in-process with every server it opens listening on the loopback interface only.

On Linux, Ray takes the node's address from its primary network interface, and its GCS, raylet, object manager and
workers listen on all interfaces: an unauthenticated cluster that anyone on the hospital network could run code on,
or read scans from, while a batch runs. ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (Ray's switch for single-machine
use) makes the node's address 127.0.0.1, and every server then binds there.

Ray's session folder (its workers' logs, sockets, spilled objects) goes in a temporary folder of the run's own,
removed when the run stops (:func:`stop_local_ray`): under ``/tmp/ray`` a new one of about 300 KB had stayed behind
after every batch run, with worker logs that would quote what a failing worker printed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

#: Ray's switch: with "0" a node's address is 127.0.0.1 (read when ``ray`` is imported, and by each Ray process).
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def start_local_ray(num_cpus: int) -> Path:
    """``ray.init`` for this machine alone: no dashboard, no driver log forwarding, loopback only, its session
    folder in a new temporary folder, which it returns (give it to :func:`stop_local_ray`)."""
    os.environ[LOOPBACK_SWITCH] = "0"  # before ``ray`` is imported; inherited by the processes Ray starts
    import ray
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # ``ray`` may have been imported before the switch was set
    # where Ray itself would put its folder (RAY_TMPDIR, else /tmp on Linux and macOS, whose per-user temporary
    # folder is too long a path for Ray's sockets, 107 bytes at most)
    scratch = Path(tempfile.mkdtemp(prefix="medimg-ray-", dir=_ray_system_temp_dir()))
    try:
        # address "local": a new cluster, never one RAY_ADDRESS or a running `ray start` names (it may listen
        # anywhere)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 _temp_dir=str(scratch))
    except BaseException:
        stop_local_ray(scratch)  # whatever it had started, and its folder
        raise
    log.info("Ray started on this machine (loopback only, %d CPUs)", num_cpus)
    return scratch


def stop_local_ray(scratch: Path) -> None:
    """Stop the Ray that :func:`start_local_ray` started, and remove its session folder."""
    import ray

    try:
        ray.shutdown()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if scratch.exists():  # a worker still exiting wrote into it: say where it is
            log.warning("Ray's session folder %s could not be removed entirely; remove it by hand", scratch)


def _ray_system_temp_dir() -> str | None:
    """The folder Ray puts its own session folders under (None: Python's temporary folder)."""
    try:
        from ray._common.utils import get_default_system_temp_dir

        return str(get_default_system_temp_dir())
    except (ImportError, AttributeError):  # another Ray version: Python's choice
        return None
