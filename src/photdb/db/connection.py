"""Connections: one function, three roles, the embedded cluster created on first use.

This is the top of :mod:`photdb.db`'s layers (``session`` <- ``migrate`` <-
``embedded`` <- ``connection``); nothing below imports it. Ordinary commands
only connect: the embedded cluster is created by the first command that needs
it and started if it is stopped, but roles and schema are never touched here.
A database whose schema is older than this photdb is one line asking for
``photdb db init``.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import psycopg

from photdb.db.embedded import ensure_cluster, resolved_settings
from photdb.db.files import write_private
from photdb.db.migrate import missing_migrations
from photdb.db.server import EmbeddedServer
from photdb.db.session import open_session, reason
from photdb.errors import DatabaseError
from photdb.settings import Settings, load_settings

__all__ = ["connect", "database_url", "resolve", "write_pgpass"]

#: Servers whose schema this process has checked (host, port, dbname).
_checked: set[tuple[str, int, str]] = set()
#: libpq reasons meaning "the server is not (yet) up", worth starting and retrying.
_NOT_UP = (
    "Connection refused",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
)


def resolve(settings: Settings | None = None, *, start: bool = True) -> Settings:
    """Fill in port and passwords of the embedded cluster, creating or starting it if needed.

    For a configured server the settings are returned unchanged.
    """
    settings = load_settings() if settings is None else settings
    if not settings.embedded or settings.passwords:
        return settings  # a real server, or an embedded one already resolved
    if start:
        server = ensure_cluster(settings)
    else:
        server = EmbeddedServer(settings.home, fast=settings.no_fsync)
    return resolved_settings(settings, server)


def _open(role: str, settings: Settings, **kw) -> psycopg.Connection:
    """Open a session; an embedded cluster that is down is started and tried again."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return open_session(role, settings, **kw)
        except DatabaseError as exc:
            if not settings.embedded or not any(s in str(exc) for s in _NOT_UP):
                raise
            if time.monotonic() > deadline:
                raise
        ensure_cluster(settings)  # started under the home's lock, by one process
        time.sleep(0.2)


def _check_schema(conn: psycopg.Connection, settings: Settings) -> None:
    key = (settings.host, settings.port, settings.dbname)
    if key in _checked:
        return
    missing = missing_migrations(conn)
    if missing is None or missing:
        what = (
            "has no photdb schema"
            if missing is None
            else (f"lacks migration{'s' * (len(missing) > 1)} {', '.join(missing)}")
        )
        conn.close()
        raise DatabaseError(
            f"database {settings.dbname} on {settings.host}:{settings.port} {what}: "
            "run `photdb db init` (as the admin) to create or upgrade it"
        )
    _checked.add(key)


def connect(role: str = "writer", settings: Settings | None = None, **kw) -> psycopg.Connection:
    """Open a psycopg connection as ``role`` (``admin``, ``writer`` or ``readonly``).

    Parameters
    ----------
    role : str
        Which of the three roles to log in as.
    settings : Settings, optional
        Defaults to :func:`photdb.settings.load_settings`. The embedded cluster is
        started (and created, on first use) when no server is configured.
    **kw
        Passed to :func:`psycopg.connect` (e.g. ``autocommit=True``).

    Returns
    -------
    psycopg.Connection
        With photdb's per-session settings (see :mod:`photdb.db.session`); the
        read-only role's is read-only and has a statement timeout.

    Raises
    ------
    DatabaseError
        One line naming the server, role and reason; never the password. Also
        when the database's schema is older than this photdb.
    """
    settings = resolve(settings)
    conn = _open(role, settings, **kw)
    if role != "admin":
        try:
            _check_schema(conn, settings)
        except psycopg.OperationalError as exc:
            conn.close()
            raise DatabaseError(f"lost {settings.describe(role)}: {reason(exc)}") from None
    return conn


def write_pgpass(settings: Settings) -> str:
    """Write ``$PHOTDB_HOME/pgpass`` (mode 600, atomically) with the known role passwords."""
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / "pgpass"
    lines = []
    for role in ("admin", "writer", "readonly"):
        pw = settings.password(role)
        if pw:
            esc = pw.replace("\\", "\\\\").replace(":", "\\:")
            lines.append(f"{settings.host}:{settings.port}:*:{settings.user(role)}:{esc}")
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        write_private(path, text)
    return str(path)


def database_url(role: str = "readonly", settings: Settings | None = None) -> str:
    """A libpq URL for ``role`` that psql accepts, without the password in it.

    The password is read by libpq from ``$PHOTDB_HOME/pgpass`` (the ``passfile``
    parameter), so the URL is safe to print or paste into a notebook.
    """
    settings = resolve(settings)
    passfile = write_pgpass(settings)
    user = quote(settings.user(role), safe="")
    return (
        f"postgresql://{user}@{settings.host}:{settings.port}/{quote(settings.dbname)}"
        f"?passfile={quote(str(passfile))}"
    )
