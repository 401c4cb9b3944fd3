#!/usr/bin/env python
"""The candidate list of a survey with 10^7 reference sources: does it stay under a second?

``photdb variables``, the API's ``variable_candidates`` and the web's candidates page read
``galrefstats`` (one row of running sums and statistics per reference source, migration
0010) instead of aggregating ``galvarobjs`` and every forced point in ``galsources``. A
survey of 10^9 measurements has ~10^7 reference sources (100 epochs each), so this
script fills ``galrefstats`` of a throw-away embedded cluster (fsync on) with ``--rows``
synthetic reference sources (1% with variable detections, as at a 15σ cut), their
``galvarobjs`` rows, then times, each ``--repeat`` times (median and max):

* the candidate list (50 rows, worst first) over all filters, for one filter, with a
  magnitude range, in a 1' cone; its count; the reference outliers;
* the update of the table by one search image of ``--image-rows`` sources, as
  ``photdb process`` does it in the image's transaction (in time order, and an image
  earlier than every stored epoch).

Examples
--------
    nice -n 5 .venv/bin/python benchmarks/refstats_scale.py --rows 1e6
    nice -n 5 .venv/bin/python benchmarks/refstats_scale.py --rows 1e7 \\
        --json benchmarks/results/refstats_1e7.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
from astropy.table import Table

from photdb.db.copy import Column, copy_columns
from photdb.db.embedded import ensure_embedded
from photdb.db.server import EmbeddedServer
from photdb.survey import candidates, refstats

DBNAME = "photdb_refstatsbench"
RA0, DEC0, SIDE = 271.0, -29.0, 1.7  # a ~3 deg² bulge field


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fill(conn: psycopg.Connection, n: int, block: int = 500_000) -> dict:
    """COPY n synthetic galrefstats rows (ids 1..n) and the galvarobjs of those detected."""
    rng = np.random.default_rng(1)
    cur = conn.cursor()
    images = []
    for k in range(10):
        eid = cur.execute(
            "INSERT INTO galexposures (filename, path, sha256, mjd, filter)"
            " VALUES (%s, '/b', %s, %s, %s) RETURNING id",
            [f"e{k}", f"{k:064d}", 59300.0 + 5 * k, "g" if k % 2 else "r"],
        ).fetchone()[0]
        gid = cur.execute("INSERT INTO observations (band) VALUES ('r') RETURNING id").fetchone()[0]
        cur.execute("INSERT INTO galimages (id, galexposure_id, hdu, status) VALUES (%s, %s, 1,"
                    " 'done')", [gid, eid])  # fmt: skip
        images.append(gid)
    t0 = time.perf_counter()
    nvar = 0
    for start in range(0, n, block):
        m = min(block, n - start)
        ids = np.arange(start + 1, start + m + 1, dtype=np.int64)
        ndet = np.where(rng.random(m) < 0.01, rng.geometric(0.35, m), 0)
        outlier = (ndet > 0) & (rng.random(m) < 0.05)
        n_ep = rng.integers(50, 120, m)
        chi2 = np.where(ndet > 0, rng.lognormal(2.5, 1.5, m), rng.lognormal(0.0, 0.3, m))
        mag = rng.uniform(14, 23, m)
        f = np.full(m, 1.0)
        cols = [
            Column("refsource_id", "int8", ids),
            Column("reference_image", "int4", np.full(m, images[0], np.int64)),
            Column("filter", "text", np.where(ids % 2 == 0, "g", "r").astype(object)),
            Column("ra", "float8", RA0 + rng.uniform(0, SIDE, m)),
            Column("dec", "float8", DEC0 + rng.uniform(0, SIDE, m)),
            Column("ref_mag", "float8", mag),
            Column("ref_magerr", "float8", 0.003 + 0.01 * (mag - 14)),
            Column("n_epochs", "int4", n_ep),
            Column("n_det", "int4", ndet),
            *(
                Column(c, "float8", f * v)
                for c, v in (
                    ("sum_w", 1e5),
                    ("sum_wd", 1.0),
                    ("sum_wd2", 50.0),
                    ("sum_d", 0.1),
                    ("sum_d2", 0.01),
                    ("sum_dd2", 0.02),
                    ("sum_j", 0.5),
                    ("d_min", -0.05),
                    ("d_max", 0.05),
                    ("first_mjd", 59300.0),
                    ("last_mjd", 59345.0),
                    ("first_d", 0.0),
                    ("first_e", 0.01),
                    ("last_d", 0.0),
                    ("last_e", 0.01),
                )
            ),  # fmt: skip
            Column("first_image", "int4", np.full(m, images[0], np.int64)),
            Column("last_image", "int4", np.full(m, images[-1], np.int64)),
            Column("mean_mag", "float4", mag),
            Column("chi2nu", "float4", chi2),
            Column("eta", "float4", rng.uniform(0.2, 2.5, m)),
            Column("stetson_j", "float4", rng.normal(0, 1, m)),
            Column("amplitude", "float4", rng.uniform(0, 1, m)),
            Column("max_sig", "float4", np.where(ndet > 0, rng.uniform(15, 100, m), np.nan)),
            Column("ref_offset", "float4", rng.normal(0, 0.01, m)),
            Column("ref_offset_sigma", "float4", np.where(outlier, 20.0, rng.normal(0, 1, m))),
        ]
        copy_columns(cur, "galrefstats", cols)
        if outlier.any():
            cur.execute("UPDATE galrefstats SET ref_outlier = true WHERE refsource_id = ANY(%s)",
                        [ids[outlier].tolist()])  # fmt: skip
        det_ids = np.repeat(ids, ndet)
        k = det_ids.size
        nvar += k
        if k:
            copy_columns(cur, "galvarobjs", [
                Column("galsource_id", "int8", np.arange(k, dtype=np.int64) + start * 10),
                Column("refsource_id", "int8", det_ids),
                Column("galimage_id", "int4", rng.choice(images, k).astype(np.int64)),
                Column("dmag", "float4", rng.normal(0, 0.5, k)),
                Column("significance", "float4", rng.uniform(15, 100, k)),
            ])  # fmt: skip
        conn.commit()
    load_s = time.perf_counter() - t0
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE galrefstats")
    conn.execute("VACUUM ANALYZE galvarobjs")
    conn.autocommit = False
    return {"rows": n, "galvarobjs_rows": nvar, "load_s": round(load_s, 1), "images": images}


def timed(fn, repeat: int) -> dict:
    fn()  # warm
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(1000 * (time.perf_counter() - t0))
    return {"median_ms": round(statistics.median(ts), 2), "max_ms": round(max(ts), 2)}


def plan(conn, stmt: str, params: dict) -> list[str]:
    rows = conn.execute("EXPLAIN (COSTS OFF) " + stmt, params).fetchall()
    return [r[0].strip() for r in rows if "Scan" in r[0]]


def time_update(conn, images, n_rows: int, image_rows: int, repeat: int) -> dict:
    """One search image's update of galrefstats, in the image's transaction (rolled back)."""
    rng = np.random.default_rng(2)
    out = {}
    for name, mjd in (("in_time_order", 60000.0), ("earlier_than_all", 59000.0)):
        tag = f"{name}{time.time_ns()}"
        eid = conn.execute(
            "INSERT INTO galexposures (filename, path, sha256, mjd, filter) VALUES (%s, '/b',"
            " %s, %s, 'r') RETURNING id",
            [tag, hashlib.sha256(tag.encode()).hexdigest(), mjd],
        ).fetchone()[0]  # fmt: skip
        gid = conn.execute("INSERT INTO observations (band) VALUES ('r') RETURNING id"
                           ).fetchone()[0]  # fmt: skip
        conn.execute("INSERT INTO galimages (id, galexposure_id, hdu, reference) VALUES"
                     " (%s, %s, 1, %s)", [gid, eid, images[0]])  # fmt: skip
        conn.commit()
        ts = []
        for _ in range(repeat):
            first = int(rng.integers(1, max(2, n_rows - image_rows)))
            ids = np.arange(first, first + image_rows, dtype=np.int64)
            ref = Table(
                {
                    "id": ids,
                    "ra": np.zeros(ids.size),
                    "dec": np.zeros(ids.size),
                    "mag": np.full(ids.size, 18.0),
                    "magerr": np.full(ids.size, 0.01),
                }
            )
            mag = 18.0 + rng.normal(0, 0.01, ids.size)
            t0 = time.perf_counter()
            with conn.cursor() as cur:
                refstats.update_for_image(cur, gid, images[0], ref, np.arange(ids.size), mag,
                                          np.full(ids.size, 0.01), np.zeros(ids.size, bool),
                                          np.zeros(ids.size))  # fmt: skip
            ts.append(time.perf_counter() - t0)
            conn.rollback()
        med = statistics.median(ts)
        out[name] = {"median_s": round(med, 3), "rows_per_s": round(image_rows / med)}
        log(f"update by one image of {image_rows} sources, {name}: {out[name]}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=float, default=1e6, help="reference sources")
    ap.add_argument("--image-rows", type=int, default=100_000, help="sources of one image")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    n = int(args.rows)
    home = Path(tempfile.mkdtemp(prefix="photdb-refstatsbench-"))
    server = EmbeddedServer(home, fast=False)
    res: dict = {"config": vars(args) | {"json": str(args.json), "load_avg": os.getloadavg()}}
    try:
        ensure_embedded(server, DBNAME)
        conn = psycopg.connect(**server.superuser_conninfo(DBNAME))
        log(f"filling galrefstats with {n} reference sources")
        info = fill(conn, n)
        images = info.pop("images")
        res["fill"] = info
        size = conn.execute("SELECT pg_total_relation_size('galrefstats')").fetchone()[0]
        res["fill"]["galrefstats_total_mb"] = round(size / 2**20)
        log(f"filled: {res['fill']}")
        conn.commit()
        conn.autocommit = True
        cases = {
            "candidates_all": {},
            "candidates_filter_g": {"filter": "g"},
            "candidates_mag_18_20": {"mag_min": 18.0, "mag_max": 20.0},
            "candidates_cone_1arcmin": {"cone": (RA0 + 0.8, DEC0 + 0.8, 60.0)},
            "candidates_min_repeats_5": {"min_repeats": 5},
        }
        res["queries"] = {}
        for name, kw in cases.items():
            opts = {"min_repeats": 2} | kw

            def run(opts=opts):
                return candidates.variable_candidates(conn, limit=50, **opts)

            res["queries"][name] = timed(run, args.repeat) | {"rows": len(run())}
            log(f"{name}: {res['queries'][name]}")
        res["queries"]["count_all"] = timed(
            lambda: candidates.count_candidates(conn, min_repeats=2), args.repeat
        )
        res["queries"]["outliers"] = timed(
            lambda: candidates.reference_outliers(conn, limit=50), args.repeat
        )
        log(f"count, outliers: {res['queries']['count_all']}, {res['queries']['outliers']}")
        stmt = candidates._RANKED.format(where="", limit="LIMIT 50")
        res["plans"] = {
            "candidates_all": plan(conn, stmt, {"min": 2}),
            "candidates_filter_g": plan(
                conn, candidates._RANKED.format(where="AND filter = %(filter)s",
                                                limit="LIMIT 50"), {"min": 2, "filter": "g"}),
        }  # fmt: skip
        log(f"plans: {res['plans']}")
        conn.autocommit = False
        res["update"] = time_update(conn, images, n, args.image_rows, max(3, args.repeat // 4))
        res["load_avg_end"] = os.getloadavg()
    finally:
        server.destroy()
        shutil.rmtree(home, ignore_errors=True)
    text = json.dumps(res, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
