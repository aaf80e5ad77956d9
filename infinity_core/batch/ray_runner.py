"""The batch job on a Ray cluster: device batches spread over a pool of Ray actors.

Each actor is a `RowRenderer`: it loads the models once and takes one GPU where the cluster has GPUs, CPU
cores otherwise. The actors send back pixels; this process (the driver) encodes, writes and records every
image exactly as `run_local` does, so the folder and the manifest do not tell a Ray run from a local one.

A worker that dies is restarted by Ray (it loads the models again) and its batch retried; a batch whose
worker cannot be brought back goes to another one. Ray is imported here only: `pip install ".[ray]"`.

The engine's code is sent to the workers with the job (Ray's `py_modules`), so every worker runs the
driver's own version of it; torch and the other packages, and the model files at the same paths, must be
on every node.
"""
from __future__ import annotations

import collections
import logging
from pathlib import Path
from typing import Sequence

from ..errors import InfinityError
from ..model_files import ModelFiles
from .render import RowRenderer
from .rows import BatchRow
from .runner import FailedBatch, ImageWriter

log = logging.getLogger(__name__)

ENGINE_FOLDER = Path(__file__).resolve().parents[1]     # infinity_core/
LOCAL = "local"                 # --ray without an address: a Ray instance of this machine's own
IN_FLIGHT_PER_WORKER = 2        # one batch drawing, one waiting, so a worker never idles on the driver
RESTARTS = 3                    # per worker; and tries per batch


def import_ray():
    try:
        import ray
    except ImportError:
        raise InfinityError("--ray needs Ray: pip install \"infinity-bitwise[ray]\" (or pip install ray)") from None
    return ray


def connect(ray, address: str) -> bool:
    """Join the cluster at `address` (LOCAL: start one on this machine) with the engine's code for the
    workers, unless this process already is; True when it joined here (and so leaves at the end)."""
    if ray.is_initialized():
        return False
    ray.init(address=None if address == LOCAL else address, runtime_env={"py_modules": [str(ENGINE_FOLDER)]},
             logging_level=logging.WARNING, configure_logging=False)
    return True


def worker_options(resources: dict, workers: int | None) -> tuple[int, dict, int | None]:
    """(how many workers, their Ray resource options, torch threads each) for the cluster's resources:
    one worker per GPU, each with one GPU; without GPUs, `workers` (default 1) sharing the CPU cores."""
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    if gpus:
        return workers or gpus, {"num_gpus": 1, "num_cpus": 1}, None
    count = workers or 1
    per_worker = max(1, cpus // count)
    return count, {"num_cpus": per_worker}, per_worker


def run_on_ray(batches: Sequence[Sequence[BatchRow]], models: ModelFiles, writer: ImageWriter, *,
               address: str, workers: int | None) -> list[FailedBatch]:
    ray = import_ray()
    started_here = connect(ray, address)
    try:
        count, options, threads = worker_options(ray.cluster_resources(), workers)
        log.info("ray: %d worker(s), each with %s", count, options)
        worker_class = ray.remote(RowRenderer).options(max_restarts=RESTARTS, max_task_retries=RESTARTS, **options)
        pool = [worker_class.remote(models, None, threads) for _ in range(count)]
        return _drive(ray, pool, batches, writer)
    finally:
        if started_here:
            ray.shutdown()


def _drive(ray, pool: list, batches: Sequence[Sequence[BatchRow]], writer: ImageWriter) -> list[FailedBatch]:
    """Keep every live worker busy until each batch is written, failed, or out of workers."""
    from ray.exceptions import RayActorError, RayTaskError

    queue = collections.deque((tuple(batch), 1) for batch in batches)
    pending: dict = {}              # result ref -> (worker, batch, try)
    failed: list[FailedBatch] = []

    def feed(worker) -> None:
        while queue and sum(1 for w, _, _ in pending.values() if w is worker) < IN_FLIGHT_PER_WORKER:
            batch, attempt = queue.popleft()
            pending[worker.render.remote(list(batch))] = (worker, batch, attempt)

    for worker in pool:
        feed(worker)
    while pending:
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        worker, batch, attempt = pending.pop(ref)
        try:
            images = ray.get(ref)
        except RayTaskError as err:             # the engine refused the batch: report it, go on
            cause = err.cause if isinstance(err.cause, Exception) else err
            log.error("error: rows at lines %s: %s", ", ".join(str(row.line) for row in batch), cause)
            failed.append(FailedBatch(batch, str(cause)))
        except RayActorError as err:            # the worker is gone for good (Ray's restarts used up)
            if worker in pool:
                pool.remove(worker)
                log.warning("ray: a worker stopped (%s); %d left", type(err).__name__, len(pool))
            if attempt >= RESTARTS or not pool:
                failed.append(FailedBatch(batch, f"its worker stopped {attempt} time(s): {err}"))
            else:
                queue.appendleft((batch, attempt + 1))
        else:
            for row, pixels in zip(batch, images):
                writer.write(row, pixels)
        for live in pool:
            feed(live)
    if queue:       # no worker left for them
        failed.extend(FailedBatch(batch, "no Ray worker left") for batch, _ in queue)
    return failed
