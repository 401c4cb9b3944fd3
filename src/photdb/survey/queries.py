"""Reading the pipeline's tables: repeat counts, candidates, light curves, cross matches.

Every function takes a connection (any role) and returns an astropy Table; light
curves come in the one shape of :mod:`photdb.lightcurve`. SQL only, no science:
ranking candidates is :func:`photdb.survey.candidates.variable_candidates`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
from astropy.table import Table
from psycopg import sql

from photdb.lightcurve import lightcurve_table

__all__ = [
    "candidate_detections",
    "cross_filter_matches",
    "forced_points",
    "lightcurve_by_cone",
    "lightcurve_by_refsource",
    "lightcurve_of_star",
    "reference_info",
    "reference_position",
    "repeat_counts",
    "sources_in_cone",
]


def _filter_join(filter: str | None) -> tuple[sql.Composable, list[Any]]:
    if filter is None:
        return sql.SQL(""), []
    return (
        sql.SQL(
            " JOIN galimages i ON v.galimage_id = i.id"
            " JOIN galexposures e ON i.galexposure_id = e.id WHERE e.filter = %s"
        ),
        [filter],
    )


def repeat_counts(conn: psycopg.Connection, *, filter: str | None = None) -> Table:
    """The notebook's first query: objects per number of variable detections.

    Returns a Table ``num`` (detections per reference source) and ``count``
    (reference sources with that many), ``num`` descending.
    """
    join, params = _filter_join(filter)
    stmt = sql.SQL(
        "SELECT num, COUNT(num) AS count FROM (SELECT COUNT(v.id) AS num FROM galvarobjs v{}"
        " GROUP BY v.refsource_id) subq GROUP BY num ORDER BY num DESC"
    ).format(join)
    rows = conn.execute(stmt, params).fetchall()
    arr = np.array(rows, dtype=np.int64).reshape(-1, 2)
    return Table({"num": arr[:, 0], "count": arr[:, 1]})


_CANDIDATES = """
SELECT v.refsource_id, COUNT(v.id) AS ndet, MAX(ABS(v.significance)) AS max_sig,
       array_agg(e.mjd ORDER BY e.mjd) AS epochs,
       array_agg(v.dmag ORDER BY e.mjd) AS dmags
FROM galvarobjs v
JOIN galimages i ON v.galimage_id = i.id
JOIN galexposures e ON i.galexposure_id = e.id
WHERE (%(filter)s::text IS NULL OR e.filter = %(filter)s)
GROUP BY v.refsource_id
HAVING COUNT(v.id) >= %(min)s
"""


def candidate_detections(
    conn: psycopg.Connection, *, filter: str | None = None, min_repeats: int = 2
) -> list[tuple]:
    """Per reference source with at least ``min_repeats`` variable detections:
    ``(refsource_id, ndet, max |significance|, [MJD of each detection], [dmag of each])``."""
    return conn.execute(_CANDIDATES, {"filter": filter, "min": int(min_repeats)}).fetchall()


_REFINFO = """
SELECT r.id, r.ra, r.dec, r.mag, r.magerr, e.filter
FROM galsources r JOIN galimages i ON r.galimage_id = i.id
JOIN galexposures e ON i.galexposure_id = e.id
WHERE r.id = ANY(%s)
"""


def reference_info(conn: psycopg.Connection, ids: list[int]) -> dict[int, tuple]:
    """``{id: (ra, dec, mag, magerr, filter)}`` of reference sources."""
    return {r[0]: r[1:] for r in conn.execute(_REFINFO, [list(ids)]).fetchall()}


#: the forced measurements ``s`` of reference sources ``r``: made at the reference
#: position and stored with it, so one equality lookup in the q3c index (migration 0009)
FORCED_OF_REFERENCE = (
    "galsources s ON q3c_ang2ipix(s.ra, s.dec) = q3c_ang2ipix(r.ra, r.dec) AND s.ref_id = r.id"
)

_FORCED = f"""
SELECT s.ref_id, s.mag, s.magerr FROM galsources r JOIN {FORCED_OF_REFERENCE}
JOIN galimages i ON s.galimage_id = i.id JOIN galexposures e ON i.galexposure_id = e.id
WHERE r.id = ANY(%s) ORDER BY s.ref_id, e.mjd
"""


def forced_points(conn: psycopg.Connection, ids: list[int]) -> np.ndarray:
    """Every forced measurement of the reference sources ``ids``: ``(n, 3)`` array of
    ``ref_id, mag, magerr`` (NaN for NULL), by source then time."""
    rows = conn.execute(_FORCED, [list(ids)]).fetchall()
    return np.array(rows, dtype=float).reshape(-1, 3)


def cross_filter_matches(
    conn: psycopg.Connection, candidates: Table, *, radius_arcsec: float = 0.5
) -> Table:
    """Reference sources of *other* filters within ``radius_arcsec`` of each candidate.

    Uses ``q3c_join`` (index on ``q3c_ang2ipix(ra, dec)``). Returns
    ``refsource_id, filter, match_id, match_filter, sep_arcsec, match_ndet``
    (``match_ndet``: variable detections of the match, 0 if none). Blends that
    deblended differently in the two filters can match zero or several sources.
    """
    names = ["refsource_id", "filter", "match_id", "match_filter", "sep_arcsec", "match_ndet"]
    empty = Table([np.zeros(0, t) for t in (np.int64, "U16", np.int64, "U16", float, np.int64)],
                  names=names)  # fmt: skip
    if len(candidates) == 0:
        return empty
    rows = conn.execute(
        """
        WITH m AS MATERIALIZED (  -- the cones first: see _CONE_SOURCES
            SELECT a.refsource_id, a.filter, b.id, b.galimage_id,
                   q3c_dist(a.ra, a.dec, b.ra, b.dec) * 3600.0 AS sep
            FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::float8[])
                 AS a(refsource_id, filter, ra, dec)
            JOIN galsources b ON q3c_join(a.ra, a.dec, b.ra, b.dec, %s) AND b.ref_id IS NULL
        )
        SELECT m.refsource_id, m.filter, m.id, e.filter, m.sep,
               (SELECT COUNT(*) FROM galvarobjs w WHERE w.refsource_id = m.id)
        FROM m
        JOIN galimages i ON m.galimage_id = i.id
        JOIN galexposures e ON i.galexposure_id = e.id
        WHERE e.filter IS DISTINCT FROM m.filter
        ORDER BY m.refsource_id, e.filter, 5
        """,
        [
            [int(v) for v in candidates["refsource_id"]],
            [str(v) for v in candidates["filter"]],
            [float(v) for v in candidates["ra"]],
            [float(v) for v in candidates["dec"]],
            radius_arcsec / 3600.0,
        ],
    ).fetchall()
    return Table(rows=rows, names=names) if rows else empty


_LC_FIELDS = ("mjd", "band", "mag", "mag_err", "mag_err_raw", "is_reference", "ref_id",
              "galsource_id", "galimage_id", "ra", "dec", "filename", "reference_image",
              "zero_point", "error_factor", "flags")  # fmt: skip

_LC_COLUMNS = """
SELECT e.mjd, e.filter, s.mag, s.magerr, s.magerr_raw, e.is_reference, s.ref_id,
       s.id, s.galimage_id, s.ra, s.dec, o.filename, i.reference, i.zp, i.error_factor, s.flags
