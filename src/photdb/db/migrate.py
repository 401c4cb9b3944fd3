"""Schema creation and upgrades (yoyo-migrations, run as the admin role) and the three roles.

``init_database`` is idempotent: a second run applies nothing and changes no
privilege. It is the only place, with the embedded cluster's creation, that
changes schema or roles; ordinary commands only connect. The roles follow the
archive document:

* **admin** owns every table and runs migrations; it alone may read or write
  yoyo's bookkeeping tables (``_yoyo_migration``, ``_yoyo_log``,
  ``_yoyo_version``, ``yoyo_lock``);
* **writer** may SELECT/INSERT/UPDATE/DELETE and use sequences, but owns nothing
  and cannot create or alter tables;
* **readonly** may only SELECT. It has no write privilege anywhere, so
  ``SET default_transaction_read_only = off`` gains it nothing; it cannot create
  temporary tables (TEMP is revoked from PUBLIC) or large objects; default
  privileges make every table a later migration adds readable by it.

Migrations are serialised by a PostgreSQL session-level advisory lock, held by
the migrating session: if that process is killed the server drops the lock with
the session, so nothing stale is left behind (yoyo's own lock table is cleared
under it). Each migration and its bookkeeping row commit in one transaction.
Every role can see which migrations are applied through the ``photdb_schema``
view, which is how ordinary commands notice a database older than their code.

Role passwords are sent as SCRAM-SHA-256 verifiers computed on the client
(libpq's ``PQencryptPasswordConn``), never as plaintext in a statement.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql

from photdb.db.session import open_session, reason
from photdb.errors import ConfigError, DatabaseError
from photdb.settings import Settings

__all__ = [
    "BOOKKEEPING_TABLES",
    "EXTENSIONS",
    "apply_grants",
    "apply_migrations",
    "check_extensions",
    "init_database",
    "migration_ids",
    "missing_migrations",
    "password_verifier",
]

EXTENSIONS = {"q3c": "postgresql-15-q3c", "pg_sphere": "postgresql-15-pgsphere"}
#: yoyo's own tables: the admin role's alone.
BOOKKEEPING_TABLES = ("_yoyo_migration", "_yoyo_log", "_yoyo_version", "yoyo_lock")
#: pg_advisory_lock key serialising migrations (and grants) per database.
MIGRATION_LOCK = 0x70686F74_64620001


def migrations_dir() -> Path:
    """The directory of ordered SQL migration files shipped with photdb."""
    return Path(str(resources.files("photdb.db") / "migrations"))


def migration_ids() -> list[str]:
    """Ids of the migrations shipped with this photdb (file names without ``.sql``)."""
    return sorted(p.name[: -len(".sql")] for p in migrations_dir().glob("*.sql"))


def missing_migrations(conn: psycopg.Connection) -> list[str] | None:
    """Shipped migrations the database lacks, or None if it has no ``photdb_schema`` view.

    Any role may call it; it reads only the ``photdb_schema`` view.
    """
    try:
        with conn.transaction():
            rows = conn.execute("SELECT migration_id FROM photdb_schema").fetchall()
    except psycopg.errors.UndefinedTable:
        return None
    applied = {r[0] for r in rows}
    return [m for m in migration_ids() if m not in applied]


def password_verifier(conn: psycopg.Connection, user: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of ``password`` for ``user``, computed by libpq locally."""
    raw = conn.pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256")
    return raw.decode("ascii")


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


def _backend(conn: psycopg.Connection):
    """A yoyo backend over ``conn``: no URL (so no password in one), atomic apply + mark."""
    from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
    from yoyo.connections import parse_uri
    from yoyo.migrations import default_migration_table

    class _Backend(PostgresqlPsycopgBackend):
        def connect(self, dburi):
            return conn

        def apply_one(self, migration, force=False, mark=True):
            # yoyo commits a migration and marks it applied in two transactions;
            # a process killed between them would leave an applied, unmarked
            # migration. Here both happen in one.
            self.ensure_internal_schema_updated()
            with self.transaction():
                migration.process_steps(self, "apply", force=force)
                self.log_migration(migration, "apply")
                if mark:
                    self.mark_one(migration, log=False)

    backend = _Backend(parse_uri("postgresql+psycopg:///photdb"), default_migration_table)
    backend.init_database()
    return backend


def _migrate(conn: psycopg.Connection, settings: Settings) -> list[str]:
    """Apply pending migrations on ``conn`` (admin, autocommit, advisory lock held)."""
    from yoyo import read_migrations

    try:
        backend = _backend(conn)
        backend.break_lock()  # any row there is stale: we hold the advisory lock
        todo = backend.to_apply(read_migrations(str(migrations_dir())))
        backend.apply_migrations(todo)
        return [m.id for m in todo]
    except Exception as exc:  # yoyo wraps driver errors in several types
        raise DatabaseError(
            f"migration failed on {settings.describe('admin')}: "
            f"{reason(exc, settings.password('admin'))}"
        ) from None


def _lock(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])


def apply_migrations(settings: Settings) -> list[str]:
    """Apply pending migrations as the admin role; return the ids applied."""
    _need_resolved(settings)
    with open_session("admin", settings, autocommit=True) as conn:
        _lock(conn)
        return _migrate(conn, settings)


def _exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f"public.{name}"]).fetchone()[0]


def apply_grants(conn: psycopg.Connection, settings: Settings) -> None:
    """Grant the writer and read-only roles their privileges (idempotent).

    Everything in ``public`` is readable by both and writable by the writer,
    except yoyo's bookkeeping tables (the admin role's alone) and the
    ``photdb_schema`` view (read-only for both).
    """
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
    for table in BOOKKEEPING_TABLES:
        if _exists(conn, table):
            stmts.append(
                sql.SQL("REVOKE ALL ON TABLE {} FROM PUBLIC, {}, {}").format(
                    sql.Identifier(table), writer, ro
                )
            )
    if _exists(conn, "photdb_schema"):
        stmts.append(
            sql.SQL("REVOKE ALL ON TABLE photdb_schema FROM PUBLIC, {}, {}").format(writer, ro)
        )
        stmts.append(sql.SQL("GRANT SELECT ON TABLE photdb_schema TO {}, {}").format(writer, ro))
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
        verifier = password_verifier(conn, name, pw)
        try:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(verifier)
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


def _need_resolved(settings: Settings) -> None:
    if settings.embedded and not settings.password("admin"):
        raise ConfigError(
            "the embedded cluster's settings are not resolved: "
            "use photdb.db.connection.resolve(settings) first"
        )


def init_database(settings: Settings) -> list[str]:
    """Create or upgrade the schema and the roles; return the migrations applied.

    Serialised per database by an advisory lock held for the whole run, so any
    number of concurrent calls is safe; running it twice is a no-op the
    second time. ``settings`` must be resolved (port and passwords known).
    """
    _need_resolved(settings)
    with open_session("admin", settings, autocommit=True) as conn:
        _lock(conn)
        check_extensions(conn, settings)
        if not settings.embedded:
            _ensure_roles(conn, settings)
        applied = _migrate(conn, settings)
        apply_grants(conn, settings)
    return applied
