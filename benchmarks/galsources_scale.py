#!/usr/bin/env python
"""The giant ``galsources`` table at scale: photdb's writer, cones, light curves, seed queries.

One run on a throw-away embedded PostgreSQL cluster (fsync on, the migrated
schema, migration 0009's layout) fills ``galsources`` to ``--rows`` with a
synthetic DECam-like bulge field observed again and again, the way photdb
stores it: epoch 0 is the reference catalogue (``ref_id`` NULL), every later
epoch forced photometry at the reference positions (``ra, dec`` copied from the
reference row, ``ref_id`` set), one transaction per chip image through
:func:`photdb.survey.store.write_sources`. It reports:

* **writer vs raw COPY**: rows/s of photdb's writer into the live, indexed
  table against a binary COPY of the same rows, already encoded, into an
  unindexed heap (``LIKE galsources``, emptied between epochs), measured
  epoch by epoch in the same run, alternating which goes first, with one and
  with two writer sessions by turns (``--writers``); then the
  same for the last ``--live-epochs`` epochs while a reader loops cones;
* **bytes per row** of the heap and of each index;
* **cones and light curves**: 1" and 1' cones (``q3c_join``, as photdb's cone
  and the TAP rewrite; the notebook's ``q3c_radial_query`` is Q5/Q6) and a
  reference source's light curve (the q3c equality lookup of migration
  0009, and photdb's :func:`~photdb.survey.queries.lightcurve_by_refsource`),
  p50/p95 cold (first pass after a server restart: shared buffers empty, the
  OS page cache is not) and warm;
* **seed queries** (``/work/shared/seed_queries/galactic_pipeline.sql``
  verbatim, the notebook's ids and coordinates replaced by ones of this data)
  with ``--varobjs`` rows in ``galvarobjs``;
* **readers during loads and maintenance**: a reader's latency and the most
  lock requests ever seen waiting, while the writer loads, during ``VACUUM
  (ANALYZE)``, ``CREATE INDEX CONCURRENTLY`` and ``DROP INDEX CONCURRENTLY``.

Timings on a shared machine are noisy: compare the ratios of one run.

One file (~600 lines) on purpose: a benchmark is run, read and quoted as a whole, and
its parts (data, loader, readers, report) are used nowhere else.

Examples
--------
::

    nice -n 5 python benchmarks/galsources_scale.py --rows 2e6
    nice -n 5 python benchmarks/galsources_scale.py --rows 2e7 \\
        --output benchmarks/results/galsources_scale_2e7.json
"""

from __future__ import annotations

import argparse
import math
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
from _bench import log, run_and_write
from astropy.table import Table

from photdb.db.copy import Column, encode_binary_copy
from photdb.db.embedded import ensure_embedded
from photdb.db.seedsql import split_sql
from photdb.db.server import EmbeddedServer
from photdb.survey import queries, store

DBNAME = "photdb_scale"
SEED_SQL = Path(__file__).resolve().parents[3] / "shared" / "seed_queries" / "galactic_pipeline.sql"
SEED_FALLBACK = (
    Path(__file__).resolve().parents[1] / "src/photdb/db/tests/data/galactic_pipeline.sql"
)
NOTEBOOK_ID, NOTEBOOK_RA, NOTEBOOK_DEC = "284560863", "271.486119431597", "-28.9101692547778"
FLOATS = ("mag", "magerr", "magerr_raw", "flux", "dflux", "x", "y", "qf", "rchi2", "fracflux")


def summarise(ms: list[float]) -> dict:
    """n, p50, p95, max of latencies (ms)."""
    if not ms:
        return {"n": 0}
    a = np.asarray(ms)
    return {"n": len(a), "p50": float(np.median(a)), "p95": float(np.percentile(a, 95)),
            "max": float(a.max())}  # fmt: skip


