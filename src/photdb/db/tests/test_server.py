"""The embedded cluster as users drive it: start, status, url, stop."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import psycopg


def _photdb(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "photdb", *args],
        capture_output=True,
        text=True,
        env=env or os.environ.copy(),
        timeout=300,
    )


def test_status_and_url_usable_by_psql(photdb_home):
    res = _photdb("db", "status")
    assert res.returncode == 0 and "running" in res.stdout
    url = _photdb("db", "url", "--role", "writer").stdout.strip()
    assert url.startswith("postgresql://writer_user@127.0.0.1:")
    creds = (photdb_home / "credentials.env").read_text()
    for line in creds.splitlines()[1:]:
        assert line.split("=", 1)[1] not in url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("writer_user",)
    if shutil.which("psql"):
        out = subprocess.run(
            ["psql", url, "-Atc", "SELECT count(*) FROM galexposures"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0 and out.stdout.strip() == "0", out.stderr


def test_fresh_home_started_on_first_use_then_stopped(tmp_path):
    home = tmp_path / "fresh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    env.update(PHOTDB_HOME=str(home), PHOTDB_ENV_FILE=str(tmp_path / "none.env"))
    os.chmod(tmp_path, 0o711)
    try:
        assert _photdb("db", "status", env=env).returncode == 3
        res = _photdb("db", "init", env=env)
        assert res.returncode == 0, res.stderr
        assert _photdb("db", "status", env=env).returncode == 0
        assert oct((home / "credentials.env").stat().st_mode)[-3:] == "600"
        res = _photdb("db", "stop", env=env)
        assert res.returncode == 0 and "stopped" in res.stdout
        assert _photdb("db", "status", env=env).returncode == 3
    finally:
        from photdb.db.server import EmbeddedServer

        EmbeddedServer(home).destroy()  # also removes a /var/lib/photdb target


def test_shared_buffers_follow_the_memory_photdb_may_use(tmp_path, monkeypatch):
    """A quarter of the memory, 256 MB to 8 GB, a container's limit counted; 256 MB for
    throw-away clusters."""
    from photdb.db import server

    page = os.sysconf("SC_PAGE_SIZE")
    monkeypatch.setattr(server, "_cgroup_memory_limit", lambda: None)
    monkeypatch.setattr(
        os, "sysconf", lambda k: page if k == "SC_PAGE_SIZE" else (16 << 30) // page
    )
    assert server.EmbeddedServer(tmp_path)._shared_buffers_mb() == 4096
    assert server.EmbeddedServer(tmp_path, fast=True)._shared_buffers_mb() == 256
    monkeypatch.setattr(server, "_cgroup_memory_limit", lambda: 2 << 30)  # a 2 GB container
    assert server.EmbeddedServer(tmp_path)._shared_buffers_mb() == 512
    monkeypatch.setattr(server, "_cgroup_memory_limit", lambda: 512 << 20)
    assert server.EmbeddedServer(tmp_path)._shared_buffers_mb() == 256
    monkeypatch.setattr(server, "_cgroup_memory_limit", lambda: None)
    monkeypatch.setattr(
        os, "sysconf", lambda k: page if k == "SC_PAGE_SIZE" else (256 << 30) // page
    )
    assert server.EmbeddedServer(tmp_path)._shared_buffers_mb() == 8192
