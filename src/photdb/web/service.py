"""What every route of the web service shares: limits, the read-only pool, errors.

The service reads through the **read-only role only**, from a
:class:`psycopg_pool.ConnectionPool`. Every connection is opened with photdb's
session settings (:func:`photdb.db.session.session_options`: read-only, search
path, float digits, JIT off ...) and the service's own ``statement_timeout``,
``lock_timeout`` and ``idle_in_transaction_session_timeout`` as startup options, and the same
``SET``\\ s are run again as statements when the pool configures it: the service never
relies on the role's defaults (a pooler or a changed role could drop them).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from photdb.settings import Settings

log = logging.getLogger("photdb.web")

__all__ = ["ReadOnlyPool", "ServiceError", "WebConfig", "db_error"]


@dataclass(frozen=True)
class WebConfig:
    """Limits of the web service (pages and VO).

    Attributes
    ----------
    statement_timeout_s : float
        Every statement is cancelled after this long (pages and VO alike).
    pool_min, pool_max : int
        Read-only connections kept open / opened at most.
    pool_wait_s : float
        A request waits this long for a free connection, then gets 503.
    lightcurve_rows, cone_rows, candidate_rows, image_rows : int
        Row caps of the pages (a page says when it was cut).
    max_cone_arcsec : float
        Largest cone the pages search (the VO cone search has its own SR limit).
    default_maxrec, hard_maxrec : int
        TAP MAXREC default and hard limit (rows).
    scs_max_sr_deg, scs_maxrec : float, int
        Cone search: largest SR (deg) and most rows.
    max_body_bytes : int
        Largest request body.
    scs_ucd_style : str
        "ucd1": the SCS 1.03 UCD1 names on the mandatory columns (pyvo needs them).
    """

    statement_timeout_s: float = 10.0
    pool_min: int = 2
    pool_max: int = 8
    pool_wait_s: float = 10.0
    lightcurve_rows: int = 20_000
    cone_rows: int = 2_000
    candidate_rows: int = 2_000
    image_rows: int = 5_000
    max_cone_arcsec: float = 3600.0
    default_maxrec: int = 10_000
    hard_maxrec: int = 100_000
    scs_max_sr_deg: float = 10.0
    scs_maxrec: int = 50_000
    max_body_bytes: int = 1_000_000
    scs_ucd_style: str = "ucd1"


class ServiceError(Exception):
    """An error the service answers with (one readable line and an HTTP status)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


class ReadOnlyPool:
    """A pool of read-only connections with per-connection safety settings."""

    def __init__(self, settings: Settings, config: WebConfig):
        from photdb.db.connection import resolve
        from photdb.db.session import session_options

        s = resolve(settings)
        self.timeout_ms = int(config.statement_timeout_s * 1000)
        self.wait_s = config.pool_wait_s
        # photdb's session settings (read-only, search_path, float digits, JIT off ...)
        # with the service's own timeouts
        options = session_options("readonly", s, statement_timeout=self.timeout_ms,
                                  idle_in_transaction_session_timeout=60000,
                                  lock_timeout=5000)  # fmt: skip
        self.pool = ConnectionPool(
            kwargs={
                "host": s.host, "port": s.port, "dbname": s.dbname, "user": s.user("readonly"),
                "password": s.password("readonly"), "connect_timeout": 10,
                "application_name": "photdb-web", "options": options,
            },
            min_size=config.pool_min, max_size=config.pool_max,
            configure=self._configure, open=False, name="photdb-web",
        )  # fmt: skip

    def _configure(self, conn: psycopg.Connection) -> None:
        # the same again as statements: never rely on startup options or role defaults
        conn.execute("SET default_transaction_read_only = on")
        conn.execute(f"SET statement_timeout = {self.timeout_ms}")
        conn.execute("SET lock_timeout = 5000")
        conn.commit()

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled read-only connection; 503 when none comes free in time."""
        try:
            with self.pool.connection(timeout=self.wait_s) as conn:
                yield conn
        except PoolTimeout:
            raise ServiceError("the service is busy or the database is unreachable; "
                               "try again", 503) from None  # fmt: skip
        except psycopg.OperationalError as exc:
            if isinstance(exc, psycopg.errors.QueryCanceled):
                raise
            raise ServiceError("the database connection failed", 503) from None


def db_error(exc: psycopg.Error, timeout_s: float) -> ServiceError:
    """A psycopg error as one line for the user (its primary message only)."""
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return ServiceError(f"query cancelled: it ran longer than the {timeout_s:g} s limit")
    if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, psycopg.DatabaseError):
        return ServiceError("the database connection failed", 503)
    diag = getattr(exc, "diag", None)
    primary = (diag.message_primary if diag else None) or str(exc).splitlines()[0]
    if isinstance(
        exc, psycopg.errors.InsufficientPrivilege | psycopg.errors.ReadOnlySqlTransaction
    ):
        return ServiceError(f"not allowed: {primary}")
    return ServiceError(f"database error: {primary}")
