#!/usr/bin/env python
"""How should a TAP (ADQL) cone on ``galsources`` reach an index?

queryparser translates ``CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', a, b, r)) = 1``
into the pgSphere expression ``spoint(RADIANS(ra), RADIANS(dec)) @ scircle(...)``,
which the q3c index on ``q3c_ang2ipix(ra, dec)`` cannot serve. This script fills
``galsources`` of a throw-away embedded cluster (fsync on) with a synthetic
DECam-like bulge survey (the same generator as ``galsources_layout.py``, rows COPYed
per exposure in Z-order as the pipeline does), then times, on the same rows:

* ``pgsphere_noindex``: the translated query as it is, with no index that serves it;
* ``q3c_radial``: the rewrite ``q3c_radial_query(ra, dec, a, b, r)`` (existing index);
* ``q3c_join``: the rewrite ``q3c_join(a, b, ra, dec, r)`` (existing index);
* ``pgsphere_gist``: the translated query unchanged, after
  ``CREATE INDEX ... USING gist (spoint(radians(ra), radians(dec)))``;

for cones of 1", 10", 1' and 6' around stars of the field, plus index build time,
index size and the extra COPY time that the GiST expression index costs per exposure.

Examples
--------
    .venv/bin/python benchmarks/tap_cone.py --rows 1200000
    .venv/bin/python benchmarks/tap_cone.py --rows 5e6 --json benchmarks/results/tap_cone_5e6.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from galsources_layout import Survey, copy_block, encode_copy  # noqa: E402

from photdb.db.embedded import ensure_embedded  # noqa: E402
from photdb.db.server import EmbeddedServer  # noqa: E402

DBNAME = "photdb_tapbench"
RADII = {"1arcsec": 1 / 3600, "10arcsec": 10 / 3600, "1arcmin": 1 / 60, "6arcmin": 0.1}

ADQL = (
    "SELECT id, ra, dec, mag, magerr FROM galsources "
    "WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {a!r}, {b!r}, {r!r}))"
)
Q3C_RADIAL = (
    "SELECT id, ra, dec, mag, magerr FROM galsources "
    "WHERE q3c_radial_query(ra, dec, {a!r}, {b!r}, {r!r})"
)
Q3C_JOIN = (
    "SELECT id, ra, dec, mag, magerr FROM galsources WHERE q3c_join({a!r}, {b!r}, ra, dec, {r!r})"
)
GIST = (
    "CREATE INDEX galsources_spoint_idx ON galsources "
    "USING gist (spoint(radians(ra), radians(dec)))"
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def translate(a: float, b: float, r: float) -> str:
    from queryparser.adql import ADQLQueryTranslator

    return ADQLQueryTranslator(ADQL.format(a=a, b=b, r=r)).to_postgresql()


def load(
    conn: psycopg.Connection, survey: Survey, epochs: range, next_id: int
) -> tuple[int, float]:
    """COPY exposures (one transaction each, Z-order); return (next id, seconds)."""
    total = 0.0
    for epoch in epochs:
        rows, _ = survey.exposure(epoch)
        rows = rows[np.argsort(survey.morton_key(rows), kind="stable")]
        rows["id"] = np.arange(next_id, next_id + len(rows))
        rows["ref_id"] = -1 if epoch == 0 else 1
        next_id += len(rows)
        t0 = time.perf_counter()
        with conn.transaction():
            copy_block(conn.cursor(), "galsources", encode_copy(rows))
        total += time.perf_counter() - t0
    return next_id, total


def time_cones(conn, make_sql, centres, radius) -> dict:
    ms, nrows = [], []
    for a, b in centres:
        q = make_sql(a, b, radius)
        t0 = time.perf_counter()
        n = len(conn.execute(q).fetchall())
        ms.append((time.perf_counter() - t0) * 1e3)
        nrows.append(n)
    ms.sort()
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 3),
        "mean_rows": round(float(np.mean(nrows)), 1),
    }


def plan_nodes(conn, q: str) -> list[str]:
    plan = conn.execute("EXPLAIN (FORMAT JSON) " + q).fetchone()[0][0]["Plan"]
    out = []

    def walk(n):
        out.append(n["Node Type"] + (f"({n['Index Name']})" if "Index Name" in n else ""))
        for c in n.get("Plans", []):
            walk(c)

    walk(plan)
    counts: dict[str, int] = {}
    for n in out:
        counts[n] = counts.get(n, 0) + 1
    return [f"{k} x{v}" if v > 1 else k for k, v in counts.items()]


def rel_size(conn, name: str) -> int:
    return conn.execute("SELECT pg_relation_size(%s::regclass)", [name]).fetchone()[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=float, default=1.2e6)
    ap.add_argument("--exposure-rows", type=int, default=200_000)
    ap.add_argument("--cones", type=int, default=40, help="cone centres per radius")
    ap.add_argument("--noindex-cones", type=int, default=5, help="centres for the seq-scan case")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    n_epochs = max(2, round(args.rows / args.exposure_rows))
    survey = Survey(n_stars=args.exposure_rows, n_epochs=n_epochs)
    home = Path(tempfile.mkdtemp(prefix="photdb-tapbench-"))
    server = EmbeddedServer(home, fast=False)
    res: dict = {"config": {"epochs": n_epochs, "exposure_rows": args.exposure_rows}}
    try:
        ensure_embedded(server, DBNAME)
        conn = psycopg.connect(**server.superuser_conninfo(DBNAME), autocommit=True)
        conn.prepare_threshold = None
        log(f"loading {n_epochs} exposures of ~{args.exposure_rows} rows")
        next_id, load_s = load(conn, survey, range(n_epochs - 1), 1)
        conn.execute("VACUUM ANALYZE galsources")
        nrows = conn.execute("SELECT count(*) FROM galsources").fetchone()[0]
        res["config"]["rows_before_last_epoch"] = nrows
        # the last exposure twice: once without, once with the GiST expression index
        t_copy_plain = load(conn, survey, range(n_epochs - 1, n_epochs), next_id)
        last_n = t_copy_plain[0] - next_id
        conn.execute("DELETE FROM galsources WHERE id >= %s", [next_id])
        conn.execute("VACUUM ANALYZE galsources")
        rng = np.random.default_rng(7)
        stars = rng.choice(survey.n_stars, args.cones, replace=False)
        ra, dec = survey.star_radec(stars)
        centres = list(zip(ra.tolist(), dec.tolist(), strict=True))
        sizes = {
            "heap": rel_size(conn, "galsources"),
            "q3c_btree": rel_size(conn, "galsources_q3c_idx"),
        }

        cases = {
            "pgsphere_noindex": lambda a, b, r: translate(a, b, r),
            "q3c_radial": lambda a, b, r: Q3C_RADIAL.format(a=a, b=b, r=r),
            "q3c_join": lambda a, b, r: Q3C_JOIN.format(a=a, b=b, r=r),
            "pgsphere_gist": lambda a, b, r: translate(a, b, r),
        }
        timings: dict = {"pgsphere_noindex": {}}
        plans: dict = {}
        # 1. the translated query with no index that serves it (sequential scan)
        fn = cases["pgsphere_noindex"]
        for rname, r in RADII.items():
            time_cones(conn, fn, centres[:1], r)
            timings["pgsphere_noindex"][rname] = time_cones(
                conn, fn, centres[: args.noindex_cones], r
            )
            log(f"pgsphere_noindex   {rname:9s} {timings['pgsphere_noindex'][rname]}")
        plans["pgsphere_noindex"] = plan_nodes(conn, fn(*centres[0], 1 / 60))

        # 2. the GiST expression index: build time, size
        log("building the GiST expression index")
        t0 = time.perf_counter()
        conn.execute(GIST)
        build_s = time.perf_counter() - t0
        conn.execute("ANALYZE galsources")
        sizes["spoint_gist"] = rel_size(conn, "galsources_spoint_idx")
        t_copy_gist = load(conn, survey, range(n_epochs - 1, n_epochs), next_id)
        conn.execute("DELETE FROM galsources WHERE id >= %s", [next_id])
        conn.execute("VACUUM ANALYZE galsources")

        # 3. both indexes present; the three indexed forms interleaved cone by cone, so
        # that cache state favours none of them (two untimed passes first)
        indexed = ("q3c_radial", "q3c_join", "pgsphere_gist")
        for name in indexed:
            plans[name] = plan_nodes(conn, cases[name](*centres[0], 1 / 60))
        for rname, r in RADII.items():
            sqls = {n: [cases[n](a, b, r) for a, b in centres] for n in indexed}
            ms: dict = {n: [] for n in indexed}
            got: dict = {n: [] for n in indexed}
            for rep in range(3):
                for k in range(len(centres)):
                    for n in indexed:
                        t0 = time.perf_counter()
                        n_got = len(conn.execute(sqls[n][k]).fetchall())
                        if rep == 2:
                            ms[n].append((time.perf_counter() - t0) * 1e3)
                            got[n].append(n_got)
            for n in indexed:
                v = sorted(ms[n])
                timings.setdefault(n, {})[rname] = {
                    "median_ms": round(statistics.median(v), 3),
                    "p95_ms": round(v[min(len(v) - 1, int(0.95 * len(v)))], 3),
                    "mean_rows": round(float(np.mean(got[n])), 1),
                }
                log(f"{n:18s} {rname:9s} {timings[n][rname]}")
        # server-side execution time alone (no row transfer) for the 1' cone
        exec_ms = {}
        for n in indexed:
            q = cases[n](*centres[1], 1 / 60)
            plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + q).fetchone()[0][0]
            exec_ms[n] = {
                "planning_ms": plan["Planning Time"],
                "execution_ms": plan["Execution Time"],
            }
        tr_ms = []
        for a, b in centres[:10]:
            t0 = time.perf_counter()
            translate(a, b, 1 / 60)
            tr_ms.append((time.perf_counter() - t0) * 1e3)
        res.update(
            {
                "adql_translation_ms_median": round(statistics.median(tr_ms), 1),
                "rows": nrows,
                "load_s_all": round(load_s, 2),
                "sizes_bytes": sizes,
                "bytes_per_row": {k: round(v / nrows, 2) for k, v in sizes.items()},
                "gist_build_s": round(build_s, 2),
                "copy_last_exposure": {
                    "rows": last_n,
                    "without_gist_s": round(t_copy_plain[1], 3),
                    "with_gist_s": round(t_copy_gist[1], 3),
                },
                "timings": timings,
                "plans_1arcmin": plans,
                "explain_analyze_1arcmin": exec_ms,
                "translated_example": translate(*centres[0], 1 / 60),
            }
        )
        conn.close()
    finally:
        server.destroy()
        shutil.rmtree(home, ignore_errors=True)
    text = json.dumps(res, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
