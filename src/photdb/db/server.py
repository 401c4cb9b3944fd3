"""The embedded default: a private PostgreSQL 15 cluster under ``$PHOTDB_HOME``.

Layout::

    $PHOTDB_HOME/
      credentials.env   generated passwords of the three roles (mode 600)
      pgpass            libpq password file, used by ``photdb db url``
      pg/ -> data/      the cluster (PGDATA)
             run/       its Unix socket (mode 700)
             server.log

PostgreSQL refuses to run as root. When photdb runs as root the server binaries
run as the ``postgres`` system user (``runuser -u postgres --``) and the
cluster directory belongs to it; if ``postgres`` cannot reach ``$PHOTDB_HOME``
(e.g. under ``/root``) the cluster lives in ``/var/lib/photdb/<id>`` and
``$PHOTDB_HOME/pg`` is a symbolic link to it.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from photdb.errors import DatabaseError

SUPERUSER = "postgres"
SYSTEM_USER = "postgres"


@dataclass(frozen=True)
class ServerStatus:
    """What ``photdb db status`` reports."""

    initialised: bool
    running: bool
    port: int | None
    datadir: Path
    pid: int | None = None


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


def _as_root() -> bool:
    return os.geteuid() == 0


def _run_as_server_user(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    if _as_root():
        cmd = ["runuser", "-u", SYSTEM_USER, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def _postgres_can_reach(path: Path) -> bool:
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


class EmbeddedServer:
    """Start, stop and inspect the private cluster of one ``$PHOTDB_HOME``.

    Parameters
    ----------
    home : Path
        ``$PHOTDB_HOME``.
    fast : bool
        Turn off fsync (for throw-away test clusters only).
    """

    def __init__(self, home: Path, *, fast: bool = False):
        self.home = Path(home).absolute()
        self.fast = fast
        self.bindir = find_bindir()

    # -- paths -------------------------------------------------------------------
    @property
    def pgdir(self) -> Path:
        return self.home / "pg"

    @property
    def datadir(self) -> Path:
        # resolved: the postgres user may not be able to follow a link under $PHOTDB_HOME
        return self.pgdir.resolve() / "data"

    @property
    def rundir(self) -> Path:
        return self.pgdir.resolve() / "run"

    @property
    def logfile(self) -> Path:
        return self.pgdir.resolve() / "server.log"

    @property
    def credentials_file(self) -> Path:
        return self.home / "credentials.env"

    @property
    def pgpass_file(self) -> Path:
        return self.home / "pgpass"

    # -- state ---------------------------------------------------------------------
    def is_initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def port(self) -> int | None:
        conf = self.datadir / "postgresql.auto.conf"
        if not conf.exists():
            return None
        for line in conf.read_text().splitlines():
            if line.strip().startswith("port"):
                return int(line.split("=", 1)[1].strip().strip("'"))
        return None

    def status(self) -> ServerStatus:
        if not self.is_initialised():
            return ServerStatus(False, False, None, self.datadir)
        res = self._pg_ctl("status")
        pid = None
        pidfile = self.datadir / "postmaster.pid"
        if res.returncode == 0 and pidfile.exists():
            try:
                pid = int(pidfile.read_text().split()[0])
            except (ValueError, IndexError, OSError):
                pid = None
        return ServerStatus(True, res.returncode == 0, self.port(), self.datadir, pid)

    # -- actions -------------------------------------------------------------------
    def _pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args]
        return _run_as_server_user(cmd, timeout=timeout)

    def _make_dirs(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700 if not _as_root() else 0o711)
        if _as_root() and not self.pgdir.exists() and not _postgres_can_reach(self.home):
            key = hashlib.sha1(str(self.home).encode()).hexdigest()[:12]
            target = Path("/var/lib/photdb") / key
            target.mkdir(parents=True, exist_ok=True)
            os.chmod(target.parent, 0o755)
            self.pgdir.symlink_to(target)
        self.pgdir.mkdir(exist_ok=True)
        self.rundir.mkdir(exist_ok=True)
        if _as_root():
            pw = pwd.getpwnam(SYSTEM_USER)
            for p in (self.pgdir.resolve(), self.rundir.resolve()):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            if self.logfile.exists():
                os.chown(self.logfile, pw.pw_uid, pw.pw_gid)
        os.chmod(self.pgdir.resolve(), 0o700)
        os.chmod(self.rundir.resolve(), 0o700)

    def initialise(self) -> None:
        """Run ``initdb`` and write the server configuration (once)."""
        if self.is_initialised():
            return
        self._make_dirs()
        res = _run_as_server_user(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ],
            timeout=300,
        )
        if res.returncode != 0:
            raise DatabaseError(f"initdb failed in {self.datadir}: {_last_line(res.stderr)}")
        hba = (
            "# photdb embedded cluster: the Unix socket directory is private (mode 700)\n"
            "local all all trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
        )
        self._write_as_server(self.datadir / "pg_hba.conf", hba)
        self._write_config(_free_port())

    def _write_as_server(self, path: Path, text: str) -> None:
        path.write_text(text)
        if _as_root():
            pw = pwd.getpwnam(SYSTEM_USER)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        os.chmod(path, 0o600)

    def _write_config(self, port: int) -> None:
        lines = [
            f"port = {port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.rundir.resolve()}'",
            "shared_buffers = '256MB'",
            "work_mem = '64MB'",
            "maintenance_work_mem = '512MB'",
            "max_wal_size = '4GB'",
            "checkpoint_timeout = '15min'",
            "max_connections = 100",
            "logging_collector = off",
            "password_encryption = 'scram-sha-256'",
        ]
        if self.fast:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        self._write_as_server(self.datadir / "postgresql.auto.conf", "\n".join(lines) + "\n")

    def start(self, *, timeout: float = 60) -> int:
        """Start the cluster if it is not running; return its TCP port."""
        self.initialise()
        self._make_dirs()
        if self.status().running:
            return self.port()
        port = self.port()
        if port is None or not _port_is_free(port):
            port = _free_port()
            self._write_config(port)
        res = self._pg_ctl("start", "-w", "-t", str(int(timeout)), "-l", str(self.logfile))
        if res.returncode != 0:
            tail = ""
            if self.logfile.exists():
                tail = _last_line(self.logfile.read_text(errors="replace"))
            raise DatabaseError(
                f"cannot start the embedded PostgreSQL in {self.datadir}: "
                f"{tail or _last_line(res.stderr) or 'pg_ctl failed'}"
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _port_is_listening(port):
                return port
            time.sleep(0.1)
        raise DatabaseError(f"embedded PostgreSQL did not listen on port {port}")

    def stop(self) -> bool:
        """Stop the cluster; return True if it was running."""
        if not self.is_initialised() or not self.status().running:
            return False
        res = self._pg_ctl("stop", "-m", "fast", "-w")
        if res.returncode != 0:
            raise DatabaseError(f"cannot stop the embedded PostgreSQL: {_last_line(res.stderr)}")
        return True

    def destroy(self) -> None:
        """Stop the cluster and delete it (test clusters only)."""
        self.stop()
        target = self.pgdir.resolve()
        shutil.rmtree(target, ignore_errors=True)
        if self.pgdir.is_symlink():
            self.pgdir.unlink()

    def superuser_conninfo(self, dbname: str = "postgres") -> dict:
        """Connection keywords for the superuser over the private socket."""
        return {
            "host": str(self.rundir.resolve()),
            "port": self.port(),
            "user": SUPERUSER,
            "dbname": dbname,
        }

    # -- credentials -----------------------------------------------------------------
    def credentials(self) -> dict[str, str]:
        """Return (and on first use generate) the role passwords, stored mode 600."""
        path = self.credentials_file
        if path.exists():
            out = {}
            for line in path.read_text().splitlines():
                if "=" in line and not line.startswith("#"):
                    k, v = line.split("=", 1)
                    out[k.strip()] = v.strip()
            return out
        creds = {role: secrets.token_urlsafe(24) for role in ("admin", "writer", "readonly")}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("# photdb embedded cluster role passwords; keep private\n")
            for k, v in creds.items():
                fh.write(f"{k}={v}\n")
        return creds


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _port_is_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""
