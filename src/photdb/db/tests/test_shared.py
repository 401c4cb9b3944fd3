"""A shared database: secrets, bookkeeping, role self-changes, schema versions, ports, layers."""

from __future__ import annotations

import ast
import os
import socket
from pathlib import Path

import psycopg
import pytest

from photdb.db import connect
from photdb.db.migrate import init_database, migration_ids
from photdb.db.server import EmbeddedServer
from photdb.db.tests.procs import destroy, home_env, leaks, run
from photdb.errors import DatabaseError

DB = Path(__file__).resolve().parents[1]
LAYERS = [
    "files",
    "pgbin",
    "server",
    "session",
    "migrate",
    "embedded",
    "connection",
]  # lowest first
REFUSED = (
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.ObjectNotInPrerequisiteState,  # a view that is not updatable
)


def test_db_layers_import_one_way():
    """No import loop inside photdb.db, not even inside functions."""
    for i, name in enumerate(LAYERS):
        tree = ast.parse((DB / f"{name}.py").read_text())
        imported = {
            node.module.rsplit(".", 1)[-1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("photdb.db.")
        }
        above = set(LAYERS[i:])
        assert not imported & above, f"{name} imports {sorted(imported & above)}"


def test_passwords_are_scram_verifiers_and_nowhere_in_clear(photdb_home, template_settings):
    server = EmbeddedServer(photdb_home)
    with server.connect_superuser() as su:
        rows = su.execute(
            "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s)",
            [list(template_settings.users.values())],
        ).fetchall()
    assert len(rows) == 3 and all(pw.startswith("SCRAM-SHA-256$") for _, pw in rows)
    assert leaks(photdb_home) == []
    for name in ("credentials.env", "pgpass"):
        path = photdb_home / name
        if path.exists():
            assert oct(path.stat().st_mode)[-3:] == "600"


def test_bookkeeping_is_the_admins(db_settings):
    for role in ("writer", "readonly"):
        with connect(role, db_settings, autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")  # privileges decide
            for stmt in (
                "DELETE FROM _yoyo_migration",
                "INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, now(), 1)",
                "SELECT count(*) FROM _yoyo_log",
                "UPDATE _yoyo_version SET version = 0",
                "DELETE FROM photdb_schema",
            ):
                with pytest.raises(REFUSED):
                    conn.execute(stmt)
            applied = {r[0] for r in conn.execute("SELECT migration_id FROM photdb_schema")}
            assert applied == set(migration_ids())


def test_a_stale_yoyo_lock_wedges_nothing(db_settings):
    with connect("admin", db_settings, autocommit=True) as admin:
        admin.execute("INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, now(), 999999)")
    assert init_database(db_settings) == []  # no wait for the dead pid, no manual repair
    with connect("admin", db_settings, autocommit=True) as admin:
        assert admin.execute("SELECT count(*) FROM yoyo_lock").fetchone() == (0,)


def test_an_older_schema_asks_for_db_init(db_settings):
    with connect("admin", db_settings, autocommit=True) as admin:
        admin.execute("DELETE FROM _yoyo_migration WHERE migration_id = %s", [migration_ids()[-1]])
    with pytest.raises(DatabaseError, match=r"lacks migration .*run `photdb db init`"):
        connect("writer", db_settings)
    with connect("admin", db_settings, autocommit=True) as admin:  # put it back
        admin.execute(
            "INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc)"
            " VALUES (md5(%s), %s, now())",
            [migration_ids()[-1], migration_ids()[-1]],
        )


def test_role_defaults_do_not_change_photdb_sessions(db_settings):
    """What a role can change about itself, and that photdb's sessions do not follow it."""
    db = db_settings.dbname
    with connect("writer", db_settings, autocommit=True) as w:
        for setting in ("default_transaction_read_only = on", "statement_timeout = 1",
                        "search_path = pg_catalog", "extra_float_digits = -15",
                        "jit = on"):  # fmt: skip
            w.execute(f"ALTER ROLE writer_user IN DATABASE {db} SET {setting}")
    with connect("readonly", db_settings, autocommit=True) as r:  # as it could from psql
        r.execute("SET default_transaction_read_only = off")
        r.execute(
            f"ALTER ROLE readonly_user IN DATABASE {db} SET default_transaction_read_only = off"
        )
        r.execute(f"ALTER ROLE readonly_user IN DATABASE {db} SET statement_timeout = 0")
    try:
        with connect("writer", db_settings) as w:  # a fresh session: the role defaults apply...
            w.execute("INSERT INTO photosys (band) VALUES ('guard')")  # ...but photdb's win
            assert w.execute("SELECT 1.0000000000000002::float8").fetchone()[0] != 1.0
            assert w.execute("SHOW search_path").fetchone()[0] == "public"
            assert w.execute("SHOW jit").fetchone()[0] == "off"
            w.rollback()
        with connect("readonly", db_settings) as r:
            assert r.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
            assert r.execute("SHOW statement_timeout").fetchone()[0] == "5min"
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                r.execute("INSERT INTO photosys (band) VALUES ('x')")
    finally:  # each role resets itself (the admin has no CREATEROLE)
        for role in ("writer", "readonly"):
            with connect(role, db_settings, autocommit=True) as conn:
                conn.execute("SET default_transaction_read_only = off")
                conn.execute(f"ALTER ROLE {db_settings.user(role)} IN DATABASE {db} RESET ALL")


def test_port_kept_across_restarts_and_taken_port_is_one_line(tmp_path):
    os.chmod(tmp_path, 0o711)
    home = tmp_path / "home"
    env = home_env(home)
    try:
        assert run(env, "db", "start").returncode == 0
        port = EmbeddedServer(home).port()
        assert run(env, "db", "stop").returncode == 0
        res = run(env, "db", "start")
        assert res.returncode == 0 and f":{port} " in res.stdout
        assert run(env, "db", "stop").returncode == 0
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            res = run(env, "db", "url")
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 1 and len(lines) == 1, res.stderr
        assert f"port {port}" in lines[0] and "taken by another program" in lines[0]
        res = run(env, "db", "start", "--port", str(port + 1 if port < 65535 else port - 1))
        assert res.returncode == 0, res.stderr
        assert EmbeddedServer(home).port() != port
        # a role changes its own password: photdb cannot log in as it until `db init`
        with connect("writer", _settings(env), autocommit=True) as w:
            verifier = w.pgconn.encrypt_password(b"changed", b"writer_user", b"scram-sha-256")
            w.execute(f"ALTER ROLE writer_user PASSWORD '{verifier.decode()}'")
        res = run(env, "delete", "night", "1999-01-01")  # connects as the writer
        assert res.returncode == 1 and "password authentication failed" in res.stderr
        assert run(env, "db", "init").returncode == 0
        with connect("writer", _settings(env)) as w:
            assert w.execute("SELECT current_user").fetchone() == ("writer_user",)
        assert leaks(home) == []
    finally:
        destroy(home)


def _settings(env):
    from photdb.db.connection import resolve
    from photdb.settings import load_settings

    return resolve(load_settings(env_file=None, environ=env))
