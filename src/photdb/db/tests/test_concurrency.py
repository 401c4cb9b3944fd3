"""Any number of photdb commands at once, on a fresh and on a warm home.

Each round starts 8 real ``photdb`` processes together. On a fresh home the
first of them creates the cluster while the others wait for it; on a warm home
they only connect. Every process must succeed, every file and point must be
stored exactly once, and no password may appear in any file under the home,
the server's log or the server's environment.
"""

from __future__ import annotations

import os
import re

import pytest

from photdb.db.tests.procs import (
    STARS,
    destroy,
    finish,
    home_env,
    leaks,
    run,
    start,
    write_folder,
    write_objects,
    write_points,
)

ROUNDS = 5
N_POINTS = 50  # per star and file


def _sql(env, query: str) -> str:
    """Run a query through a fresh process-independent connection (the admin role)."""
    import psycopg

    from photdb.db.connection import resolve
    from photdb.settings import load_settings

    settings = resolve(load_settings(env_file=None, environ=env))
    with psycopg.connect(
        host=settings.host, port=settings.port, dbname=settings.dbname,
        user=settings.user("admin"), password=settings.password("admin"),
    ) as conn:  # fmt: skip
        return conn.execute(query).fetchall()


def _check(results, what):
    for (code, out, err), cmd in zip(results, what, strict=True):
        assert code == 0, f"{cmd}: exit {code}: {err.strip()[-400:]}"
        assert "Traceback" not in err + out, f"{cmd}: {err[-400:]}"


def _counts(env) -> dict[str, int]:
    names = ("galexposures", "observations", "objects", "lightcurves", "datasources", "photosys")
    row = _sql(env, "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in names))[0]
    return dict(zip(names, row, strict=True))


def _no_duplicates(env) -> None:
    dup = _sql(
        env,
        "SELECT (SELECT count(*) - count(DISTINCT sha256) FROM galexposures),"
        " (SELECT count(*) - count(DISTINCT (path, filename)) FROM galexposures),"
        " (SELECT count(*) - count(DISTINCT gaia_name) FROM objects),"
        " (SELECT count(*) - count(DISTINCT (object_id, dateobs, photosys_id, datasource_id))"
        "  FROM lightcurves),"
        " (SELECT count(*) FROM (SELECT band FROM photosys GROUP BY band HAVING count(*) > 1) b)",
    )[0]
    assert dup == (0, 0, 0, 0, 0)


def test_fresh_homes(tmp_path):
    """5 rounds, each on a new home: ingests of one folder, object loads, cone, lightcurve, URLs."""
    os.chmod(tmp_path, 0o711)
    data = tmp_path / "data"
    write_folder(data / "night", seed=1)
    objects = write_objects(data / "objects.ecsv")
    for r in range(ROUNDS):
        home = tmp_path / f"home{r}"
        env = home_env(home)
        try:
            what = [
                ("ingest", data / "night"),
                ("ingest", data / "night"),
                ("ingest", data / "night"),
                ("objects", "load", objects),
                ("objects", "load", objects),
                ("cone", "325.679", "43.5862", "6arcmin"),
                ("lightcurve", "--ra", "325.679", "--dec", "43.5862", "--format", "csv"),
                ("db", "url", "--role", "readonly"),
            ]
            if r % 2:  # lighter rounds: the creation race with more plain connections
                what[4:5] = [("db", "url", "--role", "writer")]
                what[2:3] = [("db", "url", "--role", "admin")]
            results = finish([start(env, *cmd) for cmd in what])
            _check(results, what)
            pairs = zip(results, what, strict=True)
            ingests = [out for (_, out, _), cmd in pairs if cmd[0] == "ingest"]
            for out in ingests:
                assert re.search(r"\d ingested, \d already present, 0 failed", out), out
            assert sum(int(re.search(r"(\d) ingested", o).group(1)) for o in ingests) == 3
            assert _counts(env) == {
                "galexposures": 3, "observations": 3, "objects": len(STARS),
                "lightcurves": 0, "datasources": 0, "photosys": 0,
            }  # fmt: skip
            _no_duplicates(env)
            assert results[-1][1].startswith("postgresql://readonly_user@127.0.0.1:")
            assert leaks(home) == []
        finally:
            destroy(home)


@pytest.fixture
def warm_home(tmp_path):
    os.chmod(tmp_path, 0o711)
    home = tmp_path / "warm"
    env = home_env(home)
    try:
        res = run(env, "objects", "load", write_objects(tmp_path / "objects.ecsv"))
        assert res.returncode == 0, res.stderr
        yield home, env
    finally:
        destroy(home)


def test_warm_home(warm_home, tmp_path):
    """5 rounds on one home: new and old files, new and repeated points, readers alongside."""
    home, env = warm_home
    objects = tmp_path / "objects.ecsv"
    for r in range(ROUNDS):
        folder = write_folder(tmp_path / f"night{r}", seed=10 + r)[0].parent
        points = write_points(tmp_path / f"lc{r}.csv", N_POINTS, start_jd=2459000.5 + r)
        what = [
            ("ingest", folder),
            ("ingest", folder),
            ("objects", "load", objects),
            ("lightcurves", "load", points, "--datasource", "KOL", "--band", "V"),
            ("lightcurves", "load", points, "--datasource", "KOL", "--band", "V"),
            ("lightcurves", "load", points, "--datasource", "KOL", "--band", "V"),
            ("cone", "325.679", "43.5862", "1deg"),
            ("lightcurve", "SS Cyg", "--format", "csv"),
        ]
        results = finish([start(env, *cmd) for cmd in what])
        _check(results, what)
        inserted = [int(re.search(r": (\d+) inserted", o).group(1)) for _, o, _ in results[3:6]]
        assert sorted(inserted) == [0, 0, N_POINTS * len(STARS)], inserted
        assert _counts(env) == {
            "galexposures": 3 * (r + 1), "observations": 3 * (r + 1), "objects": len(STARS),
            "lightcurves": N_POINTS * len(STARS) * (r + 1), "datasources": 1, "photosys": 1,
        }  # fmt: skip
        _no_duplicates(env)
        # the reader saw a consistent light curve: whole files of points, never half
        n_ss = len(results[7][1].strip().splitlines()) - 1
        assert n_ss % N_POINTS == 0 and n_ss <= N_POINTS * (r + 1)
    assert leaks(home) == []
