"""The embedded default: a private PostgreSQL 15 cluster under ``$PHOTDB_HOME``.

Layout::

    $PHOTDB_HOME/
      .lock             held (flock) while the cluster is created or started
      cluster.ready     written once the cluster, its roles and schema exist
      credentials.env   generated passwords of the three roles (mode 600)
      pgpass            libpq password file, used by ``photdb db url`` (mode 600)
      pg/ -> data/      the cluster (PGDATA)
             run/       its Unix socket (mode 700)
             server.log

PostgreSQL refuses to run as root. When photdb runs as root the server binaries
run as the ``postgres`` system user (``runuser -u postgres --``) and the
cluster directory belongs to it; if ``postgres`` cannot reach ``$PHOTDB_HOME``
(e.g. under ``/root``) the cluster lives in ``/var/lib/photdb/<id>`` and
``$PHOTDB_HOME/pg`` is a symbolic link to it.

Server processes are started with a minimal environment (``PATH``, locale,
``TZ``), so no secret a user keeps in theirs reaches the long-lived postmaster.
This module only runs processes and files; roles and schema are
:mod:`photdb.db.embedded`'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from photdb.db.files import ensure_credentials, home_lock, read_credentials, write_private
from photdb.db.pgbin import (
    SYSTEM_USER,
    as_root,
    find_bindir,
    free_port,
    last_line,
    port_is_listening,
    port_taken,
    postgres_can_reach,
    run_as_server_user,
)
from photdb.errors import DatabaseError

SUPERUSER = "postgres"
ROLE_KEYS = ("admin", "writer", "readonly")


@dataclass(frozen=True)
class ServerStatus:
    """What ``photdb db status`` reports."""

    initialised: bool
    running: bool
    port: int | None
    datadir: Path
    pid: int | None = None


def _cgroup_memory_limit() -> int | None:
    """The memory limit of this process's cgroup (v2 or v1), None if there is none."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max" or a huge v1 value: no limit
            return int(text)
    return None


