"""PostgreSQL server binaries and ports: finding them, running them as ``postgres``.

Part of the lowest layer of :mod:`photdb.db` (imports nothing else from it).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

from photdb.errors import DatabaseError

__all__ = [
    "SYSTEM_USER",
    "as_root",
    "find_bindir",
    "free_port",
    "last_line",
    "port_is_listening",
    "port_taken",
    "postgres_can_reach",
    "run_as_server_user",
    "server_environment",
]

SYSTEM_USER = "postgres"


def find_bindir() -> Path:
    """Return the directory holding ``initdb`` and ``pg_ctl`` (PostgreSQL 15 preferred).

    ``$PHOTDB_PG_BINDIR`` overrides the search.
    """
    env = os.environ.get("PHOTDB_PG_BINDIR")
    candidates = [env] if env else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    candidates += [str(Path(p).parent) for p in [shutil.which("pg_ctl")] if p]
    for cand in candidates:
        if cand and (Path(cand) / "pg_ctl").exists() and (Path(cand) / "initdb").exists():
            return Path(cand)
    raise DatabaseError(
        "PostgreSQL server binaries not found (initdb, pg_ctl); install postgresql-15 "
        "or set PHOTDB_PG_BINDIR"
    )


def as_root() -> bool:
    return os.geteuid() == 0


def server_environment() -> dict[str, str]:
    """The environment server binaries run with: nothing but path, locale and time zone."""
    env = {"PATH": os.environ.get("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin"}
    env.update(LANG="C.UTF-8", LC_ALL="C.UTF-8")
    if os.environ.get("TZ"):
        env["TZ"] = os.environ["TZ"]
    return env


def run_as_server_user(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    if as_root():
        cmd = ["runuser", "-u", SYSTEM_USER, "--", *cmd]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=server_environment(), cwd="/", **kw
    )


def postgres_can_reach(path: Path) -> bool:
    """True if the ``postgres`` user can traverse every parent of ``path``."""
    pw = pwd.getpwnam(SYSTEM_USER)
    for parent in [path, *path.parents]:
        if not parent.exists():
            continue
        st = parent.stat()
        if st.st_uid == pw.pw_uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == pw.pw_gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return False
    return True


def port_taken(port: int, datadir: Path) -> str:
    return (
        f"port {port} of the embedded PostgreSQL ({datadir}) is taken by another program; "
        "stop that program, or move the cluster: photdb db start --port N"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""
