"""The galsources writer stores exactly the rows it is given; migration 0009's layout.

Real PostgreSQL (a fresh migrated database per test); concurrent writers are
separate processes.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import psycopg
from astropy.table import Table

from photdb.db import connect
from photdb.db.migrate import apply_migrations, migrations_dir
from photdb.survey import queries, store

FLOATS = ("mag", "magerr", "magerr_raw", "flux", "dflux", "x", "y", "qf", "rchi2", "fracflux")
COLUMNS = ("id", "galimage_id", "ra", "dec", *FLOATS, "ref_id", "flags")


def catalogue(seed: int, n: int, ra: np.ndarray | None = None, dec=None) -> Table:
    """A pipeline-like catalogue: random positions (or the given ones), NaNs here and there."""
    rng = np.random.default_rng(seed)
    cols = {
        "ra": rng.uniform(270.0, 271.0, n) if ra is None else ra,
        "dec": rng.uniform(-29.5, -28.5, n) if dec is None else dec,
    }
    for k in FLOATS:
        v = rng.normal(18.0, 3.0, n).astype(np.float32).astype(float)
        v[rng.random(n) < 0.03] = np.nan  # stored as NULL, never as a number
        cols[k] = v
    cols["flags"] = rng.integers(0, 4, n)
    return Table(cols)


def _images(conn: psycopg.Connection, ids: list[int]) -> None:
    conn.execute("INSERT INTO galexposures (id, filename, path, sha256, mjd)"
                 " VALUES (1, 'e.fits', '/d', repeat('e', 64), 59300)")  # fmt: skip
    for i in ids:
        conn.execute("INSERT INTO observations (id) VALUES (%s)", [i])
        conn.execute("INSERT INTO galimages (id, galexposure_id, hdu) VALUES (%s, 1, %s)", [i, i])


def _stored(conn: psycopg.Connection, ids: np.ndarray) -> dict[str, np.ndarray]:
    rows = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM galsources WHERE id = ANY(%s::bigint[])"
        " ORDER BY array_position(%s::bigint[], id)",
        [ids.tolist(), ids.tolist()],
    ).fetchall()
    return {c: np.array([r[k] for r in rows], dtype=object) for k, c in enumerate(COLUMNS)}


def _assert_same(got: dict, cat: Table, galimage_id: int, ref_ids) -> None:
    assert len(got["id"]) == len(cat)
    assert (got["galimage_id"] == galimage_id).all()
    for k in ("ra", "dec"):  # float8: exact
        assert np.array_equal(got[k].astype(float), np.asarray(cat[k]))
    for k in FLOATS:  # float4 (read back as text, shortest exact); NaN is NULL
        want = np.asarray(cat[k])
        isnull = np.array([v is None for v in got[k]])
        assert np.array_equal(isnull, np.isnan(want)), k
        stored = got[k][~isnull].astype(float).astype(np.float32)
        assert np.array_equal(stored, want[~isnull].astype(np.float32)), k
    assert np.array_equal(got["flags"].astype(int), np.asarray(cat["flags"]))
    if ref_ids is None:
        assert all(v is None for v in got["ref_id"])
    else:
        assert np.array_equal(got["ref_id"].astype(np.int64), ref_ids)


def test_writer_stores_exactly_the_rows_given(db_settings):
    n = 3 * store.COPY_BLOCK_ROWS + 17  # several COPY blocks, each with NULL patterns
    ref_cat = catalogue(1, n)
    with connect("writer", settings=db_settings) as conn:
        _images(conn, [1, 2])
        with conn.transaction(), conn.cursor() as cur:
            ref_ids = store.write_sources(cur, 1, ref_cat)
        # forced at the reference positions, in a different row order
        perm = np.random.default_rng(2).permutation(n)[: n - 100]
        forced = catalogue(3, len(perm), ra=np.asarray(ref_cat["ra"])[perm],
                           dec=np.asarray(ref_cat["dec"])[perm])  # fmt: skip
        with conn.transaction(), conn.cursor() as cur:
            ids = store.write_sources(cur, 2, forced, ref_ids=ref_ids[perm])
        assert conn.execute("SELECT count(*) FROM galsources").fetchone()[0] == n + len(perm)
        assert len(np.unique(np.concatenate([ref_ids, ids]))) == n + len(perm)
        _assert_same(_stored(conn, ref_ids), ref_cat, 1, None)
        _assert_same(_stored(conn, ids), forced, 2, ref_ids[perm])
        # ids ascend in the order rows were written: the primary key is only appended to
        phys = conn.execute("SELECT id FROM galsources WHERE galimage_id = 2 ORDER BY ctid")
        phys = np.array([r[0] for r in phys.fetchall()])
        assert (np.diff(phys) > 0).all()
        # a reference source's light curve (through the q3c index) is its rows by ref_id
        some = ref_ids[perm[:50]].tolist()
        lc = queries.lightcurve_by_refsource(conn, some)
        want = conn.execute(
            "SELECT id FROM galsources WHERE id = ANY(%s::bigint[]) OR ref_id = ANY(%s::bigint[])",
            [some, some],
        ).fetchall()
        assert sorted(lc["galsource_id"].tolist()) == sorted(r[0] for r in want)
        assert len(lc) == 100
        pts = queries.forced_points(conn, some)
        assert len(pts) == 50 and set(pts[:, 0].astype(np.int64)) == set(some)
        with conn.transaction(), conn.cursor() as cur:
            assert len(store.write_sources(cur, 2, catalogue(4, 0))) == 0


_WRITER = """
import sys
from photdb.db import connect
from photdb.db.connection import resolve
from photdb.settings import load_settings
from photdb.survey import store
from photdb.survey.tests.test_store import catalogue
settings = resolve(load_settings()).with_dbname(sys.argv[1])
with connect("writer", settings=settings) as conn:
    for k in range(int(sys.argv[3])):
        gid = int(sys.argv[2]) + k
        with conn.transaction(), conn.cursor() as cur:
            ids = store.write_sources(cur, gid, catalogue(gid, 20000))
        print(gid, *ids.tolist())
