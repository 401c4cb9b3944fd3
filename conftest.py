"""Test session fixtures: a real, disposable PostgreSQL cluster with q3c and pgSphere.

The session starts its own embedded cluster (the same code users run) in a
temporary ``$PHOTDB_HOME``; every test that asks for ``db_settings`` gets a
fresh database cloned from the migrated template, so tests never see each
other's rows. Database tests are never skipped: if the cluster cannot start,
they fail.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time

import psycopg
import pytest
from psycopg import sql

_counter = itertools.count()
TEMPLATE = "photdb_template"


def _clone(server, source, name, owner):
    """CREATE DATABASE name TEMPLATE source, retrying while a closing session lingers."""
    for attempt in range(50):
        try:
            with server.connect_superuser() as conn:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(source), sql.Identifier(owner)
                    )
                )
            return
        except psycopg.errors.ObjectInUse:
            if attempt == 49:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def photdb_home(tmp_path_factory):
    """A private ``$PHOTDB_HOME`` with a running, migrated cluster."""
    from photdb.db.embedded import ensure_embedded
    from photdb.db.server import EmbeddedServer
    from photdb.settings import load_settings

    home = tmp_path_factory.mktemp("photdb_home")
    os.chmod(home, 0o711)
    old = {k: os.environ.get(k) for k in ("PHOTDB_HOME", "DB_HOST", "PHOTDB_ENV_FILE")}
    os.environ["PHOTDB_HOME"] = str(home)
    os.environ.pop("DB_HOST", None)
    os.environ["PHOTDB_ENV_FILE"] = str(home / "no.env")
    server = EmbeddedServer(home, fast=True)
    ensure_embedded(server, "photdb")
    assert load_settings().embedded
    _clone(server, "photdb", TEMPLATE, "photdb_admin")
    yield home
    server.destroy()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def template_settings(photdb_home):
    """Resolved settings of the session cluster's ``photdb`` database (the template)."""
    from photdb.db.connection import resolve
    from photdb.settings import load_settings

    return resolve(load_settings())


@contextlib.contextmanager
def new_database(template_settings):
    """A fresh, fully migrated database cloned from the template; dropped afterwards.

    Module-scoped fixtures (e.g. a processed survey shared by several tests) use
    this directly; single tests ask for ``db_settings``.
    """
    from photdb.db.migrate import apply_grants
    from photdb.db.server import EmbeddedServer

    name = f"photdb_t{os.getpid()}_{next(_counter)}"
    server = EmbeddedServer(template_settings.home)
    _clone(server, TEMPLATE, name, template_settings.user("admin"))
    settings = template_settings.with_dbname(name)
    try:
        with psycopg.connect(
            host=settings.host,
            port=settings.port,
            dbname=name,
            user=settings.user("admin"),
            password=settings.password("admin"),
            autocommit=True,
        ) as conn:
            apply_grants(conn, settings)
        yield settings
    finally:
        with server.connect_superuser() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def db_settings(template_settings):
    """Settings pointing at a fresh, fully migrated database for this test."""
    with new_database(template_settings) as settings:
        yield settings
