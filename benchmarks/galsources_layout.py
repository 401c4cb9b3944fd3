#!/usr/bin/env python
"""Benchmark the physical layout of the giant ``galsources`` table.

The script starts its own throw-away embedded PostgreSQL cluster (fsync on),
applies the photdb migrations, fills ``galsources`` (and copies of it with
other layouts) with a synthetic DECam-like bulge survey, and measures:

* load throughput of psycopg 3 binary ``COPY`` for several row orders
  (random, Morton/Z-order in the tangent plane, q3c pixel order computed by the
  server, q3c order through a staging table);
* bytes per row of the heap and of each index;
* query latency (cold-ish first pass after a server restart, then median and
  p95 over warm repeated cones) of the notebook's light-curve query (Q5) in its
  ``q3c_radial_query`` and ``q3c_join`` forms, 10" and 1' cones, lookup by id
  (Q4), the Q3 join by ``galsource_id`` and a count of rows per exposure;
* readers while a writer COPYs new exposures, VACUUMs, or (for comparison)
  CLUSTERs; and how VACUUM/autovacuum restores index-only light curves.

Timings on a shared machine are noisy: compare variants measured in the same
run (the ``x a`` ratio columns), not absolute numbers.

Examples
--------
Default run (5e6 rows per variant; about 15 minutes at ``--rows 3e6`` on two
busy cores, so budget 20-25 minutes for the default)::

    python benchmarks/galsources_layout.py

Bigger, only some variants::

    python benchmarks/galsources_layout.py --rows 20000000 --variants a,b_sky96,d_refincl
"""

from __future__ import annotations

import argparse
import math
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
from _bench import log, run_and_write
from psycopg import sql

from photdb.db.embedded import ensure_embedded
from photdb.db.server import EmbeddedServer

DBNAME = "photdb_bench"
CHIPS = 64  # CCDs per exposure (DECam has 62 science chips)
FILTERS = ("g", "r", "i")

#: galsources columns in table order with their numpy types.
FIELDS = (
    ("id", "i8"),
    ("galimage_id", "i4"),
    ("ra", "f8"),
    ("dec", "f8"),
    ("mag", "f4"),
    ("magerr", "f4"),
    ("magerr_raw", "f4"),
    ("flux", "f4"),
    ("dflux", "f4"),
    ("x", "f4"),
    ("y", "f4"),
    ("ref_id", "i8"),
    ("qf", "f4"),
    ("rchi2", "f4"),
    ("fracflux", "f4"),
    ("flags", "i4"),
)
ROW_DTYPE = np.dtype(list(FIELDS))
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
COLUMNS = ", ".join(name for name, _ in FIELDS)