class EmbeddedServer:
    """Create, start, stop and inspect the private cluster of one ``$PHOTDB_HOME``.

    Parameters
    ----------
    home : Path
        ``$PHOTDB_HOME``.
    fast : bool
        Turn off fsync when the cluster is created (throw-away clusters only).
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

    @property
    def ready_file(self) -> Path:
        return self.home / "cluster.ready"

    # -- state ---------------------------------------------------------------------
    def is_initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def is_ready(self) -> bool:
        """True once the cluster, its roles and its first database were fully created."""
        return self.ready_file.exists() and self.is_initialised()

    def mark_ready(self) -> None:
        write_private(self.ready_file, "photdb embedded cluster created\n")

    def port(self) -> int | None:
        conf = self.datadir / "postgresql.auto.conf"
        if not conf.exists():
            return None
        for line in conf.read_text().splitlines():
            if line.strip().startswith("port"):
                return int(line.split("=", 1)[1].strip().strip("'"))
        return None

    def is_listening(self) -> bool:
        """True if the cluster's postmaster lives and its port accepts TCP connections."""
        port = self.port()
        return port is not None and self._postmaster_alive() and port_is_listening(port)

    def _postmaster_alive(self) -> bool:
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except PermissionError:
            return True  # another user's live process
        except (OSError, ValueError, IndexError):
            return False  # no pid file, or its process is gone
        return True

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

    # -- the lock --------------------------------------------------------------------
    def lock(self, *, timeout: float = 600.0):
        """Hold ``$PHOTDB_HOME/.lock`` (flock): one process creates or starts the cluster.

        The kernel drops the lock when its holder exits, however it exits, so a
        killed process leaves nothing to clean up.
        """
        return home_lock(self.home, timeout=timeout)

    # -- actions -------------------------------------------------------------------
    def _pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args]
        return run_as_server_user(cmd, timeout=timeout)

    def _make_dirs(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700 if not as_root() else 0o711)
        if as_root() and not self.pgdir.exists() and not postgres_can_reach(self.home):
            key = hashlib.sha1(str(self.home).encode()).hexdigest()[:12]
            target = Path("/var/lib/photdb") / key
            target.mkdir(parents=True, exist_ok=True)
            os.chmod(target.parent, 0o755)
            if self.pgdir.is_symlink():
                self.pgdir.unlink()
            self.pgdir.symlink_to(target)
        self.pgdir.mkdir(exist_ok=True)
        self.rundir.mkdir(exist_ok=True)
        if as_root():
            pw = pwd.getpwnam(SYSTEM_USER)
            for p in (self.pgdir.resolve(), self.rundir.resolve()):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            if self.logfile.exists():
                os.chown(self.logfile, pw.pw_uid, pw.pw_gid)
        os.chmod(self.pgdir.resolve(), 0o700)
        os.chmod(self.rundir.resolve(), 0o700)

    def initialise(self, *, port: int | None = None) -> None:
        """Run ``initdb`` and write the configuration, once (call with :meth:`lock` held).

        ``initdb`` writes into a scratch directory renamed into place only when
        complete, so a process killed half-way leaves no half-made cluster.
        """
        if self.is_initialised():
            return
        self._make_dirs()
        for stale in self.pgdir.resolve().glob("data.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a process killed earlier
        tmp = self.pgdir.resolve() / f"data.tmp-{os.getpid()}"
        res = run_as_server_user(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(tmp),
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
            shutil.rmtree(tmp, ignore_errors=True)
            raise DatabaseError(f"initdb failed in {tmp}: {last_line(res.stderr)}")
        hba = (
            "# photdb embedded cluster: the Unix socket directory is private (mode 700)\n"
            "local all all trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
        )
        self._write_as_server(tmp / "pg_hba.conf", hba)
        self._write_as_server(tmp / "postgresql.auto.conf", self._config(port or free_port()))
        if self.datadir.exists():  # an empty or broken data directory without PG_VERSION
            shutil.rmtree(self.datadir)
        os.rename(tmp, self.datadir)

    def _write_as_server(self, path: Path, text: str) -> None:
        path.write_text(text)
        if as_root():
            pw = pwd.getpwnam(SYSTEM_USER)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        os.chmod(path, 0o600)

    def _config(self, port: int) -> str:
        lines = [
            f"port = {port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.rundir.resolve()}'",
            f"shared_buffers = '{self._shared_buffers_mb()}MB'",
            "work_mem = '64MB'",
            "maintenance_work_mem = '512MB'",
            "max_wal_size = '4GB'",
            "checkpoint_timeout = '15min'",
            "max_connections = 100",
            "logging_collector = off",
            "password_encryption = 'scram-sha-256'",
            # a backend whose client was killed notices within 2 s and ends,
            # releasing its locks (advisory locks included)
            "client_connection_check_interval = '2s'",
        ]
        if self.fast:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        return "\n".join(lines) + "\n"

    def _shared_buffers_mb(self) -> int:
        """A quarter of the machine's memory, 256 MB to 8 GB (PostgreSQL's own advice);
        256 MB for throw-away (``fast``) clusters. At 2e7 galsources rows (2.9 GB with
        its indexes) 256 MB left warm 1-arcsec cones reading every heap page from the
        OS page cache (benchmarks/galsources_scale.py)."""
        if self.fast:
            return 256
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return 256
        total = min(total, _cgroup_memory_limit() or total)  # a container's own limit
        return int(min(max(total // 4, 256 << 20), 8 << 30) >> 20)

    def set_port(self, port: int) -> None:
        """Move a stopped cluster to another TCP port (``photdb db start --port``)."""
        conf = self.datadir / "postgresql.auto.conf"
        lines = [
            f"port = {port}" if ln.strip().startswith("port") else ln
            for ln in conf.read_text().splitlines()
        ]
        self._write_as_server(conf, "\n".join(lines) + "\n")

    def start(self, *, timeout: float = 120) -> int:
        """Start the cluster unless it runs; return its TCP port (call with :meth:`lock` held).

        The port chosen at creation is kept, so saved URLs stay valid. If
        another program took it, that is one line, not a silent move.
        """
        port = self.port()
        if port is None:
            raise DatabaseError(f"the embedded cluster in {self.datadir} is not initialised")
        self._make_dirs()
        deadline = time.monotonic() + timeout
        attempts = 0
        while time.monotonic() < deadline:
            if self._pg_ctl("status").returncode == 0:
                if port_is_listening(port):
                    return port
                time.sleep(0.1)  # started by another process, not listening yet
                continue
            if port_is_listening(port):
                raise DatabaseError(port_taken(port, self.datadir))
            if attempts == 10:
                break
            attempts += 1
            left = max(5, int(deadline - time.monotonic()))
            res = self._pg_ctl(
                "start", "-w", "-t", str(left), "-l", str(self.logfile), timeout=left + 10
            )
            if res.returncode == 0 and port_is_listening(port):
                return port
            # a killed process's pg_ctl may be starting it, or the backends of a
            # killed server are still exiting: look again shortly
            time.sleep(0.5)
        tail = last_line(self.logfile.read_text(errors="replace")) if self.logfile.exists() else ""
        if "Address already in use" in tail:
            raise DatabaseError(port_taken(port, self.datadir))
        raise DatabaseError(
            f"cannot start the embedded PostgreSQL in {self.datadir}: {tail or 'pg_ctl failed'}"
        )

    def stop(self) -> bool:
        """Stop the cluster; return True if it was running."""
        if not self.is_initialised() or not self.status().running:
            return False
        res = self._pg_ctl("stop", "-m", "fast", "-w")
        if res.returncode != 0:
            raise DatabaseError(f"cannot stop the embedded PostgreSQL: {last_line(res.stderr)}")
        return True

    def destroy(self) -> None:
        """Stop the cluster and delete it and its credentials (test clusters only)."""
        with contextlib.suppress(DatabaseError):
            self.stop()
        target = self.pgdir.resolve()
        shutil.rmtree(target, ignore_errors=True)
        if self.pgdir.is_symlink():
            self.pgdir.unlink()
        for f in (self.ready_file, self.credentials_file, self.pgpass_file):
            f.unlink(missing_ok=True)

    def superuser_conninfo(self, dbname: str = "postgres") -> dict:
        """Connection keywords for the superuser over the private socket."""
        return {
            "host": str(self.rundir.resolve()),
            "port": self.port(),
            "user": SUPERUSER,
            "dbname": dbname,
        }

    def connect_superuser(self, dbname: str = "postgres") -> psycopg.Connection:
        """An autocommit superuser connection over the private socket."""
        try:
            return psycopg.connect(
                **self.superuser_conninfo(dbname), autocommit=True, application_name="photdb"
            )
        except psycopg.OperationalError as exc:
            raise DatabaseError(
                f"cannot reach the embedded cluster in {self.datadir}: {last_line(str(exc))}"
            ) from None

    # -- credentials -----------------------------------------------------------------
    def read_credentials(self) -> dict[str, str]:
        """The role passwords from ``credentials.env`` (empty when there is none)."""
        return read_credentials(self.credentials_file)

    def credentials(self) -> dict[str, str]:
        """Return the role passwords, generating them (mode 600) on first use.

        Call with :meth:`lock` held when the file may not exist yet.
        """
        return ensure_credentials(self.credentials_file, ROLE_KEYS)
