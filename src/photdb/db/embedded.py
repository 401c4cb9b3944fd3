"""Creating and starting the embedded cluster: once, serialised, safe to kill at any moment.

The first photdb command on a fresh ``$PHOTDB_HOME`` creates the cluster:
``initdb``, the three roles (SCRAM verifiers, never plaintext), the database,
its extensions and the schema. Every step runs under ``$PHOTDB_HOME/.lock``
(``flock``; the kernel releases it when its holder dies) and is idempotent, and
``cluster.ready`` is written last, so a process killed half-way leaves a home
the next command finishes. Later commands only find the cluster ready, start it
if it is stopped (under the same lock) and connect; they never touch roles or
schema. ``photdb db init`` is the one command that does that work again.
"""

from __future__ import annotations

from dataclasses import replace

import psycopg
from psycopg import sql

from photdb.db.migrate import init_database, password_verifier
from photdb.db.server import EmbeddedServer
from photdb.errors import DatabaseError
from photdb.settings import DEFAULT_USERS, Settings

__all__ = ["bootstrap", "ensure_cluster", "ensure_embedded", "init_embedded", "resolved_settings"]

#: pg_advisory_lock key serialising role and database creation in the cluster.
BOOTSTRAP_LOCK = 0x70686F74_64620002
_LO_FUNCTIONS = (
    "lo_create(oid)",
    "lo_creat(integer)",
    "lo_import(text)",
    "lo_import(text, oid)",
    "lo_from_bytea(oid, bytea)",
)


def resolved_settings(settings: Settings, server: EmbeddedServer) -> Settings:
    """``settings`` with the embedded cluster's port and role passwords filled in."""
    creds = server.read_credentials()
    port = server.port()
    if port is None or not creds:
        raise DatabaseError(f"the embedded cluster in {server.home} is not initialised")
    return replace(
        settings, host="127.0.0.1", port=port, users=dict(DEFAULT_USERS), passwords=dict(creds)
    )


def _can_log_in(settings: Settings, role: str) -> bool:
    try:
        psycopg.connect(
            host=settings.host,
            port=settings.port,
            dbname="postgres",
            user=settings.user(role),
            password=settings.password(role),
            connect_timeout=10,
        ).close()
    except psycopg.OperationalError as exc:
        if "password authentication failed" in str(exc) or "not permitted" in str(exc):
            return False
        # any other refusal (e.g. no CONNECT on postgres) still proves the password
        return "does not exist" not in str(exc)
    return True


def bootstrap(server: EmbeddedServer, settings: Settings, *, repair: bool = False) -> bool:
    """Create roles, database and extensions in the running cluster (idempotent).

    Roles get their passwords as SCRAM verifiers. With ``repair`` (``photdb db
    init``) a role whose password no longer matches ``credentials.env`` (a role
    may change its own password) gets it back. Returns True if the database
    was created now.
    """
    creds = server.credentials()
    resolved = resolved_settings(settings, server)
    created = False
    with server.connect_superuser() as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [BOOTSTRAP_LOCK])
        for role, name in DEFAULT_USERS.items():
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            if exists and not (repair and not _can_log_in(resolved, role)):
                continue
            verb = "ALTER" if exists else "CREATE"
            verifier = password_verifier(conn, name, creds[role])
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                    sql.SQL(verb), sql.Identifier(name), sql.Literal(verifier)
                )
            )
            if role == "readonly" and not exists:
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
                        sql.Identifier(name)
                    )
                )
        if not conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (settings.dbname,)
        ).fetchone():
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(settings.dbname), sql.Identifier(DEFAULT_USERS["admin"])
                )
            )
            created = True
    with server.connect_superuser(settings.dbname) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [BOOTSTRAP_LOCK])
        for ext in ("q3c", "pg_sphere"):
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext)))
        # large objects are writable by any role by default: close that door
        for fn in _LO_FUNCTIONS:
            conn.execute(f"REVOKE EXECUTE ON FUNCTION pg_catalog.{fn} FROM PUBLIC")
    return created


def ensure_cluster(settings: Settings) -> EmbeddedServer:
    """Return the running embedded cluster of ``settings.home``, creating it on first use.

    The fast path (cluster ready and listening) takes no lock and runs nothing.
    """
    server = EmbeddedServer(settings.home, fast=settings.no_fsync)
    if server.is_ready() and server.is_listening():
        return server
    with server.lock():
        if not server.is_ready():
            _create(server, settings)
        else:
            server.start()
    return server


def _create(server: EmbeddedServer, settings: Settings) -> list[str]:
    """Create (or finish creating) the cluster; the caller holds the lock."""
    server.initialise()
    server.credentials()
    server.start()
    bootstrap(server, settings)
    applied = init_database(resolved_settings(settings, server))
    server.mark_ready()
    return applied


def ensure_embedded(server: EmbeddedServer, dbname: str = "photdb") -> None:
    """Create or start ``server`` and make sure database ``dbname`` exists and is migrated.

    For test sessions and benchmarks that manage their own cluster; this is
    schema work, serialised like ``photdb db init``.
    """
    settings = Settings(embedded=True, home=server.home, dbname=dbname, no_fsync=server.fast)
    with server.lock():
        if not server.is_ready():
            _create(server, settings)
            return
        server.start()
        bootstrap(server, settings)
        init_database(resolved_settings(settings, server))


def init_embedded(settings: Settings) -> list[str]:
    """``photdb db init`` on the embedded cluster: create or repair, then migrate."""
    server = EmbeddedServer(settings.home, fast=settings.no_fsync)
    with server.lock():
        if not server.is_ready():
            return _create(server, settings)
        server.start()
        bootstrap(server, settings, repair=True)
        return init_database(resolved_settings(settings, server))