# ------------------------------------------------------------------ synthetic survey
class Field:
    """Stars of a crowded field; epoch 0 measures their positions, later epochs force there."""

    def __init__(self, n_stars: int, chips: int, seed: int, area_deg2: float = 3.0):
        rng = np.random.default_rng(seed)
        self.n, self.chips, self.seed = n_stars, chips, seed
        self.side = int(round(math.sqrt(chips)))
        half = math.sqrt(area_deg2) / 2
        self.half = half
        self.xi = rng.uniform(-half, half, n_stars)
        self.eta = rng.uniform(-half, half, n_stars)
        u = rng.uniform(10 ** (0.3 * (14.0 - 23.5)), 1.0, n_stars)
        self.mag0 = 23.5 + np.log10(u) / 0.3
        d0 = math.radians(-29.0)
        x, y = np.radians(self.xi), np.radians(self.eta)
        den = math.cos(d0) - y * math.sin(d0)
        self.ra = (271.2 + np.degrees(np.arctan2(x, den))) % 360.0
        self.dec = np.degrees(np.arctan2(math.sin(d0) + y * math.cos(d0), np.hypot(x, den)))
        cx = np.clip(((self.xi + half) / (2 * half) * self.side).astype(int), 0, self.side - 1)
        cy = np.clip(((self.eta + half) / (2 * half) * self.side).astype(int), 0, self.side - 1)
        self.chip = cy * self.side + cx
        self.ref_ids = np.full(n_stars, -1, np.int64)
        self.ref_ra = self.ra.copy()
        self.ref_dec = self.dec.copy()

    def images(self, epoch: int) -> list[tuple[int, Table, np.ndarray]]:
        """``(galimage_id, catalogue, star index)`` per chip of an epoch."""
        rng = np.random.default_rng([self.seed, epoch])
        if epoch == 0:
            stars = np.arange(self.n)
            ra = self.ra + rng.normal(0, 0.03 / 3600, self.n) / np.cos(np.radians(self.dec))
            dec = self.dec + rng.normal(0, 0.03 / 3600, self.n)
        else:
            stars = np.flatnonzero(rng.random(self.n) < 0.95)
            ra, dec = self.ref_ra[stars], self.ref_dec[stars]  # forced at the reference
        m = len(stars)
        err = 0.005 + 0.1 * 10 ** (0.4 * (self.mag0[stars] - 22.0))
        mag = self.mag0[stars] + rng.normal(0, 1, m) * err
        flux = 10 ** (-0.4 * (mag - 30.0))
        mag[rng.random(m) < 0.01] = np.nan  # a negative forced flux has no magnitude
        cols = {"ra": ra, "dec": dec, "mag": mag, "magerr": err, "magerr_raw": err * 0.9,
                "flux": flux, "dflux": flux * err / 1.0857, "x": rng.uniform(0, 2046, m),
                "y": rng.uniform(0, 4094, m), "qf": rng.uniform(0.8, 1, m),
                "rchi2": rng.gamma(5, 0.2, m), "fracflux": rng.uniform(0.5, 1, m),
                "flags": (rng.random(m) < 0.02).astype(np.int64)}  # fmt: skip
        chip = self.chip[stars]
        out = []
        for c in range(self.chips):
            sel = np.flatnonzero(chip == c)
            tab = Table({k: v[sel] for k, v in cols.items()})
            out.append((epoch * self.chips + c + 1, tab, stars[sel]))
        return out


def raw_stream(
    images: list[tuple[int, Table, np.ndarray]], ref_ids: np.ndarray | None, id0: int = 1
) -> tuple[bytes, list[str]]:
    """The epoch's rows as one binary COPY stream (encoded before the clock starts)."""
    n = sum(len(t) for _, t, _ in images)
    names = images[0][1].colnames
    cat = {k: np.concatenate([np.asarray(t[k]) for _, t, _ in images]) for k in names}
    gid = np.concatenate([np.full(len(t), g) for g, t, _ in images])
    stars = np.concatenate([s for _, _, s in images])
    cols = [Column("id", "int8", np.arange(id0, id0 + n)), Column("galimage_id", "int4", gid)]
    cols += [Column(k, store.GALSOURCE_COLUMNS[k], cat[k]) for k in cat]
    ref = np.zeros(n, np.int64) if ref_ids is None else ref_ids[stars]
    cols.append(Column("ref_id", "int8", ref, np.full(n, ref_ids is None)))
    return encode_binary_copy(cols), [c.name for c in cols]


