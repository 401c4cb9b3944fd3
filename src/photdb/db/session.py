"""One guarded session for one role, given settings whose port and passwords are known.

A PostgreSQL role can change some of its own defaults without any privilege
(``ALTER ROLE me SET search_path = ...``, ``default_transaction_read_only``,
``statement_timeout``, ``extra_float_digits``, ``client_encoding`` ...). photdb
does not rely on role defaults: every session it opens sends its own values in
the start-up packet (libpq ``options``), which take precedence over role and
database defaults. The read-only role's sessions are read-only and time-limited
by these settings, whatever the role's defaults say.

This is the lowest connection layer: it imports nothing else from
:mod:`photdb.db`. :mod:`photdb.db.connection` adds the embedded cluster on top.
"""

from __future__ import annotations

import psycopg

from photdb.errors import DatabaseError
from photdb.settings import Settings

__all__ = ["SESSION_SETTINGS", "open_session", "reason", "session_options"]

#: Settings every photdb session sends, whatever the role's own defaults are.
SESSION_SETTINGS = {
    "search_path": "public",
    "client_encoding": "UTF8",
    "DateStyle": "ISO,MDY",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "default_transaction_isolation": "read\\ committed",
    "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "temp_buffers": "128MB",  # bulk loads stage rows in temporary tables
    # photdb's queries are index lookups; on a large galsources the planner's cost
    # passes jit_above_cost and compiling took 4-5 ms of a 1' cone's 11 ms
    # (benchmarks/galsources_scale.py measures both)
    "jit": "off",
}


def session_options(role: str, settings: Settings, **overrides: str | int) -> str:
    """The libpq ``options`` string (``-c name=value ...``) for a session of ``role``;
    ``overrides`` replace or add settings (the web service's own timeouts)."""
    values = dict(SESSION_SETTINGS)
    if role == "readonly":
        values["default_transaction_read_only"] = "on"
        values["statement_timeout"] = str(int(round(settings.readonly_timeout_s * 1000)))
    else:
        values["default_transaction_read_only"] = "off"
        values["statement_timeout"] = "0"
    values.update({k: str(v) for k, v in overrides.items()})
    return " ".join(f"-c {k}={v}" for k, v in values.items())


def open_session(role: str, settings: Settings, **kw) -> psycopg.Connection:
    """Connect as ``role`` with photdb's per-session settings.

    Parameters
    ----------
    role : str
        ``admin``, ``writer`` or ``readonly``.
    settings : Settings
        With the server's port and the role's password filled in.
    **kw
        Passed to :func:`psycopg.connect` (e.g. ``autocommit=True``).

    Raises
    ------
    DatabaseError
        One line naming the server, role and reason; never the password.
    """
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
            options=session_options(role, settings),
            **kw,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            f"cannot connect to {settings.describe(role)}: {reason(exc, password)}"
        ) from None


def reason(exc: Exception, password: str | None = None) -> str:
    """The last line of a driver error, without libpq's prefix or any password."""
    text = str(exc).strip()
    # libpq prefixes "connection to server at ... failed: "; keep the reason only
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    out = lines[-1] if lines else type(exc).__name__
    if "failed:" in out:
        out = out.split("failed:", 1)[1].strip()
    if password:
        out = out.replace(password, "***")
    return out
