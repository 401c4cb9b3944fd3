"""``kill -9`` at random moments: nothing half-written, nothing wedged, a re-run completes.

20 clients are killed (ingests part-way through a folder, light-curve loads,
and first commands on fresh homes while they create the cluster), and the
server once, under a running ingest. After every kill the home must still
work, every FITS file must be whole or absent and every light-curve file all
or nothing; at the end a re-run stores the complete set, each thing once.
"""

from __future__ import annotations

import os
import random
import re
import signal
import time

import pytest

from photdb.db.tests.procs import (
    STARS,
    destroy,
    finish,
    home_env,
    kill,
    leaks,
    run,
    start,
    write_folder,
    write_objects,
    write_points,
)

N_FILES = 10
N_LC = 4  # light-curve files, one data source each
N_POINTS = 2000  # per star and file


def _connect(env, role="admin"):
    from photdb.db import connect
    from photdb.settings import load_settings

    return connect(role, load_settings(env_file=None, environ=env), autocommit=True)


def _whole(env) -> tuple[int, dict[str, int]]:
    """Check that every file is whole; return (files stored, points per data source)."""
    with _connect(env) as conn:
        bad = conn.execute(
            "SELECT e.filename, e.n_images, count(g.id), count(o.id), count(m.id)"
            " FROM galexposures e LEFT JOIN galimages g ON g.galexposure_id = e.id"
            " LEFT JOIN observations o ON o.id = g.id"
            " LEFT JOIN metadata_obs_json m ON m.observation_id = o.id GROUP BY e.id"
            " HAVING NOT (e.n_images = count(g.id) AND count(g.id) = count(o.id)"
            " AND count(o.id) = count(m.id) AND count(g.id) > 0)"
        ).fetchall()
        assert bad == []
        orphans = conn.execute(
            "SELECT count(*) FROM observations o WHERE NOT EXISTS"
            " (SELECT 1 FROM galimages g WHERE g.id = o.id)"
        ).fetchone()[0]
        assert orphans == 0
        files = conn.execute("SELECT count(*) FROM galexposures").fetchone()[0]
        points = dict(
            conn.execute(
                "SELECT d.progid, count(l.id) FROM datasources d"
                " LEFT JOIN lightcurves l ON l.datasource_id = d.id GROUP BY d.progid"
            ).fetchall()
        )
    for progid, n in points.items():
        assert n in (0, N_POINTS * len(STARS)), (progid, n)  # all or nothing
    return files, points


def _kill_after_progress(env, rng, folder):
    """Start an ingest and kill it after a random number of files, mid-way into the next."""
    proc = start(env, "ingest", folder)
    want = rng.randrange(0, N_FILES)
    seen = 0
    while seen < want:
        line = proc.stdout.readline()
        if not line:
            break
        seen += bool(re.match(r"\[\d+/\d+\]", line))
    time.sleep(rng.uniform(0.0, 0.05))
    return kill(proc)


@pytest.fixture
def home(tmp_path):
    os.chmod(tmp_path, 0o711)
    home = tmp_path / "home"
    try:
        yield home
    finally:
        destroy(home)


def test_kill_clients_and_server(home, tmp_path):
    rng = random.Random(20240605)
    env = home_env(home)
    folder = write_folder(tmp_path / "night", seed=3, n=N_FILES)[0].parent
    lcs = [
        write_points(tmp_path / f"lc{k}.csv", N_POINTS, start_jd=2459100.5 + k) for k in range(N_LC)
    ]
    res = run(env, "objects", "load", write_objects(tmp_path / "objects.ecsv"))
    assert res.returncode == 0, res.stderr
    kills = 0
    # clients killed during ingests and light-curve loads
    for k in range(16):
        if k % 2 == 0:
            status = _kill_after_progress(env, rng, folder)
        else:
            lc = lcs[k // 2 % N_LC]
            for attempt in range(3):  # a fast machine may finish first: try again, sooner
                proc = start(env, "lightcurves", "load", lc, "--datasource", lc.stem, "--band", "V")
                time.sleep(rng.uniform(0.3, 1.8) / (1 + attempt))
                status = kill(proc)
                if status == -signal.SIGKILL:
                    break
                _whole(env)
        kills += status == -signal.SIGKILL
        _whole(env)  # the next command (a connection) works, and nothing is half-written
    # first commands on a fresh home, each killed while it creates (or finishes creating) the
    # cluster; the next command completes it
    fresh = tmp_path / "fresh"
    fenv = home_env(fresh)
    try:
        for _ in range(4):
            proc = start(fenv, "db", "url")
            time.sleep(rng.uniform(0.3, 2.5))
            kills += kill(proc) == -signal.SIGKILL
        res = run(fenv, "objects", "load", tmp_path / "objects.ecsv")
        assert res.returncode == 0, res.stderr
        assert f"{len(STARS)} inserted" in res.stdout
        assert leaks(fresh) == []
    finally:
        destroy(fresh)
    assert kills >= 14  # most kills landed while the command was still running
    # the server, killed under a running ingest: the client stops with one line
    with _connect(env) as conn:
        conn.execute("DELETE FROM galexposures")
    proc = start(env, "ingest", folder)
    assert re.match(r"\[1/", proc.stdout.readline())
    pid = int(((home / "pg").resolve() / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    ((code, out, err),) = finish([proc])
    assert code == 1 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "lost" in lines[0] and "database server" in lines[0], err
    # the next command restarts the server; a re-run completes the set, each thing once
    res = run(env, "ingest", folder)
    assert res.returncode == 0, res.stderr
    assert re.search(rf"\d+ ingested, \d+ already present, 0 failed \({N_FILES} files", res.stdout)
    for lc in lcs:
        res = run(env, "lightcurves", "load", lc, "--datasource", lc.stem, "--band", "V")
        assert res.returncode == 0, res.stderr
    files, points = _whole(env)
    assert files == N_FILES
    assert points == {lc.stem: N_POINTS * len(STARS) for lc in lcs}
    again = run(env, "ingest", folder)
    assert f"0 ingested, {N_FILES} already present, 0 failed" in again.stdout
    assert leaks(home) == []