# ------------------------------------------------------------------ readers
class Reader:
    """A session looping 1" cones and light curves, recording latency per phase."""

    def __init__(self, server: EmbeddedServer, targets: list[dict]):
        self.server, self.targets = server, targets
        self.phase = "idle"
        self.lat: dict[str, list[float]] = {}
        self.waiting: dict[str, int] = {}
        self.waiters: dict[str, set[str]] = {}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._read, daemon=True),
                        threading.Thread(target=self._monitor, daemon=True)]  # fmt: skip

    def __enter__(self) -> Reader:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def _read(self) -> None:
        with connect(self.server) as conn:
            k = 0
            while not self.stop.is_set():
                p, phase = self.targets[k % len(self.targets)], self.phase
                name = ("cone_1as", "lc_ref")[k % 2]
                t0 = time.perf_counter()
                conn.execute(QUERIES[name], p).fetchall()
                self.lat.setdefault(phase, []).append((time.perf_counter() - t0) * 1e3)
                k += 1

    def _monitor(self) -> None:
        with connect(self.server) as conn:
            while not self.stop.is_set():
                rows = conn.execute(
                    "SELECT l.locktype, l.mode, a.query FROM pg_locks l"
                    " LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE NOT l.granted"
                ).fetchall()
                ph = self.phase
                self.waiting[ph] = max(self.waiting.get(ph, 0), len(rows))
                for kind, mode, query in rows:  # who waited, for what
                    self.waiters.setdefault(ph, set()).add(f"{kind} {mode}: {(query or '')[:60]}")
                time.sleep(0.02)

    def result(self) -> dict:
        return {ph: {**summarise(v), "max_waiting_locks": self.waiting.get(ph, 0),
                     "waiters": sorted(self.waiters.get(ph, ()))}
                for ph, v in self.lat.items()}  # fmt: skip


# ------------------------------------------------------------------ queries
QUERIES = {
    "cone_1as": "SELECT s.id, s.galimage_id, s.ra, s.dec, s.mag, s.magerr FROM galsources s"
    " WHERE q3c_join(%(ra)s, %(dec)s, s.ra, s.dec, 1/3600.)",
    "cone_1am": "SELECT s.id, s.galimage_id, s.ra, s.dec, s.mag, s.magerr FROM galsources s"
    " WHERE q3c_join(%(ra)s, %(dec)s, s.ra, s.dec, 60/3600.)",
    "lc_ref": "SELECT e.mjd, e.filter, s.mag, s.magerr FROM galsources r"
    f" JOIN {queries.FORCED_OF_REFERENCE}"
    " JOIN galimages i ON s.galimage_id = i.id JOIN galexposures e ON i.galexposure_id = e.id"
    " WHERE r.id = %(ref)s ORDER BY e.mjd",
}


def connect(server: EmbeddedServer) -> psycopg.Connection:
    """Superuser session on the private socket, JIT off as in photdb's own sessions."""
    return psycopg.connect(**server.superuser_conninfo(DBNAME), autocommit=True,
                           options="-c jit=off")  # fmt: skip


def time_pass(conn: psycopg.Connection, targets: list[dict]) -> dict[str, list[float]]:
    """Each query over every target in turn (one query kind at a time); ms per call."""
    out: dict[str, list[float]] = {k: [] for k in QUERIES}
    for name, q in QUERIES.items():
        for p in targets:
            t0 = time.perf_counter()
            conn.execute(q, p).fetchall()
            out[name].append((time.perf_counter() - t0) * 1e3)
    out["lightcurve_by_refsource"] = []
    for p in targets:
        t0 = time.perf_counter()
        queries.lightcurve_by_refsource(conn, p["ref"])
        out["lightcurve_by_refsource"].append((time.perf_counter() - t0) * 1e3)
    out["lightcurve_of_star"] = []  # the web page's light curve: + other filters' matches
    for p in targets:
        t0 = time.perf_counter()
        queries.lightcurve_of_star(conn, p["ref"])
        out["lightcurve_of_star"].append((time.perf_counter() - t0) * 1e3)
    out["sources_in_cone_1am"] = []  # photdb's API: 1' cone, binary results, astropy Table
    for p in targets:
        t0 = time.perf_counter()
        queries.sources_in_cone(conn, p["ra"], p["dec"], 60.0)
        out["sources_in_cone_1am"].append((time.perf_counter() - t0) * 1e3)
    return out


