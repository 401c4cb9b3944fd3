"""Connections: one function, three roles, the embedded cluster started on first use."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import psycopg

from photdb.db.server import EmbeddedServer
from photdb.errors import DatabaseError
from photdb.settings import Settings, load_settings


def resolve(settings: Settings | None = None, *, start: bool = True) -> Settings:
    """Fill in port and passwords of the embedded cluster, starting it if needed.

    For a configured server the settings are returned unchanged.
    """
    settings = load_settings() if settings is None else settings
    if not settings.embedded or settings.passwords:
        return settings  # a real server, or an embedded one already resolved
    server = EmbeddedServer(settings.home)
    if start:
        from photdb.db.migrate import ensure_embedded  # circular at import time

        ensure_embedded(server, settings.dbname)
    port = server.port()
    if port is None:
        raise DatabaseError(f"the embedded cluster in {server.datadir} is not initialised")
    creds = server.credentials()
    from dataclasses import replace

    return replace(settings, port=port, host="127.0.0.1", passwords=dict(creds))


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

    Raises
    ------
    DatabaseError
        One line naming the server, role and reason; never the password.
    """
    settings = resolve(settings)
    password = settings.password(role)
    try:
        return psycopg.connect(
            host=settings.host,
            port=settings.port,
            dbname=settings.dbname,
            user=settings.user(role),
            password=password or None,
            connect_timeout=10,
            application_name="photdb",
            **kw,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            f"cannot connect to {settings.describe(role)}: {_reason(exc, password)}"
        ) from None


def _reason(exc: Exception, password: str | None) -> str:
    text = str(exc).strip()
    # libpq prefixes "connection to server at ... failed: "; keep the reason only
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    reason = lines[-1] if lines else "unknown error"
    if "failed:" in reason:
        reason = reason.split("failed:", 1)[1].strip()
    if password:
        reason = reason.replace(password, "***")
    return reason


def write_pgpass(settings: Settings) -> Path:
    """Write ``$PHOTDB_HOME/pgpass`` (mode 600) with the known role passwords."""
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / "pgpass"
    lines = []
    for role in ("admin", "writer", "readonly"):
        pw = settings.password(role)
        if pw:
            esc = pw.replace("\\", "\\\\").replace(":", "\\:")
            lines.append(f"{settings.host}:{settings.port}:*:{settings.user(role)}:{esc}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path


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
