"""Variability statistics per reference source (``galrefstats``): kept up to date, rebuilt, read.

* :func:`update_for_image` runs inside the transaction that stores a search image
  (:func:`photdb.survey.process.run_search`) and adds the image's forced points to
  the running sums of their reference sources, without reading ``galsources``
  except for the neighbours in time of a point that arrives out of order.
* :func:`rebuild` recomputes every row from ``galsources`` (``photdb stats rebuild``).
* :mod:`photdb.survey.candidates` reads it.

Concurrency: the rows of an image's sources are created (``ON CONFLICT DO NOTHING``)
and then locked ``FOR UPDATE`` in ``refsource_id`` order before they are read, so
two images sharing sources are applied one after the other, each to the state the
other left, and transactions that lock in the same order cannot deadlock. The
statistics themselves are :mod:`photdb.varstats` (no SQL there, no science here).
"""

from __future__ import annotations

import numpy as np
import psycopg
from astropy.table import Table
from psycopg import sql

from photdb.db.copy import Column, copy_columns
from photdb.varstats import (
    SUM_FIELDS,
    RefOutlierConfig,
    RunningSums,
    add_points,
    deviation_base,
    finalize,
    needs_neighbours,
    sums_from_points,
)

__all__ = ["STAT_COLUMNS", "rebuild", "update_for_image"]

#: RunningSums field -> galrefstats column
_SUM_COLUMNS = {
    "n": "n_epochs", "n_det": "n_det", "sw": "sum_w", "swd": "sum_wd", "swd2": "sum_wd2",
    "sd": "sum_d", "sd2": "sum_d2", "sdd2": "sum_dd2", "sj": "sum_j", "d_min": "d_min",
    "d_max": "d_max", "max_sig": "max_sig", "first_t": "first_mjd",
    "first_img": "first_image", "first_d": "first_d", "first_e": "first_e",
    "last_t": "last_mjd", "last_img": "last_image", "last_d": "last_d", "last_e": "last_e",
}  # fmt: skip
_INT_SUMS = {"n": "int4", "n_det": "int4", "first_img": "int4", "last_img": "int4"}
#: the statistics stored beside the sums (VarStats field = column)
STAT_COLUMNS = ("mean_mag", "mean_magerr", "chi2nu", "eta", "stetson_j", "amplitude",
                "ref_offset", "ref_offset_sigma")  # fmt: skip
#: a forced point that enters the statistics (the same rule as varstats: finite, σ > 0)
_COUNTED = ("s.magerr > 0 AND s.magerr < 'Infinity' AND s.mag > '-Infinity'"
            " AND s.mag < 'Infinity'")  # fmt: skip


def _f4(values) -> np.ndarray:
    """float4 column values as read (shortest decimal text) -> the exact float4, as float64.

    A point's ``mag - ref_mag`` must be the same number whichever way it reached us.
    """
    return np.asarray(values, float).astype(np.float32).astype(float)


def _sums_from_rows(arr: np.ndarray) -> RunningSums:
    cols = {}
    for k, name in enumerate(SUM_FIELDS):
        v = arr[:, k]
        cols[name] = np.nan_to_num(v, nan=0).astype(np.int64) if name in _INT_SUMS else v
    return RunningSums(**cols)


