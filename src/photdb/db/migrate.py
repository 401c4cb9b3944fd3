"""Schema creation and upgrades (yoyo-migrations, run as the admin role) and the three roles.

``init_database`` is idempotent: a second run applies nothing and changes no
privilege. The roles follow the archive document:

* **admin** owns every table and runs migrations;
* **writer** may SELECT/INSERT/UPDATE/DELETE and use sequences, but owns nothing
  and cannot create or alter tables;
* **readonly** may only SELECT. It has no write privilege anywhere, so
  ``SET default_transaction_read_only = off`` gains it nothing; it cannot create
  temporary tables (TEMP is revoked from PUBLIC) or large objects; default
  privileges make every table a later migration adds readable by it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from photdb.db.server import EmbeddedServer
from photdb.errors import DatabaseError
from photdb.settings import Settings

EXTENSIONS = {"q3c": "postgresql-15-q3c", "pg_sphere": "postgresql-15-pgsphere"}
_ensured: set[tuple[str, str]] = set()


def migrations_dir() -> Path:
    """The directory of ordered SQL migration files shipped with photdb."""
    return Path(str(resources.files("photdb.db") / "migrations"))


def _superuser_connect(server: EmbeddedServer, dbname: str = "postgres") -> psycopg.Connection:
    try:
        return psycopg.connect(**server.superuser_conninfo(dbname), autocommit=True)
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            f"cannot reach the embedded cluster in {server.datadir}: {exc}"
        ) from None


def bootstrap_embedded(server: EmbeddedServer, dbname: str) -> bool:
    """Create roles, database and extensions in the embedded cluster.

    Returns True if the database was created now.
    """
    creds = server.credentials()
    from photdb.settings import DEFAULT_USERS

    created = False
    with _superuser_connect(server) as conn:
        for role, name in DEFAULT_USERS.items():
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB PASSWORD {}").format(
                    sql.SQL(verb), sql.Identifier(name), sql.Literal(creds[role])
                )
            )
        conn.execute(
            sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
                sql.Identifier(DEFAULT_USERS["readonly"])
            )
        )
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(dbname), sql.Identifier(DEFAULT_USERS["admin"])
                )
            )
            created = True
    with _superuser_connect(server, dbname) as conn:
        for ext in EXTENSIONS:
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext)))
        # large objects are writable by any role by default: close that door
        for fn in (
            "lo_create(oid)",
            "lo_creat(integer)",
            "lo_import(text)",
            "lo_import(text, oid)",
            "lo_from_bytea(oid, bytea)",
        ):
            conn.execute(f"REVOKE EXECUTE ON FUNCTION pg_catalog.{fn} FROM PUBLIC")
    return created


def ensure_embedded(server: EmbeddedServer, dbname: str = "photdb") -> None:
    """Start the embedded cluster and make sure the schema is current (once per process)."""
    server.start()
    key = (str(server.home), dbname)
    if key in _ensured:
        return
    bootstrap_embedded(server, dbname)
    from dataclasses import replace

    from photdb.settings import Settings

    settings = Settings(embedded=True, home=server.home, dbname=dbname)
    settings = replace(settings, port=server.port(), passwords=dict(server.credentials()))
    init_database(settings)
    _ensured.add(key)


def _admin_connect(settings: Settings) -> psycopg.Connection:
    from photdb.db.connection import connect

    return connect("admin", settings, autocommit=True)


def check_extensions(conn: psycopg.Connection, settings: Settings) -> None:
    """Raise a one-line DatabaseError if q3c or pg_sphere cannot be used."""
    rows = conn.execute(
        "SELECT name, installed_version FROM pg_available_extensions WHERE name = ANY(%s)",
        (list(EXTENSIONS),),
    ).fetchall()
    found = {name: inst for name, inst in rows}
    for ext, package in EXTENSIONS.items():
        if ext not in found:
            raise DatabaseError(
                f"extension {ext} is not installed on the server {settings.host}:{settings.port}; "
                f"install the Debian package {package}"
            )
        if found[ext] is None:
            try:
                conn.execute(
                    sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext))
                )
            except psycopg.errors.InsufficientPrivilege:
                raise DatabaseError(
                    f"extension {ext} is not created in database {settings.dbname} and "
                    f"{settings.user('admin')} may not create it; ask a superuser to run "
                    f"CREATE EXTENSION {ext}"
                ) from None


def apply_migrations(settings: Settings) -> list[str]:
    """Apply pending migrations as the admin role; return the ids applied."""
    from yoyo import get_backend, read_migrations

    user = quote(settings.user("admin"), safe="")
    pw = settings.password("admin") or ""
    url = (
        f"postgresql+psycopg://{user}:{quote(pw, safe='')}@{settings.host}:{settings.port}/"
        f"{quote(settings.dbname, safe='')}"
    )
    backend = None
    try:
        backend = get_backend(url)
        migrations = read_migrations(str(migrations_dir()))
        with backend.lock():
            todo = backend.to_apply(migrations)
            backend.apply_migrations(todo)
        return [m.id for m in todo]
    except Exception as exc:  # yoyo wraps driver errors in several types
        msg = str(exc).replace(pw, "***") if pw else str(exc)
        first = msg.strip().splitlines()[0] if msg.strip() else type(exc).__name__
        raise DatabaseError(f"migration failed on {settings.describe('admin')}: {first}") from None
    finally:
        if backend is not None:
            backend.connection.close()


def apply_grants(conn: psycopg.Connection, settings: Settings) -> None:
    """Grant the writer and read-only roles their privileges (idempotent)."""
    db = sql.Identifier(settings.dbname)
    admin = sql.Identifier(settings.user("admin"))
    writer = sql.Identifier(settings.user("writer"))
    ro = sql.Identifier(settings.user("readonly"))
    stmts = [
        sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(db, writer, ro),
        sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(db, writer),
        sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}, {}").format(writer, ro),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(ro),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(
            writer
        ),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(writer),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT SELECT ON TABLES TO {}"
        ).format(admin, ro),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
        ).format(admin, writer),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
            "GRANT USAGE, SELECT ON SEQUENCES TO {}"
        ).format(admin, writer),
    ]
    for stmt in stmts:
        conn.execute(stmt)


def _ensure_roles(conn: psycopg.Connection, settings: Settings) -> None:
    """On a real server, create the writer and read-only roles if the admin may."""
    for role in ("writer", "readonly"):
        name = settings.user(role)
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
            continue
        pw = settings.password(role)
        if not pw:
            raise DatabaseError(
                f"role {name} does not exist and DB_{role.upper()}_PASS is not set to create it"
            )
        try:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(pw)
                )
            )
            if role == "readonly":
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
                        sql.Identifier(name)
                    )
                )
        except psycopg.errors.InsufficientPrivilege:
            raise DatabaseError(
                f"role {name} does not exist and {settings.user('admin')} may not create roles "
                "(needs CREATEROLE)"
            ) from None


def init_database(settings: Settings) -> list[str]:
    """Create or upgrade the schema and the roles; return the migrations applied.

    Running it twice is a no-op the second time.
    """
    if settings.embedded and settings.password("admin") is None:
        from photdb.db.connection import resolve

        settings = resolve(settings)
    with _admin_connect(settings) as conn:
        check_extensions(conn, settings)
        if not settings.embedded:
            _ensure_roles(conn, settings)
    applied = apply_migrations(settings)
    with _admin_connect(settings) as conn:
        apply_grants(conn, settings)
    return applied
