"""Files of ``$PHOTDB_HOME``: the creation lock, private files, the generated credentials.

The lowest layer of :mod:`photdb.db`: it imports nothing else from it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from photdb.errors import DatabaseError

__all__ = ["ensure_credentials", "home_lock", "read_credentials", "write_private"]


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 600) atomically: readers see the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def home_lock(home: Path, *, timeout: float = 600.0) -> Iterator[None]:
    """Hold ``home/.lock`` (``flock``) while creating or starting the embedded cluster.

    The kernel drops the lock when its holder exits, however it exits; the file
    descriptor is not inherited by child processes.
    """
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DatabaseError(
                        f"waited {timeout:.0f} s for another photdb process to finish "
                        f"creating or starting the embedded cluster in {home}"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_credentials(path: Path) -> dict[str, str]:
    """``role=password`` lines of ``path`` (empty when there is no file)."""
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def ensure_credentials(path: Path, roles: Iterable[str]) -> dict[str, str]:
    """The passwords of ``roles`` in ``path``, generated (mode 600, atomically) if missing."""
    roles = tuple(roles)
    creds = read_credentials(path)
    if all(creds.get(k) for k in roles):
        return creds
    creds = {role: secrets.token_urlsafe(24) for role in roles}
    text = "# photdb embedded cluster role passwords; keep private\n"
    text += "".join(f"{k}={v}\n" for k, v in creds.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, text)
    return creds