"""
_LC_JOINS = """
JOIN galimages i ON s.galimage_id = i.id
JOIN galexposures e ON i.galexposure_id = e.id
JOIN observations o ON o.id = i.id
"""
_LC_SELECT = _LC_COLUMNS + "FROM galsources s" + _LC_JOINS


def _lc_table(rows: list[tuple]) -> Table:
    cols: dict[str, list] = {name: [r[k] for r in rows] for k, name in enumerate(_LC_FIELDS)}
    cols["source"] = ["pipeline"] * len(rows)
    return lightcurve_table(cols)


def lightcurve_by_refsource(conn: psycopg.Connection, refsource_id: int | list[int]) -> Table:
    """Light curve of one reference source (or several): the reference row and every
    forced measurement.

    A :func:`photdb.lightcurve.lightcurve_table`, ordered by ``mjd``; the reference
    catalogue row has ``ref_id`` masked.
    """
    ids = [int(i) for i in refsource_id] if isinstance(refsource_id, list) else [
        int(refsource_id)]  # fmt: skip
    rows = conn.execute(
        sql.SQL(
            "{} WHERE s.id = ANY(%(ids)s) UNION ALL {} FROM galsources r JOIN {} {}"
            " WHERE r.id = ANY(%(ids)s) ORDER BY 1"
        ).format(
            sql.SQL(_LC_SELECT),
            sql.SQL(_LC_COLUMNS),
            sql.SQL(FORCED_OF_REFERENCE),
            sql.SQL(_LC_JOINS),
        ),
        {"ids": ids},
    ).fetchall()
    return _lc_table(rows)


def lightcurve_by_cone(
    conn: psycopg.Connection,
    ra: float,
    dec: float,
    radius_arcsec: float = 0.5,
    *,
    filter: str | None = None,
) -> Table:
    """Every galsources row within ``radius_arcsec`` of (ra, dec) deg, all filters.

    The notebook's cone query, with ``q3c_join`` (plans in well under a
    millisecond). A :func:`photdb.lightcurve.lightcurve_table` ordered by band
    then mjd. Neighbours closer than the radius are included: in a crowded field
    prefer :func:`lightcurve_by_refsource`.
    """
    stmt = (
        "WITH s AS MATERIALIZED (SELECT * FROM galsources"
        " WHERE q3c_join(%(ra)s, %(dec)s, ra, dec, %(r)s))" + _LC_COLUMNS + "FROM s" + _LC_JOINS
    )
    if filter is not None:
        stmt += " WHERE e.filter = %(filter)s"
    stmt += " ORDER BY e.filter, e.mjd"
    rows = conn.execute(
        stmt,
        {"ra": float(ra), "dec": float(dec), "r": radius_arcsec / 3600.0, "filter": filter},
    ).fetchall()
    return _lc_table(rows)


def reference_position(conn: psycopg.Connection, refsource_id: int) -> tuple[float, float]:
    """(ra, dec) of a galsources row, deg (the notebook's Q4)."""
    row = conn.execute("SELECT ra, dec FROM galsources WHERE id = %s", [refsource_id]).fetchone()
    if row is None:
        raise KeyError(refsource_id)
    return float(row[0]), float(row[1])


# The cone is a MATERIALIZED CTE: q3c's selectivity estimate is 1 row, so a plain join
# put galimages outside a loop over the cone's rows (a 1' cone at 2e7 rows: 160 ms; with
# the CTE each row is joined once, 14 ms; benchmarks/galsources_scale.py).
_CONE_SOURCES = """
WITH s AS MATERIALIZED (
    SELECT id, ra, dec, mag, magerr, ref_id, galimage_id, flags,
           q3c_dist(%(ra)s, %(dec)s, ra, dec) * 3600.0 AS dist
    FROM galsources WHERE q3c_join(%(ra)s, %(dec)s, ra, dec, %(r)s)
)
SELECT s.id, s.ra, s.dec, s.mag, s.magerr, e.filter, e.mjd, e.is_reference, s.ref_id,
       s.galimage_id, s.flags, s.dist
FROM s
JOIN galimages i ON s.galimage_id = i.id
JOIN galexposures e ON i.galexposure_id = e.id
ORDER BY s.dist, s.id
LIMIT %(limit)s
"""
SOURCE_COLUMNS = ("id", "ra", "dec", "mag", "magerr", "filter", "mjd", "is_reference", "ref_id",
                  "galimage_id", "flags", "dist_arcsec")  # fmt: skip


def sources_in_cone(
    conn: psycopg.Connection, ra: float, dec: float, radius_arcsec: float, *, limit: int = 10_000
) -> Table:
    """Pipeline measurements (``galsources``) within ``radius_arcsec`` of (ra, dec) deg,
    nearest first, at most ``limit``: :data:`SOURCE_COLUMNS` (NaN/-1 for NULL)."""
    # binary results: ~1.5x faster to fetch for a 1' cone's thousands of rows
    params = {"ra": float(ra), "dec": float(dec), "r": radius_arcsec / 3600.0, "limit": int(limit)}
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(_CONE_SOURCES, params).fetchall()
    types = (np.int64, float, float, float, float, str, float, bool, np.int64, np.int64,
             np.int64, float)  # fmt: skip
    nulls = {np.int64: -1, float: np.nan, str: "", bool: False}
    cols = {}
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(SOURCE_COLUMNS)
    for name, typ, values in zip(SOURCE_COLUMNS, types, columns, strict=True):
        if None in values:
            values = [nulls[typ] if v is None else v for v in values]
        cols[name] = np.array(values, dtype=typ if typ is not str else "U16")
    t = Table(cols)
    for name, unit in (("ra", "deg"), ("dec", "deg"), ("mag", "mag"), ("magerr", "mag"),
                       ("mjd", "d"), ("dist_arcsec", "arcsec")):  # fmt: skip
        t[name].unit = unit
    return t


def lightcurve_of_star(
    conn: psycopg.Connection, refsource_id: int, *, cross_radius_arcsec: float = 0.5
) -> Table:
    """A reference source's light curve in every filter: its own forced measurements and
    those of the nearest reference source of each other filter within
    ``cross_radius_arcsec``.

    A :func:`photdb.lightcurve.lightcurve_table` by time; ``meta`` has ``ra``, ``dec``
    (deg, of the reference source) and ``refsource_ids`` (the one asked for first).

    Raises
    ------
    KeyError
        No such galsources row, or it is a forced measurement (``ref_id`` set).
    """
    row = conn.execute(
        "SELECT s.ra, s.dec, s.ref_id, e.filter FROM galsources s"
        " JOIN galimages i ON i.id = s.galimage_id JOIN galexposures e ON e.id = i.galexposure_id"
        " WHERE s.id = %s",
        [int(refsource_id)],
    ).fetchone()
    if row is None or row[2] is not None:
        raise KeyError(refsource_id)
    ra, dec, _, band = row
    others = conn.execute(
        """
        WITH b AS MATERIALIZED (  -- the cone first: see _CONE_SOURCES
            SELECT id, ra, dec, galimage_id FROM galsources
            WHERE q3c_join(%(ra)s, %(dec)s, ra, dec, %(r)s) AND ref_id IS NULL
        )
        SELECT DISTINCT ON (e.filter) b.id FROM b
        JOIN galimages i ON b.galimage_id = i.id JOIN galexposures e ON i.galexposure_id = e.id
        WHERE e.filter IS DISTINCT FROM %(band)s
        ORDER BY e.filter, q3c_dist(%(ra)s, %(dec)s, b.ra, b.dec), b.id
        """,
        {"ra": ra, "dec": dec, "r": cross_radius_arcsec / 3600.0, "band": band},
    ).fetchall()
    ids = [int(refsource_id), *(int(r[0]) for r in others)]
    table = lightcurve_by_refsource(conn, ids)
    table.meta.update(ra=float(ra), dec=float(dec), refsource_ids=ids)
    return table
