"""The three roles of the archive document, on a real cluster."""

from __future__ import annotations

import psycopg
import pytest

from photdb.db import connect
from photdb.db.migrate import apply_migrations, init_database

ACL_QUERY = (
    "SELECT relname, relacl::text FROM pg_class "
    "WHERE relnamespace = 'public'::regnamespace ORDER BY relname"
)


def _fails(conn, statement, errtype=psycopg.errors.InsufficientPrivilege):
    with pytest.raises(errtype):
        conn.execute(statement)


def test_readonly_cannot_write_even_after_unsetting_read_only(db_settings):
    with connect("readonly", db_settings, autocommit=True) as ro:
        assert ro.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        ro.execute("SET default_transaction_read_only = off")
        _fails(ro, "INSERT INTO photosys (band) VALUES ('V')")
        _fails(ro, "UPDATE observations SET mode = 'x'")
        _fails(ro, "DELETE FROM objects")
        _fails(ro, "CREATE TEMP TABLE t (a int)")
        _fails(ro, "CREATE TABLE t (a int)")
        _fails(ro, "SELECT nextval('galsources_id_seq')")
        _fails(ro, "SELECT lo_create(0)")
        _fails(ro, "TRUNCATE lightcurves")
        assert ro.execute("SELECT count(*) FROM galsources").fetchone() == (0,)


def test_writer_writes_but_cannot_change_structure(db_settings):
    with connect("writer", db_settings, autocommit=True) as w:
        w.execute("INSERT INTO photosys (band) VALUES ('V')")
        w.execute("UPDATE photosys SET system = 'Johnson' WHERE band = 'V'")
        w.execute("CREATE TEMP TABLE scratch (a int)")
        _fails(w, "ALTER TABLE photosys ADD COLUMN q int")
        _fails(w, "DROP TABLE photosys")
        _fails(w, "CREATE TABLE t (a int)")
        w.execute("DELETE FROM photosys WHERE band = 'V'")


def test_later_migration_table_readable_without_grant(db_settings):
    with connect("admin", db_settings, autocommit=True) as admin:
        admin.execute("CREATE TABLE added_later (a int)")
        admin.execute("INSERT INTO added_later VALUES (1)")
    with connect("readonly", db_settings) as ro:
        assert ro.execute("SELECT a FROM added_later").fetchall() == [(1,)]
    with connect("writer", db_settings, autocommit=True) as w:
        w.execute("INSERT INTO added_later VALUES (2)")


def test_init_twice_is_a_noop(db_settings):
    with connect("admin", db_settings) as admin:
        before = admin.execute(ACL_QUERY).fetchall()
    assert init_database(db_settings) == []
    assert apply_migrations(db_settings) == []
    with connect("admin", db_settings) as admin:
        after = admin.execute(ACL_QUERY).fetchall()
    assert before == after


def test_everything_owned_by_admin(db_settings):
    with connect("admin", db_settings) as admin:
        owners = admin.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    assert owners == [(db_settings.user("admin"),)]