# --------------------------------------------------------------------------------------
# Synthetic survey
# --------------------------------------------------------------------------------------
@dataclass
class Survey:
    """A DECam-like crowded bulge field observed repeatedly.

    Parameters
    ----------
    n_stars : int
        Stars in the field; the reference exposure (epoch 0) measures all of
        them, every later exposure a random ``det_frac`` of them.
    n_epochs : int
        Exposures loaded by every variant.
    extra_epochs : int
        Further exposures used by the concurrent-load and vacuum tests.
    ra0, dec0 : float
        Field centre in degrees (near the notebook's star).
    area_deg2 : float
        Field area, a square in the tangent plane.
    det_frac : float
        Fraction of stars detected on a non-reference exposure.
    seed : int
        Random seed; the same seed gives the same survey.
    """

    n_stars: int
    n_epochs: int
    extra_epochs: int = 4
    ra0: float = 271.2
    dec0: float = -29.0
    area_deg2: float = 3.0
    det_frac: float = 0.95
    seed: int = 42
    xi: np.ndarray = field(init=False, repr=False)
    eta: np.ndarray = field(init=False, repr=False)
    mag0: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        half = math.sqrt(self.area_deg2) / 2
        self.xi = rng.uniform(-half, half, self.n_stars)
        self.eta = rng.uniform(-half, half, self.n_stars)
        # number counts rising as 10^(0.3 m), truncated to 14 < m < 23.5
        u = rng.uniform(10 ** (0.3 * (14.0 - 23.5)), 1.0, self.n_stars)
        self.mag0 = (23.5 + np.log10(u) / 0.3).astype(np.float32)
        self.half = half

    def radec(self, xi: np.ndarray, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gnomonic deprojection of tangent-plane degrees to (ra, dec) degrees."""
        a0, d0 = np.radians(self.ra0), np.radians(self.dec0)
        x, y = np.radians(xi), np.radians(eta)
        denom = np.cos(d0) - y * np.sin(d0)
        ra = np.degrees(a0 + np.arctan2(x, denom)) % 360.0
        dec = np.degrees(np.arctan2(np.sin(d0) + y * np.cos(d0), np.hypot(x, denom)))
        return ra, dec

    def star_radec(self, stars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """True positions of some stars."""
        return self.radec(self.xi[stars], self.eta[stars])

    def mjd(self, epoch: int) -> float:
        """Mid-exposure MJD of an epoch (a few exposures a night)."""
        return 59295.39 + (epoch // 3) * 1.7 + (epoch % 3) * 0.004

    def exposure(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Measurements of one exposure, in star order, ``id``/``ref_id`` unset.

        Returns
        -------
        rows : numpy.ndarray
            Structured array with the galsources columns.
        stars : numpy.ndarray
            Index of the star each row measures.
        """
        rng = np.random.default_rng([self.seed, epoch])
        if epoch == 0:
            stars = np.arange(self.n_stars)
        else:
            stars = np.flatnonzero(rng.random(self.n_stars) < self.det_frac)
        n = len(stars)
        mag0 = self.mag0[stars]
        # astrometric scatter: 20 mas for bright stars, ~100 mas at the limit
        sig = (0.02 + 0.08 * 10 ** (0.4 * (mag0 - 23.5))) / 3600.0
        xi = self.xi[stars] + rng.normal(0.0, 1.0, n) * sig
        eta = self.eta[stars] + rng.normal(0.0, 1.0, n) * sig
        ra, dec = self.radec(xi, eta)
        magerr = (0.005 + 0.1 * 10 ** (0.4 * (mag0 - 22.0))).astype(np.float32)
        mag = mag0 + rng.normal(0.0, 1.0, n).astype(np.float32) * magerr
        # chips: an 8x8 grid over the field, dithered by up to 1' per exposure
        dx, dy = rng.uniform(-1 / 60, 1 / 60, 2)
        side = 2 * self.half / 8
        cx = np.clip(((xi + self.half + dx) / side).astype(int), 0, 7)
        cy = np.clip(((eta + self.half + dy) / side).astype(int), 0, 7)
        rows = np.zeros(n, dtype=ROW_DTYPE)
        rows["galimage_id"] = self.galimage_id(epoch, cy * 8 + cx)
        rows["ra"], rows["dec"] = ra, dec
        rows["mag"], rows["magerr"] = mag, magerr
        rows["magerr_raw"] = magerr * 0.9
        rows["flux"] = 10 ** (-0.4 * (mag - 30.0))
        rows["dflux"] = rows["flux"] * magerr / 1.0857
        rows["x"] = ((xi + self.half + dx) % side) / side * 2046
        rows["y"] = ((eta + self.half + dy) % side) / side * 4094
        rows["qf"] = rng.uniform(0.8, 1.0, n)
        rows["rchi2"] = rng.gamma(5.0, 0.2, n)
        rows["fracflux"] = rng.uniform(0.5, 1.0, n)
        rows["flags"] = (rng.random(n) < 0.02).astype(np.int32)
        return rows, stars

    @staticmethod
    def galimage_id(epoch: int, chip: np.ndarray | int) -> np.ndarray | int:
        """galimages.id of a chip of an exposure (exposure ``e`` owns ``64 e + 1 ..``)."""
        return epoch * CHIPS + chip + 1

    def morton_key(self, rows: np.ndarray) -> np.ndarray:
        """Z-order (Morton) key of 16-bit tangent-plane cells, computed in Python."""
        a0, d0 = np.radians(self.ra0), np.radians(self.dec0)
        ra, dec = np.radians(rows["ra"]), np.radians(rows["dec"])
        cosc = np.sin(d0) * np.sin(dec) + np.cos(d0) * np.cos(dec) * np.cos(ra - a0)
        xi = np.cos(dec) * np.sin(ra - a0) / cosc
        eta = (np.cos(d0) * np.sin(dec) - np.sin(d0) * np.cos(dec) * np.cos(ra - a0)) / cosc
        span = np.radians(2.2 * self.half)
        ix = np.clip((xi / span + 0.5) * 65535, 0, 65535).astype(np.uint64)
        iy = np.clip((eta / span + 0.5) * 65535, 0, 65535).astype(np.uint64)
        return (_spread_bits(ix) << np.uint64(1)) | _spread_bits(iy)


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Insert a zero bit between the 16 low bits of ``v`` (Morton helper)."""
    v = v & np.uint64(0xFFFF)
    v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF)
    v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F)
    v = (v | (v << np.uint64(2))) & np.uint64(0x33333333)
    v = (v | (v << np.uint64(1))) & np.uint64(0x55555555)
    return v


def encode_copy(rows: np.ndarray) -> bytes:
    """Encode rows as one PostgreSQL binary COPY stream (header, tuples, trailer).

    A block whose ``ref_id`` is all negative is written with NULL ``ref_id``
    (the reference exposure); otherwise no NULLs are written.
    """
    null_ref = len(rows) > 0 and bool((rows["ref_id"] < 0).all())
    spec = [("nf", ">i2")]
    for name, code in FIELDS:
        spec.append((f"{name}_len", ">i4"))
        if not (name == "ref_id" and null_ref):
            spec.append((name, ">" + code))
    out = np.empty(len(rows), dtype=np.dtype(spec))
    out["nf"] = len(FIELDS)
    for name, code in FIELDS:
        if name == "ref_id" and null_ref:
            out["ref_id_len"] = -1
            continue
        out[f"{name}_len"] = np.dtype(code).itemsize
        out[name] = rows[name]
    return COPY_HEADER + out.tobytes() + COPY_TRAILER


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------
ORDERS = ("random", "morton", "q3c_client", "q3c_staging")


@dataclass
class LoadState:
    """Ids handed out so far, and what the queries need to know about them."""

    next_id: int = 1
    ref_ids: np.ndarray | None = None  # id of each star's reference measurement
    tracked: np.ndarray | None = None  # stars whose per-epoch ids are remembered
    tracked_ids: dict[int, np.ndarray] = field(default_factory=dict)  # epoch -> ids (-1)
    tracked_img: dict[int, np.ndarray] = field(default_factory=dict)
    ref_pos: list[tuple[float, float]] = field(default_factory=list)  # stored ra, dec


def copy_block(cur: psycopg.Cursor, table: str, data: bytes, chunk: int = 1 << 23) -> None:
    """Binary COPY of an encoded stream into ``table``."""
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(COLUMNS)
    )
    view = memoryview(data)
    with cur.copy(stmt) as cp:
        for i in range(0, len(view), chunk):
            cp.write(view[i : i + chunk])


def load_epochs(
    conn: psycopg.Connection,
    table: str,
    survey: Survey,
    epochs: range,
    order: str,
    state: LoadState,
    rng: np.random.Generator,
) -> tuple[int, float]:
    """Load exposures one transaction each; return (rows, seconds).

    Generating the synthetic measurements is not timed; ordering them (random
    shuffle, Morton sort, q3c round trip or staging table), encoding and COPY
    are.
    """
    total_rows, total_s = 0, 0.0
    cur = conn.cursor()
    for epoch in epochs:
        rows, stars = survey.exposure(epoch)
        t0 = time.perf_counter()
        if order == "morton":
            perm = np.argsort(survey.morton_key(rows), kind="stable")
        elif order == "q3c_client":
            ipix = (
                psycopg.Cursor(conn)
                .execute(
                    "SELECT q3c_ang2ipix(r, d) FROM unnest(%b::float8[], %b::float8[]) AS t(r, d)",
                    (rows["ra"].tolist(), rows["dec"].tolist()),
                    binary=True,
                )
                .fetchall()
            )
            perm = np.argsort(np.fromiter((p for (p,) in ipix), np.int64, len(rows)))
        else:  # random, and the input of the staging table
            perm = rng.permutation(len(rows))
        rows, stars = rows[perm], stars[perm]
        rows["id"] = np.arange(state.next_id, state.next_id + len(rows))
        state.next_id += len(rows)
        if epoch == 0:
            state.ref_ids = np.empty(survey.n_stars, np.int64)
            state.ref_ids[stars] = rows["id"]
            rows["ref_id"] = -1
        else:
            rows["ref_id"] = state.ref_ids[stars]
        data = encode_copy(rows)
        with conn.transaction():
            if order == "q3c_staging":
                copy_block(cur, "gs_stage", data)
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} SELECT * FROM gs_stage ORDER BY q3c_ang2ipix(ra, dec)"
                    ).format(sql.Identifier(table))
                )
                cur.execute("TRUNCATE gs_stage")
            else:
                copy_block(cur, table, data)
        total_s += time.perf_counter() - t0
        total_rows += len(rows)
        if state.tracked is not None:
            pos = np.full(survey.n_stars, -1, np.int64)
            pos[stars] = np.arange(len(stars))
            where = pos[state.tracked]
            ok = where >= 0
            ids = np.where(ok, rows["id"][np.where(ok, where, 0)], -1)
            img = np.where(ok, rows["galimage_id"][np.where(ok, where, 0)], -1)
            state.tracked_ids[epoch], state.tracked_img[epoch] = ids, img
    return total_rows, total_s


# --------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One physical layout of galsources.

    Parameters
    ----------
    key : str
        Short name used on the command line and in the results.
    title : str
        What it is.
    order : str
        Row order within each exposure (one of ``ORDERS``).
    partitioning : str
        ``sky`` (the schema's q3c tiles), ``none`` or ``exposure``.
    indexes : tuple of str
        Which of ``q3c``, ``id``, ``brin``, ``ref`` to build.
    q3c_include, ref_include : tuple of str
        Columns added to the q3c or ref_id index with ``INCLUDE``.
    queries : bool
        Measure query latency (otherwise load and size only).
    """

    key: str
    title: str
    order: str = "morton"
    partitioning: str = "none"
    indexes: tuple[str, ...] = ("q3c", "id", "brin", "ref")
    q3c_include: tuple[str, ...] = ()
    ref_include: tuple[str, ...] = ()
    queries: bool = True


VARIANTS = {
    v.key: v
    for v in (
        Variant("a", "schema as is, rows Morton-sorted per exposure"),
        Variant("a_random", "schema as is, rows in random order", order="random"),
        Variant(
            "a_q3c_client",
            "schema as is, sorted by q3c_ang2ipix fetched from the server",
            order="q3c_client",
            queries=False,
        ),
        Variant(
            "a_q3c_staging",
            "schema as is, via staging table + INSERT .. ORDER BY q3c_ang2ipix",
            order="q3c_staging",
            queries=False,
        ),
        Variant("b_sky96", "partitioned by sky tile (96 q3c_ang2ipix ranges)", partitioning="sky"),
        Variant("c_byexp", "partitioned by exposure (galimage_id ranges)", partitioning="exposure"),
        Variant(
            "d_incl3",
            "q3c index INCLUDE (mag, magerr, galimage_id)",
            q3c_include=("mag", "magerr", "galimage_id"),
        ),
        Variant(
            "d_refincl",
            "ref_id btree INCLUDE (galimage_id, mag, magerr)",
            ref_include=("galimage_id", "mag", "magerr"),
        ),
        Variant(
            "e_noref", "without the ref_id btree", indexes=("q3c", "id", "brin"), queries=False
        ),
        Variant("e_noid", "without the id btree", indexes=("q3c", "brin", "ref"), queries=False),
        Variant("noidx", "heap only, no index at all", indexes=(), queries=False),
    )
}

INDEX_DDL = {
    "q3c": "CREATE INDEX {name} ON {table} (q3c_ang2ipix(ra, dec)){include}",
    "id": "CREATE INDEX {name} ON {table} (id)",
    "brin": "CREATE INDEX {name} ON {table} USING brin (galimage_id)",
    "ref": "CREATE INDEX {name} ON {table} (ref_id){include}",
}


def table_name(v: Variant) -> str:
    """The schema's own table for the baseline, ``gs_<key>`` for the others."""
    return "galsources" if v.key == "a" else f"gs_{v.key}"


def create_variant(conn: psycopg.Connection, v: Variant, survey: Survey) -> str:
    """Create (or empty) the table of a variant; return its name."""
    table = table_name(v)
    if v.key == "a":
        conn.execute("TRUNCATE galsources")
        return table
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    if v.partitioning == "none":
        conn.execute(f"CREATE TABLE {table} (LIKE galsources INCLUDING DEFAULTS)")
    elif v.partitioning == "sky":
        conn.execute(
            f"CREATE TABLE {table} (LIKE galsources INCLUDING DEFAULTS) "
            "PARTITION BY RANGE (q3c_ang2ipix(ra, dec))"
        )
        n, span = 96, 6 * 2**60  # 6 cube faces x 16 tiles of ~430 deg2
        for i in range(n):
            lo = "MINVALUE" if i == 0 else str(span * i // n)
            hi = "MAXVALUE" if i == n - 1 else str(span * (i + 1) // n)
            conn.execute(
                f"CREATE TABLE {table}_p{i:02d} PARTITION OF {table} "
                f"FOR VALUES FROM ({lo}) TO ({hi})"
            )
    elif v.partitioning == "exposure":
        conn.execute(
            f"CREATE TABLE {table} (LIKE galsources INCLUDING DEFAULTS) "
            "PARTITION BY RANGE (galimage_id)"
        )
        for e in range(survey.n_epochs + survey.extra_epochs):
            lo, hi = survey.galimage_id(e, 0), survey.galimage_id(e + 1, 0)
            conn.execute(
                f"CREATE TABLE {table}_e{e:04d} PARTITION OF {table} "
                f"FOR VALUES FROM ({lo}) TO ({hi})"
            )
    else:
        raise ValueError(v.partitioning)
    for kind in v.indexes:
        include = ""
        extra = {"q3c": v.q3c_include, "ref": v.ref_include}.get(kind)
        if extra:
            include = f" INCLUDE ({', '.join(extra)})"
        conn.execute(
            INDEX_DDL[kind].format(name=f"{table}_{kind}_idx", table=table, include=include)
        )
    return table


def fill_catalogue(conn: psycopg.Connection, survey: Survey) -> None:
    """Insert the exposures and chips (galexposures, observations, galimages)."""
    n = survey.n_epochs + survey.extra_epochs
    conn.execute(
        "INSERT INTO galexposures "
        "(id, filename, path, sha256, mjd, filter, is_reference, n_images) "
        "SELECT e + 1, format('c4d_%%s_ooi.fits.fz', e), '/bench', "
        "encode(sha256(convert_to(e::text, 'UTF8')), 'hex'), "
        "59295.39 + (e / 3) * 1.7 + (e %% 3) * 0.004, "
        "(ARRAY['g','r','i'])[e %% 3 + 1], e = 0, %s FROM generate_series(0, %s) e",
        (CHIPS, n - 1),
    )
    conn.execute(
        "INSERT INTO observations (id, band, mjd, filename) "
        "SELECT e * %s + c + 1, (ARRAY['g','r','i'])[e %% 3 + 1], "
        "59295.39 + (e / 3) * 1.7 + (e %% 3) * 0.004, format('c4d_%%s_ooi.fits.fz', e) "
        "FROM generate_series(0, %s) e, generate_series(0, %s) c",
        (CHIPS, n - 1, CHIPS - 1),
    )
    conn.execute(
        "INSERT INTO galimages (id, galexposure_id, hdu, ccdnum, status) "
        "SELECT e * %s + c + 1, e + 1, c + 1, c + 1, 'done' "
        "FROM generate_series(0, %s) e, generate_series(0, %s) c",
        (CHIPS, n - 1, CHIPS - 1),
    )
    conn.execute("SELECT setval('galexposures_id_seq', %s)", (n,))
    conn.execute("SELECT setval('observations_id_seq', %s)", (n * CHIPS,))
    conn.execute("CREATE UNLOGGED TABLE gs_stage (LIKE galsources INCLUDING DEFAULTS)")
    conn.execute("ANALYZE galexposures, observations, galimages")


def fill_varobjs(conn: psycopg.Connection, state: LoadState, survey: Survey) -> None:
    """(Re)fill galvarobjs with every later detection of the tracked stars."""
    conn.execute("TRUNCATE galvarobjs")
    recs = []
    for epoch in range(1, survey.n_epochs):
        ids, img = state.tracked_ids[epoch], state.tracked_img[epoch]
        for k, star in enumerate(state.tracked):
            if ids[k] >= 0:
                recs.append((int(ids[k]), int(state.ref_ids[star]), int(img[k]), 0.3, 6.0))
    with conn.cursor() as cur:
        with cur.copy(
            "COPY galvarobjs (galsource_id, refsource_id, galimage_id, dmag, significance) "
            "FROM STDIN"
        ) as cp:
            for rec in recs:
                cp.write_row(rec)
    conn.execute("ANALYZE galvarobjs")


def _index_kind(indexdef: str) -> str:
    if "USING brin" in indexdef:
        return "brin"
    if "q3c_ang2ipix" in indexdef:
        return "q3c"
    if "(ref_id)" in indexdef:
        return "ref"
    if "(id)" in indexdef:
        return "id"
    return "other"


def _tree_size(conn: psycopg.Connection, rel: str, fn: str) -> int:
    """``fn`` summed over the leaves of a partition tree (or of a plain relation)."""
    return int(
        conn.execute(
            f"SELECT coalesce(sum({fn}(relid)), 0) + {fn}(%s::regclass) "
            "FROM pg_partition_tree(%s) WHERE isleaf AND relid <> %s::regclass",
            (rel, rel, rel),
        ).fetchone()[0]
    )


def relation_sizes(conn: psycopg.Connection, table: str) -> dict[str, int]:
    """Bytes of the heap (with TOAST, FSM, VM) and of each index kind, over all partitions."""
    out = {"heap": _tree_size(conn, table, "pg_table_size")}
    idx = conn.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
        "WHERE indrelid = %s::regclass",
        (table,),
    ).fetchall()
    for name, indexdef in idx:
        out[_index_kind(indexdef)] = _tree_size(conn, name, "pg_relation_size")
    return out


# --------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------
LC_COLS = "e.mjd,e.filter,e.is_reference,s.ra,s.dec,s.mag,s.magerr"
LC_JOIN = (
    "INNER JOIN galimages i ON s.galimage_id=i.id "
    "INNER JOIN galexposures e ON i.galexposure_id=e.id"
)
QUERIES = {
    # the notebook's Q5, verbatim but for the table name and bound coordinates
    "q5_radial": f"SELECT {LC_COLS} FROM {{t}} s {LC_JOIN} "
    "WHERE q3c_radial_query(s.ra,s.dec,%(ra)s,%(dec)s,0.3/3600.) ORDER BY e.filter,e.mjd",
    "q5_join": f"SELECT {LC_COLS} FROM {{t}} s {LC_JOIN} "
    "WHERE q3c_join(%(ra)s,%(dec)s,s.ra,s.dec,0.3/3600.) ORDER BY e.filter,e.mjd",
    # light curve without joins: index-only when the q3c index INCLUDEs what it reads
    "lc_ios": "SELECT s.galimage_id,s.mag,s.magerr FROM {t} s "
    "WHERE q3c_join(%(ra)s,%(dec)s,s.ra,s.dec,0.3/3600.)",
    "cone_10as": "SELECT s.id,s.galimage_id,s.ra,s.dec,s.mag,s.magerr FROM {t} s "
    "WHERE q3c_join(%(ra)s,%(dec)s,s.ra,s.dec,10/3600.)",
    "cone_1am": "SELECT s.id,s.galimage_id,s.ra,s.dec,s.mag,s.magerr FROM {t} s "
    "WHERE q3c_join(%(ra)s,%(dec)s,s.ra,s.dec,60/3600.)",
    # light curve by reference source: index-only when the ref_id index INCLUDEs it
    "lc_ref": "SELECT s.galimage_id,s.mag,s.magerr FROM {t} s WHERE s.ref_id=%(ref)s",
    "q4_id": "SELECT s.ra,s.dec FROM {t} s WHERE s.id=%(ref)s",
    "q3_varobj": "SELECT e.mjd,e.filter,e.is_reference,s.mag,s.magerr FROM galvarobjs v "
    f"INNER JOIN {{t}} s ON v.galsource_id=s.id {LC_JOIN} "
    "WHERE v.refsource_id=%(ref)s ORDER BY e.mjd",
    "count_exp": "SELECT count(*) FROM {t} WHERE galimage_id BETWEEN %(lo)s AND %(hi)s",
}


def connect(server: EmbeddedServer) -> psycopg.Connection:
    """Superuser connection over the private socket, client-side binding like psycopg2."""
    conn = psycopg.connect(
        **server.superuser_conninfo(DBNAME), autocommit=True, cursor_factory=psycopg.ClientCursor
    )
    conn.prepare_threshold = None
    return conn


def query_params(state: LoadState, survey: Survey, k: int) -> dict:
    """Bind values for tracked star ``k`` (its reference position, ids, an exposure)."""
    star = state.tracked[k]
    ref = int(state.ref_ids[star])
    ra, dec = state.ref_pos[k]
    e = k % survey.n_epochs
    return {
        "ra": float(ra),
        "dec": float(dec),
        "ref": ref,
        "lo": survey.galimage_id(e, 0),
        "hi": survey.galimage_id(e, CHIPS - 1),
    }


def time_queries(
    conn: psycopg.Connection, table: str, params: list[dict], names: list[str]
) -> dict[str, list[float]]:
    """Run every query for every parameter set; return latencies in ms per query."""
    out: dict[str, list[float]] = {n: [] for n in names}
    cur = conn.cursor()
    for p in params:
        for name in names:
            q = QUERIES[name].format(t=table)
            t0 = time.perf_counter()
            cur.execute(q, p)
            cur.fetchall()
            out[name].append((time.perf_counter() - t0) * 1e3)
    return out


def explain(conn: psycopg.Connection, table: str, name: str, p: dict) -> dict:
    """Planning/execution time, buffers and scan types of one query."""
    q = QUERIES[name].format(t=table)
    plan = conn.cursor().execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + q, p).fetchone()[0]
    top = plan[0]
    nodes: list[str] = []
    heap_fetches = 0
    parts: set[str] = set()

    def walk(node: dict) -> None:
        nonlocal heap_fetches
        nodes.append(node["Node Type"])
        heap_fetches += int(node.get("Heap Fetches", 0))
        if "Relation Name" in node and node["Relation Name"].startswith(table):
            parts.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(top["Plan"])
    return {
        "planning_ms": top.get("Planning Time"),
        "execution_ms": top.get("Execution Time"),
        "shared_hit": top["Plan"].get("Shared Hit Blocks"),
        "shared_read": top["Plan"].get("Shared Read Blocks"),
        "index_only": "Index Only Scan" in nodes,
        "heap_fetches": heap_fetches,
        "relations_scanned": len(parts),
        "nodes": sorted(set(nodes)),
    }


def summarise(ms: list[float]) -> dict[str, float]:
    """Median, p95 and max of latencies in ms."""
    if not ms:
        return {"n": 0}
    arr = np.asarray(ms)
    return {
        "n": len(ms),
        "median": float(np.median(arr)),
        "p95": float(np.percentile(arr, 95)),
        "max": float(arr.max()),
    }


# --------------------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------------------
class Readers:
    """Background cone queries plus a lock monitor, recording latency per phase."""

    def __init__(self, server: EmbeddedServer, table: str, params: list[dict], query: str):
        self.server, self.table, self.params, self.query = server, table, params, query
        self.phase = "idle"
        self.lat: dict[str, list[float]] = {}
        self.waiting: dict[str, int] = {}
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._monitor, daemon=True),
        ]

    def __enter__(self) -> Readers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def _read(self) -> None:
        with connect(self.server) as conn:
            cur = conn.cursor()
            q = QUERIES[self.query].format(t=self.table)
            k = 0
            while not self.stop.is_set():
                phase = self.phase
                t0 = time.perf_counter()
                cur.execute(q, self.params[k % len(self.params)])
                cur.fetchall()
                self.lat.setdefault(phase, []).append((time.perf_counter() - t0) * 1e3)
                k += 1

    def _monitor(self) -> None:
        with connect(self.server) as conn:
            while not self.stop.is_set():
                n = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]
                phase = self.phase
                self.waiting[phase] = max(self.waiting.get(phase, 0), n)
                time.sleep(0.02)

    def run_phase(self, name: str, action: Callable[[], object]) -> float:
        """Run ``action`` while the readers record under ``name``; return its seconds."""
        self.phase = name
        t0 = time.perf_counter()
        action()
        dt = time.perf_counter() - t0
        self.phase = "idle"
        return dt


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------
class Bench:
    """Runs the selected variants on one embedded cluster and collects results."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        n_epochs = max(2, round(args.rows / args.exposure_rows))
        self.survey = Survey(
            n_stars=args.exposure_rows,
            n_epochs=n_epochs,
            extra_epochs=args.extra_epochs,
            seed=args.seed,
        )
        self.home = Path(tempfile.mkdtemp(prefix="photdb-bench-"))
        self.server = EmbeddedServer(self.home, fast=False)
        self.results: dict = {
            "config": {
                "rows_target": args.rows,
                "exposure_rows": args.exposure_rows,
                "epochs": n_epochs,
                "cones": args.cones,
                "cold_cones": args.cold_cones,
                "field": {
                    "ra0": self.survey.ra0,
                    "dec0": self.survey.dec0,
                    "area_deg2": self.survey.area_deg2,
                },
                "machine": platform.platform(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
            "variants": {},
        }
        rng = np.random.default_rng(args.seed + 1)
        n_track = args.cones + args.cold_cones
        self.tracked = np.sort(rng.choice(self.survey.n_stars, n_track, replace=False))

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        log(f"cluster in {self.home} (fsync on)")
        ensure_embedded(self.server, DBNAME)
        self.conn = connect(self.server)
        ver = self.conn.execute("SHOW server_version").fetchone()[0]
        self.results["config"]["server_version"] = ver
        fill_catalogue(self.conn, self.survey)

    def restart(self) -> None:
        """Restart the server: empty shared_buffers (the OS page cache is kept)."""
        self.conn.close()
        self.server.stop()
        self.server.start()
        self.conn = connect(self.server)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        if self.args.keep:
            log(f"kept cluster in {self.home}")
            return
        self.server.destroy()
        shutil.rmtree(self.home, ignore_errors=True)

    # -- one variant -------------------------------------------------------------------
    def run_variant(self, v: Variant) -> None:
        s = self.survey
        log(f"variant {v.key}: {v.title}")
        table = create_variant(self.conn, v, s)
        state = LoadState(tracked=self.tracked)
        rng = np.random.default_rng(self.args.seed + 2)
        rows, secs = load_epochs(self.conn, table, s, range(s.n_epochs), v.order, state, rng)
        res: dict = {
            "title": v.title,
            "order": v.order,
            "rows": rows,
            "load_s": secs,
            "load_rows_per_s": rows / secs,
        }
        log(f"  loaded {rows:,} rows in {secs:.1f} s = {rows / secs:,.0f} rows/s")
        t0 = time.perf_counter()
        self.conn.execute(f"VACUUM (ANALYZE) {table}")
        res["vacuum_analyze_s"] = time.perf_counter() - t0
        sizes = relation_sizes(self.conn, table)
        res["bytes"] = sizes
        res["bytes_per_row"] = {k: b / rows for k, b in sizes.items()}
        res["bytes_per_row"]["total"] = sum(sizes.values()) / rows
        res["partitions_with_rows"] = (
            self.conn.execute(
                "SELECT count(*) FROM pg_partition_tree(%s) t JOIN pg_class c ON c.oid = t.relid "
                "WHERE t.isleaf AND c.reltuples > 0",
                (table,),
            ).fetchone()[0]
            or 1
        )
        if v.queries:
            res["queries"] = self.measure_queries(table, state)
            if v.ref_include:
                res["vacuum_ios"] = self.vacuum_ios(table, state)
        self.results["variants"][v.key] = res
        if v.key != "a":
            self.conn.execute(f"DROP TABLE {table}")
        else:
            self.state_a = state

    def measure_queries(self, table: str, state: LoadState) -> dict:
        s = self.survey
        ra, dec = s.star_radec(state.tracked)
        # the notebook looks the position up from the reference measurement (Q4)
        ref_pos = self.conn.execute(
            f"SELECT id, ra, dec FROM {table} WHERE id = ANY(%s)",
            (state.ref_ids[state.tracked].tolist(),),
        ).fetchall()
        pos = {i: (r, d) for i, r, d in ref_pos}
        state.ref_pos = [
            pos.get(int(state.ref_ids[st]), (ra[k], dec[k])) for k, st in enumerate(state.tracked)
        ]
        fill_varobjs(self.conn, state, s)
        params = [query_params(state, s, k) for k in range(len(state.tracked))]
        cold_p, warm_p = params[: self.args.cold_cones], params[self.args.cold_cones :]
        names = list(QUERIES)
        self.restart()
        cold = time_queries(self.conn, table, cold_p, names)
        time_queries(self.conn, table, warm_p, names)  # warm-up pass
        warm = time_queries(self.conn, table, warm_p, names)
        out = {}
        for name in names:
            out[name] = {
                "cold": summarise(cold[name]),
                "warm": summarise(warm[name]),
                "explain": explain(self.conn, table, name, warm_p[0]),
                "rows_returned": len(
                    self.conn.cursor().execute(QUERIES[name].format(t=table), warm_p[0]).fetchall()
                ),
            }
        self.params = warm_p
        if table == "galsources":
            self.params_a = warm_p
        return out

    def vacuum_ios(self, table: str, state: LoadState) -> dict:
        """New exposures break index-only scans until (auto)vacuum sets the visibility map."""
        s = self.survey
        out: dict = {}
        p = self.params[: min(50, len(self.params))]

        def probe(label: str) -> None:
            lat = time_queries(self.conn, table, p, ["lc_ref"])["lc_ref"]
            lat = time_queries(self.conn, table, p, ["lc_ref"])["lc_ref"]
            fetches = sum(explain(self.conn, table, "lc_ref", q)["heap_fetches"] for q in p)
            out[label] = {"lc_ref": summarise(lat), "heap_fetches_per_query": fetches / len(p)}
            log(
                f"  {label}: heap fetches/query {fetches / len(p):.1f}, "
                f"median {np.median(lat):.2f} ms"
            )

        probe("after_vacuum")
        extra = range(s.n_epochs, s.n_epochs + s.extra_epochs)
        rng = np.random.default_rng(self.args.seed + 3)
        load_epochs(self.conn, table, s, extra, "morton", state, rng)
        probe("after_new_exposures")
        # what the migration should set on every partition (see the report)
        leaves = [
            r[0]
            for r in self.conn.execute(
                "SELECT relid::regclass::text FROM pg_partition_tree(%s) WHERE isleaf", (table,)
            ).fetchall()
        ]
        for leaf in leaves:
            self.conn.execute(
                f"ALTER TABLE {leaf} SET (autovacuum_vacuum_insert_scale_factor = 0.01)"
            )
        self.conn.execute("ALTER SYSTEM SET autovacuum_naptime = '5s'")
        self.conn.execute("SELECT pg_reload_conf()")
        before = self._autovacuums(table)
        t0 = time.perf_counter()
        waited = None
        while time.perf_counter() - t0 < self.args.autovacuum_wait:
            time.sleep(2)
            if self._autovacuums(table) > before and not self._vacuum_running():
                waited = time.perf_counter() - t0
                break
        out["autovacuum_seconds"] = waited
        if waited is None:
            log("  autovacuum did not run in time; running VACUUM")
            t0 = time.perf_counter()
            self.conn.execute(f"VACUUM {table}")
            out["manual_vacuum_s"] = time.perf_counter() - t0
        probe("after_autovacuum" if waited is not None else "after_manual_vacuum")
        self.conn.execute("ALTER SYSTEM RESET autovacuum_naptime")
        self.conn.execute("SELECT pg_reload_conf()")
        return out

    def _autovacuums(self, table: str) -> int:
        return self.conn.execute(
            "SELECT coalesce(sum(autovacuum_count), 0) FROM pg_stat_user_tables "
            "WHERE relid IN (SELECT relid FROM pg_partition_tree(%s))",
            (table,),
        ).fetchone()[0]

    def _vacuum_running(self) -> bool:
        return bool(self.conn.execute("SELECT count(*) FROM pg_stat_progress_vacuum").fetchone()[0])

    # -- concurrency on the baseline -----------------------------------------------------
    def concurrency(self) -> dict:
        s, state = self.survey, self.state_a
        log("concurrency: readers run Q5 cones while a writer COPYs, VACUUMs, CLUSTERs")
        state.tracked_ids, state.tracked_img = {}, {}
        out: dict = {}
        writer = connect(self.server)
        rng = np.random.default_rng(self.args.seed + 4)
        extra = range(s.n_epochs, s.n_epochs + s.extra_epochs)
        with Readers(self.server, "galsources", self.params_a, "q5_radial") as rd:
            time.sleep(0.5)
            out["quiet_s"] = rd.run_phase("quiet", lambda: time.sleep(self.args.quiet_seconds))
            loaded: list = []
            out["copy_s"] = rd.run_phase(
                "copy",
                lambda: loaded.append(
                    load_epochs(writer, "galsources", s, extra, "morton", state, rng)
                ),
            )
            out["copy_rows"] = loaded[0][0]
            out["vacuum_s"] = rd.run_phase(
                "vacuum", lambda: writer.execute("VACUUM (ANALYZE) galsources")
            )
            if self.args.cluster_demo:
                # the table itself, or its biggest partition if it is partitioned
                row = writer.execute(
                    "SELECT c.relname FROM pg_partition_tree('galsources') t "
                    "JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf "
                    "ORDER BY c.reltuples DESC LIMIT 1"
                ).fetchone()
                part = row[0] if row else "galsources"
                idx = writer.execute(
                    "SELECT indexrelid::regclass::text FROM pg_index "
                    "WHERE indrelid = %s::regclass AND indexprs IS NOT NULL",
                    (part,),
                ).fetchone()[0]
                out["cluster_partition"] = part
                out["cluster_s"] = rd.run_phase(
                    "cluster", lambda: writer.execute(f"CLUSTER {part} USING {idx}")
                )
            rd.phase = "after"
            time.sleep(1.0)
        writer.close()
        for phase in ("quiet", "copy", "vacuum", "cluster"):
            if phase in rd.lat:
                out[phase] = summarise(rd.lat[phase])
                out[phase]["max_waiting_locks"] = rd.waiting.get(phase, 0)
                dur = out.get(f"{phase}_s")
                out[phase]["queries_per_s"] = len(rd.lat[phase]) / dur if dur else None
        return out

    # -- all -------------------------------------------------------------------------------
    def run(self) -> dict:
        keys = self.args.variants
        if "a" in keys:
            keys = ["a"] + [k for k in keys if k != "a"]
        for key in keys:
            self.run_variant(VARIANTS[key])
        if self.args.concurrency and "a" in keys:
            self.results["concurrency"] = self.concurrency()
        self.results["config"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        return self.results


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------
def _ratio(x: float | None, base: float | None) -> str:
    if x is None or not base:
        return ""
    return f"{x / base:.2f}"


def report(res: dict) -> str:
    """Plain-text tables of the results."""
    lines: list[str] = []
    cfg = res["config"]
    var = res["variants"]
    base = var.get("a")
    lines.append(
        f"galsources layout benchmark: {cfg['epochs']} exposures x ~{cfg['exposure_rows']:,} "
        f"sources, {cfg['field']['area_deg2']} deg2 at ({cfg['field']['ra0']}, "
        f"{cfg['field']['dec0']}), PostgreSQL {cfg.get('server_version')}"
    )
    lines.append("")
    lines.append("LOAD (binary COPY, one transaction per exposure) and SIZE")
    hdr = (
        f"{'variant':<14} {'rows':>10} {'rows/s':>9} {'x a':>5}  {'B/row':>6} "
        f"{'heap':>5} {'q3c':>5} {'id':>5} {'brin':>5} {'ref':>5} {'parts':>5}  title"
    )
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for key, r in var.items():
        bpr = r["bytes_per_row"]

        def idx(kind: str, bpr: dict = bpr) -> str:
            return f"{bpr[kind]:.1f}" if kind in bpr else "-"

        lines.append(
            f"{key:<14} {r['rows']:>10,} {r['load_rows_per_s']:>9,.0f} "
            f"{_ratio(r['load_rows_per_s'], base and base['load_rows_per_s']):>5}  "
            f"{bpr['total']:>6.1f} {bpr['heap']:>5.1f} {idx('q3c'):>5} {idx('id'):>5} "
            f"{idx('brin'):>5} {idx('ref'):>5} {r['partitions_with_rows']:>5}  {r['title']}"
        )
    lines.append("(B/row: bytes per row, total and per relation; parts: partitions holding rows)")
    qvars = {k: r for k, r in var.items() if "queries" in r}
    if qvars:
        names = list(next(iter(qvars.values()))["queries"])
        lines.append("")
        lines.append(
            "QUERIES: warm median / p95 ms over the cones, cold = median of the first pass "
            "after a server restart; x a = warm median vs variant a"
        )
        hdr = (
            f"{'query':<11} {'variant':<10} {'warm med':>9} {'p95':>8} {'x a':>6} "
            f"{'cold med':>9} {'plan ms':>8} {'exec ms':>8} {'rows':>6} {'IOS':>4} {'rels':>4}"
        )
        lines.append(hdr)
        lines.append("-" * len(hdr))
        for name in names:
            b = qvars.get("a", {}).get("queries", {}).get(name)
            for key, r in qvars.items():
                q = r["queries"][name]
                ex = q["explain"]
                lines.append(
                    f"{name:<11} {key:<10} {q['warm']['median']:>9.2f} {q['warm']['p95']:>8.2f} "
                    f"{_ratio(q['warm']['median'], b and b['warm']['median']):>6} "
                    f"{q['cold']['median']:>9.2f} {ex['planning_ms']:>8.2f} "
                    f"{ex['execution_ms']:>8.2f} {q['rows_returned']:>6} "
                    f"{'yes' if ex['index_only'] else 'no':>4} {ex['relations_scanned']:>4}"
                )
    for key, r in var.items():
        if "vacuum_ios" in r:
            vi = r["vacuum_ios"]
            lines.append("")
            lines.append(f"INDEX-ONLY LIGHT CURVES ({key}): lc_ref over 50 stars")
            for label, d in vi.items():
                if isinstance(d, dict):
                    lines.append(
                        f"  {label:<22} heap fetches/query {d['heap_fetches_per_query']:7.1f}   "
                        f"median {d['lc_ref']['median']:.2f} ms  p95 {d['lc_ref']['p95']:.2f} ms"
                    )
            if vi.get("autovacuum_seconds") is not None:
                lines.append(
                    f"  autovacuum (insert-triggered, scale factor 0.01, naptime 5 s) ran "
                    f"{vi['autovacuum_seconds']:.0f} s after the load"
                )
    conc = res.get("concurrency")
    if conc:
        lines.append("")
        lines.append(
            "CONCURRENCY on variant a: one reader loops q5_radial while another session works"
        )
        hdr = (
            f"{'phase':<8} {'seconds':>8} {'queries':>8} {'q/s':>7} {'median':>8} {'p95':>8} "
            f"{'max ms':>9} {'waiting locks':>14}"
        )
        lines.append(hdr)
        lines.append("-" * len(hdr))
        for phase in ("quiet", "copy", "vacuum", "cluster"):
            if phase in conc:
                d = conc[phase]
                lines.append(
                    f"{phase:<8} {conc[f'{phase}_s']:>8.1f} {d['n']:>8} "
                    f"{d['queries_per_s'] or 0:>7.1f} {d['median']:>8.2f} {d['p95']:>8.2f} "
                    f"{d['max']:>9.1f} {d['max_waiting_locks']:>14}"
                )
        lines.append(
            f"(copy = {conc['copy_rows']:,} new rows; cluster = CLUSTER "
            f"{conc.get('cluster_partition', '-')} USING its q3c index, for comparison)"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=float, default=5e6, help="rows per variant (default 5e6)")
    p.add_argument("--exposure-rows", type=float, default=2.5e5, help="stars (= rows) per exposure")
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated subset of: {', '.join(VARIANTS)}",
    )
    p.add_argument("--cones", type=int, default=200, help="warm cones per query")
    p.add_argument("--cold-cones", type=int, default=20, help="cones of the cold pass")
    p.add_argument("--extra-epochs", type=int, default=4, help="exposures of the live-load tests")
    p.add_argument("--quiet-seconds", type=float, default=5.0)
    p.add_argument("--autovacuum-wait", type=float, default=90.0)
    p.add_argument("--no-concurrency", dest="concurrency", action="store_false")
    p.add_argument("--no-cluster-demo", dest="cluster_demo", action="store_false")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--keep", action="store_true", help="keep the cluster for inspection")
    p.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).parent / "results" / "galsources_layout.json",
    )
    args = p.parse_args(argv)
    args.rows = int(args.rows)
    args.exposure_rows = int(args.exposure_rows)
    args.variants = [k.strip() for k in args.variants.split(",") if k.strip()]
    unknown = [k for k in args.variants if k not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the tables and write the JSON results."""
    args = parse_args(argv)
    return run_and_write(Bench(args), args.output, report)


if __name__ == "__main__":
    raise SystemExit(main())