def _write_rows(cur: psycopg.Cursor, ids: np.ndarray, sums: RunningSums, stats) -> None:
    """UPDATE the sums and statistics of existing rows (through a temporary table)."""
    types = {col: _INT_SUMS.get(f, "float8") for f, col in _SUM_COLUMNS.items()}
    types |= {c: "float4" for c in STAT_COLUMNS} | {"max_sig": "float4"}
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS _refstats_new (refsource_id int8, {},"
            " outlier int2) ON COMMIT DELETE ROWS"
        ).format(
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in types.items()
            )
        )  # fmt: skip
    )
    cur.execute("DELETE FROM _refstats_new")
    cols = [Column("refsource_id", "int8", np.asarray(ids, np.int64))]
    for field, col in _SUM_COLUMNS.items():
        v = np.asarray(getattr(sums, field))
        null = (sums.n == 0) if field in ("first_img", "last_img") else None
        cols.append(Column(col, types[col], v.astype(np.int64 if field in _INT_SUMS else float),
                           null))  # fmt: skip
    cols += [Column(c, "float4", np.asarray(getattr(stats, c), float)) for c in STAT_COLUMNS]
    cols.append(Column("outlier", "int2", np.asarray(stats.ref_outlier, np.int64)))
    copy_columns(cur, "_refstats_new", cols)
    cur.execute(
        sql.SQL(
            "UPDATE galrefstats r SET {}, ref_outlier = n.outlier <> 0, updated_at = now()"
            " FROM _refstats_new n WHERE r.refsource_id = n.refsource_id"
            " AND r.refsource_id = ANY(%s::bigint[])"  # index lookups, not a scan of the table
        ).format(
            sql.SQL(", ").join(
                sql.SQL("{} = n.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in types
            )
        ),  # fmt: skip
        [np.asarray(ids, np.int64).tolist()],
    )


def update_for_image(
    cur: psycopg.Cursor,
    galimage_id: int,
    reference_image: int,
    reference: Table,
    ref_rows: np.ndarray,
    mag: np.ndarray,
    magerr: np.ndarray,
    detected: np.ndarray,
    significance: np.ndarray,
    *,
    config: RefOutlierConfig = RefOutlierConfig(),
) -> int:
    """Add one stored search image's forced points to ``galrefstats`` (caller's transaction).

    Parameters
    ----------
    cur : psycopg.Cursor
        In the transaction that wrote the image's ``galsources`` rows.
    galimage_id : int
        The search image (its exposure's MJD orders the points in time).
    reference_image : int
        The reference image it was forced at.
    reference : astropy.table.Table
        The reference catalogue it was forced at (``id, ra, dec, mag, magerr``, as
        :func:`photdb.survey.store.fetch_reference_table` gives it).
    ref_rows : numpy.ndarray of int
        Row in ``reference`` of each stored point.
    mag, magerr, detected, significance : numpy.ndarray
        The stored points' magnitude and error, whether each is a variable detection
        (a ``galvarobjs`` row) and its significance.
    config : RefOutlierConfig
        When a source is flagged as a reference outlier.

    Returns
    -------
    int
        Reference sources updated.
    """
    rows = np.asarray(ref_rows, np.int64)
    if rows.size == 0:
        return 0
    refimg = int(reference_image)
    t, band = cur.execute(
        "SELECT e.mjd, e.filter FROM galimages i"
        " JOIN galexposures e ON e.id = i.galexposure_id WHERE i.id = %s",
        [galimage_id],
    ).fetchone()
    ids = np.asarray(reference["id"], np.int64)[rows]
    order = np.argsort(ids, kind="stable")
    ids, rows = ids[order], rows[order]
    if np.any(ids[1:] == ids[:-1]):
        raise ValueError(f"image {galimage_id}: a reference source is measured twice")
    # the stored (float4) values, so that a rebuild from galsources gives the same sums
    m, e = _f4(np.asarray(mag)[order]), _f4(np.asarray(magerr)[order])
    det = np.asarray(detected, bool)[order]
    sig = _f4(np.asarray(significance)[order])
    cur.execute(
        "CREATE TEMP TABLE IF NOT EXISTS _refstats_points (refsource_id int8, ra float8,"
        " dec float8, ref_mag float8, ref_magerr float8) ON COMMIT DELETE ROWS"
    )
    cur.execute("DELETE FROM _refstats_points")
    copy_columns(cur, "_refstats_points", [
        Column("refsource_id", "int8", ids),
        *(Column(c, "float8", np.asarray(reference[r], float)[rows])
          for c, r in (("ra", "ra"), ("dec", "dec"), ("ref_mag", "mag"),
                       ("ref_magerr", "magerr"))),
    ])  # fmt: skip
    cur.execute(
        "INSERT INTO galrefstats (refsource_id, reference_image, filter, ra, dec, ref_mag,"
        " ref_magerr) SELECT refsource_id, %s, %s, ra, dec, ref_mag, ref_magerr"
        " FROM _refstats_points ORDER BY refsource_id ON CONFLICT (refsource_id) DO NOTHING",
        [refimg, band],
    )
    state = cur.execute(
        sql.SQL(
            "SELECT r.refsource_id, r.ref_mag, r.ref_magerr, {} FROM galrefstats r"
            " WHERE r.refsource_id = ANY(%s::bigint[]) ORDER BY r.refsource_id FOR UPDATE"
        ).format(sql.SQL(", ").join(sql.Identifier(c) for c in _SUM_COLUMNS.values())),
        [ids.tolist()],
        binary=True,
    ).fetchall()
    arr = np.array(state, dtype=float).reshape(-1, 3 + len(SUM_FIELDS))
    have = np.isin(ids, arr[:, 0].astype(np.int64))
    ids, m, e, det, sig = ids[have], m[have], e[have], det[have], sig[have]
    sums = _sums_from_rows(arr[:, 3:])
    ref_mag, ref_err = _f4(arr[:, 1]), _f4(arr[:, 2])
    d = m - deviation_base(ref_mag)
    tt, img = np.full(ids.size, float(t)), np.full(ids.size, int(galimage_id), np.int64)
    counted = np.isfinite(d) & np.isfinite(e) & (e > 0)
    inside = needs_neighbours(sums, tt, img, counted)
    before = after = None
    if inside.any():
        before = _neighbours(cur, ids, ref_mag, inside, float(t), galimage_id, later=False)
        after = _neighbours(cur, ids, ref_mag, inside, float(t), galimage_id, later=True)
    new = add_points(sums, tt, img, d, e, counted=counted, detected=det, significance=sig,
                     before=before, after=after)  # fmt: skip
    _write_rows(cur, ids, new, finalize(new, ref_mag, ref_err, config=config))
    return int(ids.size)


def _neighbours(cur, ids, ref_mag, inside, t, galimage_id, *, later: bool):
    """(d, e) of the stored point just before (or after) ``(t, galimage_id)`` per source."""
    op, direction = (">", "ASC") if later else ("<", "DESC")
    rows = cur.execute(
        sql.SQL(
            "SELECT DISTINCT ON (s.ref_id) s.ref_id, s.mag, s.magerr FROM galsources s"
            " JOIN galimages i ON i.id = s.galimage_id"
            " JOIN galexposures e ON e.id = i.galexposure_id"
            " WHERE s.ref_id = ANY(%s) AND s.galimage_id <> %s AND "
            + _COUNTED
            + " AND (e.mjd, s.galimage_id) {} (%s, %s)"
            " ORDER BY s.ref_id, e.mjd {}, s.galimage_id {}"
        ).format(sql.SQL(op), sql.SQL(direction), sql.SQL(direction)),
        [[int(i) for i in ids[inside]], galimage_id, t, galimage_id],
    ).fetchall()
    d, e = np.full(ids.size, np.nan), np.full(ids.size, np.nan)
    if rows:
        got = np.array(rows, dtype=float)
        pos = np.searchsorted(ids, got[:, 0].astype(np.int64))
        d[pos], e[pos] = _f4(got[:, 1]) - deviation_base(ref_mag[pos]), _f4(got[:, 2])
    return d, e


_POINTS = """
SELECT s.ref_id, e.mjd, s.galimage_id, s.mag, s.magerr, v.id IS NOT NULL, v.significance
FROM galsources s
JOIN galimages i ON i.id = s.galimage_id
JOIN galexposures e ON e.id = i.galexposure_id
LEFT JOIN galvarobjs v ON v.galsource_id = s.id
WHERE s.ref_id BETWEEN %(lo)s AND %(hi)s
"""

_REFS = """
SELECT r.id, r.ra, r.dec, r.mag, r.magerr FROM galsources r
WHERE r.galimage_id = %(img)s AND r.ref_id IS NULL AND r.id BETWEEN %(lo)s AND %(hi)s
ORDER BY r.id
"""


def rebuild(conn: psycopg.Connection, *, config: RefOutlierConfig = RefOutlierConfig()) -> int:
    """Recompute ``galrefstats`` from ``galsources`` (one transaction); rows written.

    Writers that store images meanwhile wait for it (the table is locked against
    other writers, not readers) and then add their points to the rebuilt rows.
    Reads each reference catalogue's forced points by ``ref_id`` range (its index),
    one reference image at a time.
    """
    total = 0
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("LOCK TABLE galrefstats IN SHARE ROW EXCLUSIVE MODE")
        cur.execute("DELETE FROM galrefstats")
        refimgs = cur.execute(
            "SELECT i.id, e.filter, min(r.id), max(r.id) FROM galimages i"
            " JOIN galexposures e ON e.id = i.galexposure_id"
            " JOIN galsources r ON r.galimage_id = i.id AND r.ref_id IS NULL"
            " WHERE i.id IN (SELECT DISTINCT reference FROM galimages WHERE reference IS NOT NULL)"
            " GROUP BY i.id, e.filter ORDER BY i.id"
        ).fetchall()
        for img, band, lo, hi in refimgs:
            pts = np.array(cur.execute(_POINTS, {"lo": lo, "hi": hi}).fetchall(),
                           dtype=float).reshape(-1, 7)  # fmt: skip
            if len(pts) == 0:
                continue
            refs = np.array(cur.execute(_REFS, {"img": img, "lo": lo, "hi": hi}).fetchall(),
                            dtype=float).reshape(-1, 5)  # fmt: skip
            rid = refs[:, 0].astype(np.int64)
            pid = pts[:, 0].astype(np.int64)
            pos = np.searchsorted(rid, pid)
            ok = (pos < rid.size) & (rid[np.minimum(pos, rid.size - 1)] == pid)
            pts, pos = pts[ok], pos[ok]
            for k in (3, 4, 6):
                pts[:, k] = _f4(pts[:, k])
            refs[:, 3:5] = _f4(refs[:, 3:5])
            d = pts[:, 3] - deviation_base(refs[pos, 3])
            ids, sums = sums_from_points(pts[:, 0], pts[:, 1], pts[:, 2], d, pts[:, 4],
                                         pts[:, 5] > 0, pts[:, 6])  # fmt: skip
            at = np.searchsorted(rid, ids)
            _insert_rows(cur, img, band, refs[at], ids, sums, config)
            total += ids.size
    return total


def _insert_rows(cur, img, band, refs, ids, sums, config) -> None:
    stats = finalize(sums, refs[:, 3], refs[:, 4], config=config)
    copy_columns(cur, "galrefstats", [
        Column("refsource_id", "int8", ids),
        Column("reference_image", "int4", np.full(ids.size, img, np.int64)),
        Column("filter", "text", np.array([band] * ids.size, dtype=object)),
        Column("ra", "float8", refs[:, 1]), Column("dec", "float8", refs[:, 2]),
        Column("ref_mag", "float8", refs[:, 3]), Column("ref_magerr", "float8", refs[:, 4]),
    ])  # fmt: skip
    _write_rows(cur, ids, sums, stats)
