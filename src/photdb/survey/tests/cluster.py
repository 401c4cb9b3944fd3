"""Helpers for the distributed tests: a real Dask scheduler and workers as separate
processes, ``photdb`` commands against one test database, and a test hook.

Importable by the workers (``photdb.survey.tests.cluster``), so the hook below
travels to them by reference.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dask(*args: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "dask", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@contextlib.contextmanager
def dask_cluster(folder: Path, n_workers: int = 2) -> Iterator[str]:
    """``dask scheduler`` and ``n_workers`` x ``dask worker`` (one thread each), as
    separate processes; yields the scheduler's address once every worker is connected."""
    from distributed import Client

    folder.mkdir(parents=True, exist_ok=True)
    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rsplit(":", 1)[1]
    log = folder / "dask.log"
    procs = [_dask("scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard",
                   log=log)]  # fmt: skip
    try:
        for k in range(n_workers):
            procs.append(_dask("worker", address, "--name", f"w{k}", "--nthreads", "1",
                               "--no-dashboard", "--local-directory", str(folder / f"w{k}"),
                               log=log))  # fmt: skip
        with Client(address, timeout="60s", set_as_default=False) as client:
            client.wait_for_workers(n_workers, timeout=120)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def cli_env(settings) -> dict[str, str]:
    """The environment of a ``photdb`` command using the test session's database ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    env.update(DB_NAME=settings.dbname, COLUMNS="200", NO_COLOR="1")
    return env


def photdb(env: dict[str, str], *args: object) -> subprocess.Popen:
    """Start ``photdb ARGS`` (output captured as text)."""
    return subprocess.Popen([sys.executable, "-m", "photdb", *map(str, args)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


class HoldOnce:
    """A ``Hooks.after_claim`` that, the first time it sees image ``victim`` anywhere,
    writes its process id to ``marker`` and sleeps ``seconds`` (the test kills it there)."""

    def __init__(self, victim: int, marker: str, seconds: float = 600.0):
        self.victim, self.marker, self.seconds = victim, marker, seconds

    def __call__(self, galimage_id: int) -> None:
        if galimage_id != self.victim:
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # held once already: compute normally
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        time.sleep(self.seconds)
