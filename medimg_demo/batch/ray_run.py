"""A listing scored on Ray Data: one actor pool, each batch handed back as it arrives, and bounded retries.

Ray Data restarts an actor that dies and retries its task without end by default. Locally, the decode marks
(:mod:`.quarantine`) take a file that crashes its decoder out after :data:`~.quarantine.STOPS` attempts, so a task
is retried that many times per file in it (a task holds up to two batches: Ray Data joins blocks until it has a
batch's worth) and twice more, at most :data:`LOCAL_RETRIES` times; on a cluster, where the marks are not shared,
:data:`CLUSTER_RETRIES` times. A task that still fails ends the run with a message: the batches already written
are kept, and the next run resumes after them (and the marks with them). Ctrl-C puts back the counts of the files
the actors were decoding before they are stopped.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

import pandas as pd

from ..errors import MedimgError
from .local_ray import start_local_ray, stop_local_ray
from .quarantine import STOPS, forget_interrupted

log = logging.getLogger(__name__)

#: Retries of a batch whose actor died, on a cluster (a node lost, a file that crashes its decoder).
CLUSTER_RETRIES = 3
#: Most retries of a task locally, whatever the batch size.
LOCAL_RETRIES = 20


class RunStopped(MedimgError):
    """A batch kept stopping the process scoring it; what was written before is kept."""


def retries(batch_size: int, local: bool) -> int:
    """How often a task (up to two batches) is retried after its actor died: locally enough for every file of it
    to stop its process :data:`~.quarantine.STOPS` times, at most :data:`LOCAL_RETRIES` (each retry loads the
    model again; the marks outlive the run, so the next run goes on from there)."""
    return min(STOPS * 2 * batch_size + 2, LOCAL_RETRIES) if local else CLUSTER_RETRIES


def run_on_ray(listing: pd.DataFrame, actor: type, kwargs: dict[str, Any], on_frame: Callable[[pd.DataFrame], None],
               address: str | None, concurrency: int, batch_size: int) -> None:
    """Score ``listing`` (paths, not bytes: each actor reads its batch's files itself) with a pool of ``actor``
    (built with ``kwargs``), handing each scored frame to ``on_frame`` as it arrives."""
    import ray

    started, scratch = not ray.is_initialized(), None
    if started and address:
        ray.init(address=address, log_to_driver=False)
    elif started:  # local, in-process: nothing to install or start by hand, nothing listening beyond this host
        scratch = start_local_ray(os.cpu_count() or 1)
    try:
        # from_items: about 1.5 s less start-up here than from_pandas, whose blocks are converted on the driver
        blocks = max(1, -(-len(listing) // batch_size))
        concurrency = min(concurrency, blocks)  # no idle actor for a small folder
        ds = ray.data.from_items(listing.to_dict("records"), override_num_blocks=blocks)
        with warnings.catch_warnings():  # Ray 2.60 takes the retries only among its deprecated ray_remote_args
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*is deprecated", category=DeprecationWarning)
            ds = ds.map_batches(actor, fn_constructor_kwargs=kwargs, batch_size=batch_size, batch_format="pandas",
                                compute=ray.data.ActorPoolStrategy(size=concurrency), num_cpus=1,
                                max_task_retries=retries(batch_size, local=kwargs.get("marks") is not None))
        try:
            for frame in ds.iter_batches(batch_size=None, batch_format="pandas"):
                on_frame(frame)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                ray.exceptions.OutOfMemoryError) as exc:  # the retries ran out: say so, not Ray's traceback alone
            log.debug("Ray's error", exc_info=exc)
            raise RunStopped(
                "A batch of files kept stopping the process scoring it (a crash, or the machine's memory ran out), "
                "so the run was ended. The batches written before are kept: run the command again to resume; if it "
                "stops again, try --no-ray or a smaller --batch-size.") from exc
        except KeyboardInterrupt:  # before the actors are stopped: the files they are decoding crashed nothing
            if kwargs.get("marks"):
                forget_interrupted(kwargs["marks"])
            raise
    finally:
        if scratch is not None:
            stop_local_ray(scratch)
        elif started:
            ray.shutdown()