"""


def test_concurrent_writers_store_every_row_once(db_settings):
    with connect("writer", settings=db_settings) as conn:
        _images(conn, list(range(1, 7)))
        conn.commit()
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, db_settings.dbname, str(first), "3"],
                              stdout=subprocess.PIPE, text=True)
             for first in (1, 4)]  # fmt: skip
    out = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    returned = {}
    for line in "".join(out).splitlines():
        gid, *ids = map(int, line.split())
        returned[gid] = np.array(ids, np.int64)
    assert sorted(returned) == [1, 2, 3, 4, 5, 6]
    every = np.concatenate(list(returned.values()))
    assert len(np.unique(every)) == len(every) == 6 * 20000
    with connect("readonly", settings=db_settings) as conn:
        assert conn.execute("SELECT count(*) FROM galsources").fetchone()[0] == len(every)
        for gid, ids in returned.items():
            _assert_same(_stored(conn, ids), catalogue(gid, 20000), gid, None)


def _old_galsources_ddl() -> list[str]:
    """galsources as migration 0002 created it (table and indexes), from the file itself."""
    text = (migrations_dir() / "0002.pipeline-schema.sql").read_text()
    table = re.search(r"CREATE TABLE galsources \(.*?\) WITH \([^)]*\);", text, re.S).group(0)
    return [table, *re.findall(r"CREATE INDEX galsources_\w+ ON galsources .*?;", text)]


def test_migration_0009_on_an_existing_database(db_settings):
    """Rows stored in the 0002 layout survive 0009's rewrite, with the new layout."""
    s = db_settings
    admin = dict(host=s.host, port=s.port, dbname=s.dbname, user=s.user("admin"),
                 password=s.password("admin"))  # fmt: skip
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute("DROP TABLE galsources")  # back to the 0002 layout, 0009 not applied
        for stmt in _old_galsources_ddl():
            conn.execute(stmt)
        conn.execute("DELETE FROM _yoyo_migration WHERE migration_id = '0009.galsources-layout'")
        _images(conn, [1, 2])
        conn.execute(
            "INSERT INTO galsources (galimage_id, ra, dec, mag, magerr, ref_id, flags)"
            " SELECT 1 + (g % 2), 270 + g * 1e-4, -29, 18 + g * 1e-3, NULL,"
            " CASE WHEN g % 2 = 1 THEN g - 1 END, g % 3 FROM generate_series(1, 1000) g"
        )
        before = conn.execute("SELECT * FROM galsources ORDER BY id").fetchall()
        before_cols = [d.name for d in conn.execute("SELECT * FROM galsources LIMIT 0").description]
    assert apply_migrations(db_settings) == ["0009.galsources-layout"]
    with psycopg.connect(**admin) as conn:
        cur = conn.execute(f"SELECT {', '.join(before_cols)} FROM galsources ORDER BY id")
        assert cur.fetchall() == before
        names = [d.name for d in conn.execute("SELECT * FROM galsources LIMIT 0").description]
        assert names[:5] == ["id", "ra", "dec", "ref_id", "galimage_id"]
        cur = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'galsources'")
        indexes = {r[0] for r in cur.fetchall()}
        assert indexes == {"galsources_pkey", "galsources_q3c_idx", "galsources_galimage_idx"}
        # the sequence still hands out ids after the old ones
        nxt = conn.execute("SELECT nextval('galsources_id_seq')").fetchone()[0]
        assert nxt > 1000
