"""Where images are computed: in this process, on a local Dask cluster, or on any Dask cluster.

``jobs == 1``: in this process. ``jobs > 1``: a :class:`distributed.LocalCluster`
of ``jobs`` worker processes with one thread and one BLAS thread each.
``scheduler``: the workers of an existing Dask scheduler (started by hand with
``dask scheduler`` / ``dask worker``, by dask-jobqueue on SLURM or PBS, or by
dask-mpi), given as its address or its scheduler file. Dask only runs the
tasks; the database decides who computes what (:mod:`photdb.survey.claims`):
:func:`drive` submits every image, and resubmits those another claimant held
once their lease has expired, until each is finished by someone.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from photdb.db.connection import connect
from photdb.errors import PhotdbError
from photdb.settings import Settings
from photdb.survey import claims

__all__ = ["BLAS_ENV", "Engine", "claimant", "drive", "open_engine"]

#: One BLAS/OpenMP thread per worker process (each worker computes one image at a time).
BLAS_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class Engine(Protocol):
    """Runs ``fn(task, **kw)`` for each task; yields ``(task, result or exception)``."""

    def map(
        self, fn: Callable, tasks: Sequence[Any], **kw: Any
    ) -> Iterator[tuple[Any, Any]]: ...  # pragma: no cover


class _Serial:
    def map(self, fn, tasks, **kw):
        for t in tasks:
            yield t, fn(t, **kw)


class _Dask:
    def __init__(self, client: Any):
        self.client = client

    def map(self, fn, tasks, **kw):
        from distributed import as_completed

        futures = self.client.map(fn, list(tasks), pure=False, **kw)
        by_key = {f.key: t for f, t in zip(futures, tasks, strict=True)}
        with self.client.as_current():
            done = as_completed(futures)
        for fut in done:
            try:
                res = fut.result()
            except Exception as exc:  # the worker died (KilledWorker) or could not run it
                res = exc
            fut.release()
            yield by_key[fut.key], res


def _client(scheduler: str) -> Any:
    from distributed import Client

    if "://" not in scheduler and not Path(scheduler).is_file():
        raise PhotdbError(
            f"--scheduler {scheduler}: neither an address (tcp://host:8786) nor a scheduler file"
        )
    try:
        if Path(scheduler).is_file():  # a scheduler file (dask scheduler --scheduler-file)
            return Client(scheduler_file=scheduler, timeout="20s", set_as_default=False)
        return Client(scheduler, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise PhotdbError(f"--scheduler {scheduler}: cannot connect: {msg}") from None


@contextlib.contextmanager
def open_engine(jobs: int = 1, scheduler: str | None = None) -> Iterator[Engine]:
    """The engine for ``jobs`` local workers, or for the workers of ``scheduler``.

    Parameters
    ----------
    jobs : int
        1: this process; more: a local Dask cluster of that many worker
        processes (one thread each, ``OMP/OPENBLAS/MKL_NUM_THREADS=1``).
    scheduler : str, optional
        Address (``tcp://host:8786``) or scheduler file of a running Dask
        scheduler; its workers compute (``jobs`` is then ignored).
    """
    if scheduler:
        client = _client(scheduler)
        try:
            yield _Dask(client)
        finally:
            client.close()
        return
    if jobs <= 1:
        yield _Serial()
        return
    import dask
    from distributed import Client, LocalCluster

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {})) | BLAS_ENV
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        # the dashboard (or, without bokeh, the scheduler's HTTP server) on any free port:
        # 8787 may be taken by another cluster on a shared machine
        LocalCluster(
            n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,  # fmt: skip
        Client(cluster, set_as_default=False) as client,
    ):
        yield _Dask(client)


def claimant() -> str:
    """``host:pid``, and ``/worker-name`` inside a Dask worker: who claims an image."""
    name = f"{socket.gethostname()}:{os.getpid()}"
    try:
        from distributed import get_worker

        return f"{name}/{get_worker().name}"
    except (ImportError, ValueError):
        return name


def drive(
    engine: Engine,
    fn: Callable,
    tasks: Sequence[Any],
    *,
    settings: Settings,
    policy: claims.ClaimPolicy,
    on_result: Callable[[Any, Any], None],
    **kw: Any,
) -> None:
    """Run ``fn(task, settings=, policy=, **kw)`` until every task's image is finished.

    ``fn`` returns an outcome whose ``status`` is ``"busy"`` when another
    claimant holds the image. Those, and tasks whose worker died, are looked
    at again in the database: finished by someone else -> ``on_result(task,
    claims.ImageState)``; lease expired -> submitted again. Every other result
    goes to ``on_result(task, result)``; a task whose worker keeps dying
    before it could claim is given up with ``on_result(task, exception)``.
    """
    pending = {t.galimage_id: t for t in tasks}
    todo = list(tasks)
    deaths: dict[int, int] = {}
    poll = min(max(policy.lease_s / 6, 0.2), 5.0)
    while todo:
        for task, res in engine.map(fn, todo, settings=settings, policy=policy, **kw):
            gid = task.galimage_id
            if isinstance(res, BaseException):
                deaths[gid] = deaths.get(gid, 0) + 1
                if deaths[gid] <= policy.max_attempts:
                    continue  # its claim (if any) expires; looked at again below
            elif getattr(res, "status", None) == "busy":
                continue
            on_result(pending.pop(gid), res)
        todo = []
        while pending and not todo:
            with connect("writer", settings) as conn:
                states = claims.image_states(conn, list(pending), policy)
            for st in states:
                if st.status not in policy.states or st.finished_recently:
                    on_result(pending.pop(st.galimage_id), st)
                elif not st.live:  # nobody holds it (any more): submit it again
                    todo.append(pending[st.galimage_id])
            if pending and not todo:
                time.sleep(poll)
