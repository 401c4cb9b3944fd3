"""Bad settings give one clear line and a non-zero exit, never a password."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from photdb.db import connect
from photdb.db import migrate as migrate_mod
from photdb.errors import DatabaseError
from photdb.settings import load_settings


def _run(args, env_extra, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    env.update(env_extra)
    env["PHOTDB_ENV_FILE"] = str(tmp_path / "absent.env")
    return subprocess.run(
        [sys.executable, "-m", "photdb", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _server_env(settings, **over):
    env = {
        "DB_HOST": settings.host,
        "DB_PORT": str(settings.port),
        "DB_NAME": settings.dbname,
        "DB_ADMIN_USER": settings.user("admin"),
        "DB_ADMIN_PASS": settings.password("admin"),
        "DB_WRITER_USER": settings.user("writer"),
        "DB_WRITER_PASS": settings.password("writer"),
        "DB_READONLY_USER": settings.user("readonly"),
        "DB_READONLY_PASS": settings.password("readonly"),
    }
    env.update(over)
    return env


def test_wrong_password_is_one_line_without_the_password(template_settings, tmp_path):
    secret = "Sup3rSecretWrongPw"
    res = _run(["db", "init"], _server_env(template_settings, DB_ADMIN_PASS=secret), tmp_path)
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "password authentication failed" in lines[0]
    assert "photdb_admin@" in lines[0]
    assert secret not in res.stderr + res.stdout


def test_unreachable_server(template_settings, tmp_path):
    res = _run(["db", "init"], _server_env(template_settings, DB_PORT="1"), tmp_path)
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot connect" in lines[0] and ":1/" in lines[0]


def test_real_server_init_is_idempotent(template_settings, tmp_path):
    res = _run(["db", "init"], _server_env(template_settings), tmp_path)
    assert res.returncode == 0, res.stderr
    assert "up to date" in res.stdout


def test_verbose_never_prints_passwords(template_settings, tmp_path):
    env = _server_env(template_settings)
    res = _run(["--verbose", "db", "init"], env, tmp_path)
    assert res.returncode == 0, res.stderr
    for role in ("admin", "writer", "readonly"):
        assert template_settings.password(role) not in res.stdout + res.stderr


def test_missing_extension_is_named(db_settings, monkeypatch):
    monkeypatch.setitem(migrate_mod.EXTENSIONS, "no_such_ext", "postgresql-15-no-such-ext")
    with connect("admin", db_settings, autocommit=True) as conn:
        with pytest.raises(
            DatabaseError, match="extension no_such_ext is not installed.*postgresql-15-no-such-ext"
        ):
            migrate_mod.check_extensions(conn, db_settings)


def test_extension_not_creatable_by_admin(db_settings):
    with connect("admin", db_settings, autocommit=True) as conn:
        from photdb.db.server import EmbeddedServer

        with EmbeddedServer(db_settings.home).connect_superuser(db_settings.dbname) as su:
            su.execute("DROP EXTENSION q3c CASCADE")
        with pytest.raises(DatabaseError, match="ask a superuser to run CREATE EXTENSION q3c"):
            migrate_mod.check_extensions(conn, db_settings)


def test_readonly_write_via_cli_style_connection(db_settings):
    import psycopg

    with (
        connect("readonly", db_settings) as ro,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        ro.execute("INSERT INTO photosys (band) VALUES ('V')")


def test_env_file_and_environment_precedence(tmp_path, caplog):
    env_file = tmp_path / ".env"
    env_file.write_text("DB_HOST=filehost\nDB_NAME=vo\nDB_WRITER_USER=w\nDB_WRITER_PASS=pw1\n")
    os.chmod(env_file, 0o644)
    with caplog.at_level("WARNING", logger="photdb"):
        s = load_settings(env_file, environ={"DB_NAME": "fromenv"})
    assert not s.embedded and s.host == "filehost" and s.dbname == "fromenv"
    assert s.user("writer") == "w" and s.password("writer") == "pw1"
    assert "pw1" not in repr(s)
    assert any("readable by other users" in r.message for r in caplog.records)
    os.chmod(env_file, 0o600)
    caplog.clear()
    with caplog.at_level("WARNING", logger="photdb"):
        load_settings(env_file, environ={})
    assert not caplog.records


def test_no_host_means_embedded(tmp_path):
    s = load_settings(None, environ={"PHOTDB_HOME": str(tmp_path / "h")})
    assert s.embedded and s.home == tmp_path / "h"