def seed_queries(conn: psycopg.Connection, target: dict, repeats: int) -> dict:
    """The notebook's queries verbatim but for its id and coordinates; ms per run."""
    path = SEED_SQL if SEED_SQL.is_file() else SEED_FALLBACK
    out = {}
    for k, q in enumerate(split_sql(path.read_text())):
        q = (q.replace(NOTEBOOK_ID, str(target["ref"])).replace(NOTEBOOK_RA, repr(target["ra"]))
             .replace(NOTEBOOK_DEC, repr(target["dec"])))  # fmt: skip
        lat, rows = [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            rows = len(conn.execute(q).fetchall())
            lat.append((time.perf_counter() - t0) * 1e3)
        plan = conn.execute("EXPLAIN (FORMAT JSON) " + q).fetchone()[0][0]["Plan"]
        out[f"Q{k + 1}"] = {**summarise(lat), "rows": rows, "plan_top": plan["Node Type"],
                            "sql": q}  # fmt: skip
        log(f"  Q{k + 1}: {np.median(lat):.1f} ms, {rows} rows")
    return out


# ------------------------------------------------------------------ the run
class Run:
    """One benchmark run; see the module docstring."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.field = Field(args.exposure_rows, args.chips, args.seed)
        self.epochs = max(2, round(args.rows / (args.exposure_rows * 0.95)))
        self.home = Path(tempfile.mkdtemp(prefix="photdb-scale-"))
        self.server = EmbeddedServer(self.home, fast=False)
        self.res: dict = {"config": {
            "rows_target": args.rows, "exposure_rows": args.exposure_rows, "chips": args.chips,
            "epochs": self.epochs, "live_epochs": args.live_epochs, "writers": args.writers,
            "varobjs": args.varobjs,
            "machine": platform.platform(), "started_utc": time.strftime("%Y-%m-%d %H:%M:%S",
                                                                       time.gmtime())}}  # fmt: skip

    def start(self) -> None:
        ensure_embedded(self.server, DBNAME)
        self.conn = connect(self.server)
        self.extra = [connect(self.server) for _ in range(max(self.args.writers) - 1)]
        self.res["config"]["server"] = self.conn.execute("SHOW server_version").fetchone()[0]
        n, c = self.epochs, self.args.chips
        self.conn.execute(
            "INSERT INTO galexposures (id, filename, path, sha256, mjd, filter, is_reference)"
            " SELECT e + 1, 'c4d_' || e, '/bench', md5(e::text) || md5(e::text),"
            " 59295.39 + e * 0.7, 'r', e = 0 FROM generate_series(0, %s) e",
            [n - 1],
        )
        self.conn.execute(
            "INSERT INTO observations (id, band) SELECT g, 'r' FROM generate_series(1, %s) g",
            [n * c],
        )
        self.conn.execute(
            "INSERT INTO galimages (id, galexposure_id, hdu, status) SELECT e * %s + k + 1,"
            " e + 1, k + 1, 'done' FROM generate_series(0, %s) e, generate_series(0, %s) k",
            [c, n - 1, c - 1],
        )
        self.conn.execute("CREATE TABLE gs_raw (LIKE galsources)")
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        self.conn.execute("ANALYZE")

    def restart(self) -> None:
        for c in self.extra:
            c.close()
        self.extra = []
        self.conn.close()
        self.server.stop()
        self.server.start()
        self.conn = connect(self.server)

    def close(self) -> None:
        try:
            for c in [*self.extra, self.conn]:
                c.close()
        finally:
            if self.args.keep:  # left running, to look at plans by hand
                log(f"kept: the cluster's files in {self.home} (it stops with this process)")
            else:
                self.server.destroy()
                shutil.rmtree(self.home, ignore_errors=True)

    # -- loading
    def _write(self, images: list, ref: np.ndarray | None, writers: int) -> tuple[int, float]:
        """photdb's writer, one transaction per image, ``writers`` sessions at once."""
        conns = [self.conn, *self.extra][:writers]

        def work(conn: psycopg.Connection, mine: list) -> None:
            for gid, tab, stars in mine:
                with conn.transaction(), conn.cursor() as cur:
                    ids = store.write_sources(cur, gid, tab, ref_ids=None if ref is None
                                              else ref[stars])  # fmt: skip
                if ref is None:
                    self.field.ref_ids[stars] = ids

        t0 = time.perf_counter()
        threads = [threading.Thread(target=work, args=(c, images[k :: len(conns)]))
                   for k, c in enumerate(conns)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(len(t) for _, t, _ in images), time.perf_counter() - t0

    def _raw(self, data: bytes, names: list[str]) -> float:
        t0 = time.perf_counter()
        with self.conn.transaction(), self.conn.cursor() as cur:
            with cur.copy(f"COPY gs_raw ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as cp:
                step = 1 << 20
                for i in range(0, len(data), step):
                    cp.write(data[i : i + step])
        dt = time.perf_counter() - t0
        self.conn.execute("TRUNCATE gs_raw")
        return dt

    def load(self, epochs: range, label: str) -> dict:
        """Load epochs; writer and raw COPY alternate going first; sessions per ``--writers``."""
        per = []
        for e in epochs:
            images = self.field.images(e)
            ref = None if e == 0 else self.field.ref_ids
            k = 1 if e == 0 else self.args.writers[e % len(self.args.writers)]
            data, names = raw_stream(images, ref)
            if (e // 2) % 2:
                r = self._raw(data, names)
                n, w = self._write(images, ref, k)
            else:
                n, w = self._write(images, ref, k)
                r = self._raw(data, names)
            if e == 0:  # the stored reference positions are what later epochs force at
                got = self.conn.execute("SELECT id, ra, dec FROM galsources ORDER BY id").fetchall()
                pos = {i: (a, d) for i, a, d in got}
                self.field.ref_ra = np.array([pos[i][0] for i in self.field.ref_ids])
                self.field.ref_dec = np.array([pos[i][1] for i in self.field.ref_ids])
            per.append({"epoch": e, "rows": n, "writers": k, "writer_s": w, "raw_s": r})
            if e % 5 == 0 or e == epochs[-1]:
                log(f"  {label} epoch {e}: {n:,} rows, {k} writer(s) {n / w:,.0f}/s,"
                    f" raw {n / r:,.0f}/s")  # fmt: skip
        out: dict = {"epochs": per}
        for k in sorted({p["writers"] for p in per if p["epoch"] > 0}):
            sel = [p for p in per if p["writers"] == k and p["epoch"] > 0]
            rows = sum(p["rows"] for p in sel)
            w_s, r_s = sum(p["writer_s"] for p in sel), sum(p["raw_s"] for p in sel)
            out[f"writers_{k}"] = {"rows": rows, "writer_rows_per_s": rows / w_s,
                                   "raw_rows_per_s": rows / r_s, "ratio": r_s / w_s}  # fmt: skip
        return out

    def run(self) -> dict:
        a, f = self.args, self.field
        n_quiet = self.epochs - a.live_epochs
        log(f"loading {self.epochs} epochs x {a.exposure_rows:,} stars ({a.chips} images each)")
        self.res["load_quiet"] = self.load(range(0, n_quiet), "quiet")
        rng = np.random.default_rng(a.seed + 1)
        stars = rng.choice(f.n, a.cones + a.cold_cones, replace=False)
        targets = [{"ref": int(f.ref_ids[s]), "ra": float(f.ref_ra[s]), "dec": float(f.ref_dec[s])}
                   for s in stars]  # fmt: skip
        self.conn.execute("VACUUM (ANALYZE) galsources")
        with Reader(self.server, targets[: a.cones]) as rd:
            time.sleep(0.5)
            rd.phase = "quiet"
            time.sleep(a.quiet_seconds)
            rd.phase = "load"
            self.res["load_live"] = self.load(range(n_quiet, self.epochs), "live")
            phases = {}
            for name, stmt in (
                ("vacuum", "VACUUM (ANALYZE) galsources"),
                (
                    "create_index_concurrently",
                    "CREATE INDEX CONCURRENTLY galsources_bench_idx"
                    " ON galsources (galimage_id, id)",
                ),
                ("drop_index_concurrently", "DROP INDEX CONCURRENTLY galsources_bench_idx"),
            ):
                rd.phase = name
                t0 = time.perf_counter()
                self.conn.execute(stmt)
                phases[name] = time.perf_counter() - t0
                log(f"  {name}: {phases[name]:.1f} s")
            rd.phase = "after"
            time.sleep(1)
        self.res["maintenance_s"] = phases
        self.res["readers"] = rd.result()
        self.res["sizes"] = self.sizes()
        self.fill_varobjs()
        self.restart()
        cold = time_pass(self.conn, targets[a.cones :])
        time_pass(self.conn, targets[: a.cones])
        warm = time_pass(self.conn, targets[: a.cones])
        self.res["queries"] = {k: {"cold": summarise(cold[k]), "warm": summarise(warm[k])}
                               for k in cold}  # fmt: skip
        self.res["query_rows"] = {k: len(self.conn.execute(q, targets[0]).fetchall())
                                  for k, q in QUERIES.items()}  # fmt: skip
        self.res["query_explain"] = {
            k: self.conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + q,
                                 targets[0]).fetchone()[0][0]["Plan"]["Shared Hit Blocks"]
            for k, q in QUERIES.items()}  # fmt: skip
        for k, v in self.res["queries"].items():
            log(
                f"  {k}: warm p50 {v['warm']['p50']:.2f} p95 {v['warm']['p95']:.2f}, "
                f"cold p50 {v['cold']['p50']:.2f} p95 {v['cold']['p95']:.2f} ms"
            )
        self.res["seed_queries"] = seed_queries(self.conn, targets[0], a.seed_repeats)
        # the same warm queries with PostgreSQL's JIT on (photdb's sessions turn it off)
        self.conn.execute("SET jit = on")
        jit = time_pass(self.conn, targets[: a.cones])
        self.res["queries_jit_on"] = {k: summarise(v) for k, v in jit.items()}
        self.res["seed_queries_jit_on"] = seed_queries(self.conn, targets[0], a.seed_repeats)
        self.conn.execute("SET jit = off")
        self.res["index_depth"] = {
            name: self.conn.execute("SELECT level FROM bt_metap(%s)", [name]).fetchone()[0]
            for name in ("galsources_pkey", "galsources_q3c_idx")}  # fmt: skip
        return self.res

    def sizes(self) -> dict:
        n = self.conn.execute("SELECT count(*) FROM galsources").fetchone()[0]
        out = {"rows": n, "heap": self.conn.execute(
            "SELECT pg_table_size('galsources')").fetchone()[0]}  # fmt: skip
        for name, size in self.conn.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index"
            " WHERE indrelid = 'galsources'::regclass"
        ).fetchall():
            out[name] = size
        out["bytes_per_row"] = {k: v / n for k, v in out.items() if k != "rows"}
        out["bytes_per_row"]["total"] = sum(v for k, v in out.items()
                                            if k not in ("rows", "bytes_per_row")) / n  # fmt: skip
        log(
            f"  {n:,} rows, {out['bytes_per_row']['total']:.1f} bytes/row: "
            + ", ".join(f"{k} {v:.1f}" for k, v in out["bytes_per_row"].items())
        )
        return out

    def fill_varobjs(self) -> None:
        forced = self.conn.execute(
            "SELECT count(*) FROM galsources WHERE ref_id IS NOT NULL"
        ).fetchone()[0]
        p = min(1.0, self.args.varobjs / max(forced, 1))
        self.conn.execute("SELECT setseed(0.42)")
        t0 = time.perf_counter()
        self.conn.execute(
            "INSERT INTO galvarobjs (galsource_id, refsource_id, galimage_id, dmag, significance)"
            " SELECT id, ref_id, galimage_id, 0.3, 6 FROM galsources"
            " WHERE ref_id IS NOT NULL AND random() < %s",
            [p],
        )
        self.conn.execute("VACUUM (ANALYZE) galvarobjs")
        n = self.conn.execute("SELECT count(*) FROM galvarobjs").fetchone()[0]
        self.res["galvarobjs_rows"] = n
        log(f"  galvarobjs: {n:,} rows in {time.perf_counter() - t0:.0f} s")


# ------------------------------------------------------------------ report
def report(r: dict) -> str:
    """The printed summary."""
    c, s = r["config"], r["sizes"]
    q, lq, ll = r["queries"], r["load_quiet"], r["load_live"]
    lines = [
        f"galsources at {s['rows']:,} rows ({c['epochs']} epochs x {c['exposure_rows']:,} stars,"
        f" {c['chips']} images per epoch), PostgreSQL {c['server']}, started {c['started_utc']}"
        " UTC; shared 2-core machine, nice -n 5",
        "",
        "LOAD (rows/s; raw = binary COPY of the same rows, pre-encoded, into an unindexed heap)",
        *(
            f"  {ph:<11} {k.replace('_', ' ')}: writer {v['writer_rows_per_s']:>9,.0f}"
            f"  raw {v['raw_rows_per_s']:>9,.0f}  writer/raw {v['ratio']:.2f}  ({v['rows']:,} rows)"
            for ph, d in (("no readers", lq), ("with reader", ll))
            for k, v in d.items()
            if k.startswith("writers_")
        ),
        "",
        "SIZE (bytes per row): " + ", ".join(f"{k} {v:.1f}" for k, v in s["bytes_per_row"].items()),
        f"  btree depth (levels above the leaves): {r.get('index_depth')}",
        "",
        "QUERIES (ms)              warm p50   warm p95   cold p50   cold p95   rows",
    ]
    jit, sjit = r.get("queries_jit_on", {}), r.get("seed_queries_jit_on", {})
    if jit:
        lines[-1] += "   warm p50 with JIT on"
    for k, v in q.items():
        lines.append(f"  {k:<24} {v['warm']['p50']:>8.2f} {v['warm']['p95']:>10.2f}"
                     f" {v['cold']['p50']:>10.2f} {v['cold']['p95']:>10.2f}"
                     f" {r['query_rows'].get(k, ''):>6}"
                     + (f"   {jit[k]['p50']:>8.2f}" if k in jit else ""))  # fmt: skip
    lines += ["", f"SEED QUERIES with {r['galvarobjs_rows']:,} galvarobjs rows (ms)"
              + (", JIT off / on" if sjit else "")]  # fmt: skip
    for k, v in r["seed_queries"].items():
        lines.append(f"  {k}: p50 {v['p50']:>9.2f}  max {v['max']:>9.2f}  rows {v['rows']:>5}"
                     f"  ({v['plan_top']})"
                     + (f"   JIT on p50 {sjit[k]['p50']:>9.2f}" if k in sjit else ""))  # fmt: skip
    lines += ["", "READER (1\" cone / light curve in turn) per phase: p50, p95, max ms,"
              " most lock requests waiting"]  # fmt: skip
    for ph, v in r["readers"].items():
        if v.get("n"):
            dur = r["maintenance_s"].get(ph)
            lines.append(f"  {ph:<26} n {v['n']:>6}  p50 {v['p50']:>7.2f}  p95 {v['p95']:>7.2f}"
                         f"  max {v['max']:>8.1f}  waiting {v['max_waiting_locks']}"
                         + (f"  ({dur:.1f} s)" if dur else ""))  # fmt: skip
            lines += [f"      waited: {w}" for w in v.get("waiters", [])]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=float, default=2e6, help="rows to load (default 2e6)")
    p.add_argument("--exposure-rows", type=float, default=2.5e5, help="stars in the field")
    p.add_argument("--chips", type=int, default=4, help="images per epoch (a square number)")
    p.add_argument("--live-epochs", type=int, default=3, help="epochs loaded with a reader")
    p.add_argument("--varobjs", type=float, default=1.05e6, help="galvarobjs rows")
    p.add_argument("--cones", type=int, default=200, help="warm targets")
    p.add_argument("--cold-cones", type=int, default=30, help="cold targets")
    p.add_argument("--seed-repeats", type=int, default=3)
    p.add_argument("--writers", default="1,2", help="writer sessions, by turns per epoch")
    p.add_argument("--quiet-seconds", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    p.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "galsources_scale.json"
    )
    a = p.parse_args(argv)
    a.rows, a.exposure_rows, a.varobjs = int(a.rows), int(a.exposure_rows), int(a.varobjs)
    a.writers = [int(k) for k in a.writers.split(",")]
    if int(round(math.sqrt(a.chips))) ** 2 != a.chips:
        p.error(f"--chips {a.chips}: not a square number")
    return a


def main(argv: list[str] | None = None) -> int:
    """Run, print, write JSON and text."""
    args = parse_args(argv)
    return run_and_write(Run(args), args.output, report)


if __name__ == "__main__":
    raise SystemExit(main())
