"""Ray for one machine: started in-process with every server it opens listening on the loopback interface only.

On Linux, Ray takes the node's address from its primary network interface, and its GCS, raylet, object manager and
workers listen on all interfaces: an unauthenticated cluster that anyone on the hospital network could run code on,
or read scans from, while a batch runs. ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (Ray's switch for single-machine
use) makes the node's address 127.0.0.1, and every server then binds there.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

#: Ray's switch: with "0" a node's address is 127.0.0.1 (read when ``ray`` is imported, and by each Ray process).
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def start_local_ray(num_cpus: int) -> None:
    """``ray.init`` for this machine alone: no dashboard, no driver log forwarding, loopback only."""
    os.environ[LOOPBACK_SWITCH] = "0"  # before ``ray`` is imported; inherited by the processes Ray starts
    import ray
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # ``ray`` may have been imported before the switch was set
    # address "local": a new cluster, never one RAY_ADDRESS or a running `ray start` names (it may listen anywhere)
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    log.info("Ray started on this machine (loopback only, %d CPUs)", num_cpus)
