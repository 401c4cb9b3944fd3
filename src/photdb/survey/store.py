"""SQL of the crowded-field pipeline: catalogues in, audit columns, queries out.

Writers take a connection and run inside the caller's transaction (the
orchestrator, :mod:`photdb.survey.process`, makes one transaction per image).
Readers return astropy Tables. No algorithm lives here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import psycopg
from astropy.table import Table
from psycopg import sql
from psycopg.types.json import Jsonb

from photdb.db.copy import Column, copy_columns, sky_order

__all__ = [
    "GALSOURCE_COLUMNS",
    "allocate_source_ids",
    "cross_filter_matches",
    "fetch_reference_table",
    "insert_provenance",
    "jsonable",
    "lightcurve_by_cone",
    "lightcurve_by_refsource",
    "mark_failed",
    "repeat_counts",
    "update_image",
    "variable_candidates",
    "write_sources",
    "write_variables",
]

#: galsources columns written by COPY, with their PostgreSQL types.
GALSOURCE_COLUMNS = {
    "id": "int8",
    "galimage_id": "int4",
    "ra": "float8",
    "dec": "float8",
    "mag": "float4",
    "magerr": "float4",
    "magerr_raw": "float4",
    "flux": "float4",
    "dflux": "float4",
    "x": "float4",
    "y": "float4",
    "ref_id": "int8",
    "qf": "float4",
    "rchi2": "float4",
    "fracflux": "float4",
    "flags": "int4",
}

#: galimages columns the pipeline fills (anything else is refused by update_image).
IMAGE_FIELDS = frozenset(
    {
        "status", "failure", "reference", "processed_at", "provenance_id", "code_version",
        "zp", "zp_scatter", "cheb_coeffs", "chi2nu", "error_factor", "astrom_rms_arcsec",
        "astrom_nmatch", "seeing_fwhm_arcsec", "sky_level", "n_detected", "n_forced",
        "n_saved", "n_variables", "wcs_header", "details",
    }
)  # fmt: skip


def jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays into Python, and NaN/inf into None (jsonb refuses them)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def allocate_source_ids(cur: psycopg.Cursor, n: int) -> np.ndarray:
    """Reserve ``n`` galsources ids from the sequence (safe with concurrent writers)."""
    if n <= 0:
        return np.zeros(0, np.int64)
    row = cur.execute(
        "SELECT array_agg(nextval('galsources_id_seq')) FROM generate_series(1, %s)", [n]
    ).fetchone()
    return np.asarray(row[0], dtype=np.int64)


def _col(table: Table, name: str, default: float = np.nan) -> np.ndarray:
    if name in table.colnames:
        return np.asarray(table[name].filled(np.nan) if hasattr(table[name], "filled")
                          else table[name])  # fmt: skip
    return np.full(len(table), default)


def write_sources(
    cur: psycopg.Cursor,
    galimage_id: int,
    catalog: Table,
    *,
    ref_ids: np.ndarray | None = None,
) -> np.ndarray:
    """COPY a catalogue into galsources; return the new ids in the catalogue's row order.

    Rows are sent in sky (Morton) order, see :func:`photdb.db.copy.sky_order`.
    ``ref_ids`` links forced measurements to their reference source (None: this
    is a reference catalogue, ``ref_id`` NULL). ``magerr_raw`` defaults to
    ``magerr`` when the catalogue has none.
    """
    n = len(catalog)
    ids = allocate_source_ids(cur, n)
    if n == 0:
        return ids
    order = sky_order(_col(catalog, "ra"), _col(catalog, "dec"))
    magerr = _col(catalog, "magerr")
    raw = _col(catalog, "magerr_raw") if "magerr_raw" in catalog.colnames else magerr
    flags = _col(catalog, "flags", 0).astype(np.int64)
    values = {
        "id": ids,
        "galimage_id": np.full(n, galimage_id, np.int64),
        "ra": _col(catalog, "ra"),
        "dec": _col(catalog, "dec"),
        "mag": _col(catalog, "mag"),
        "magerr": magerr,
        "magerr_raw": raw,
        "flux": _col(catalog, "flux"),
        "dflux": _col(catalog, "dflux"),
        "x": _col(catalog, "x"),
        "y": _col(catalog, "y"),
        "ref_id": np.zeros(n, np.int64) if ref_ids is None else np.asarray(ref_ids, np.int64),
        "qf": _col(catalog, "qf"),
        "rchi2": _col(catalog, "rchi2"),
        "fracflux": _col(catalog, "fracflux"),
        "flags": flags,
    }
    cols = [
        Column(name, t, np.asarray(values[name])[order],
               np.ones(n, bool) if name == "ref_id" and ref_ids is None else None)
        for name, t in GALSOURCE_COLUMNS.items()
    ]  # fmt: skip
    copy_columns(cur, "galsources", cols)
    return ids


def write_variables(
    cur: psycopg.Cursor,
    galimage_id: int,
    galsource_ids: np.ndarray,
    refsource_ids: np.ndarray,
    dmag: np.ndarray,
    significance: np.ndarray,
) -> int:
    """COPY variable detections into galvarobjs; returns the number of rows."""
    n = len(galsource_ids)
    if n == 0:
        return 0
    copy_columns(
        cur,
        "galvarobjs",
        [
            Column("galsource_id", "int8", np.asarray(galsource_ids, np.int64)),
            Column("refsource_id", "int8", np.asarray(refsource_ids, np.int64)),
            Column("galimage_id", "int4", np.full(n, galimage_id, np.int64)),
            Column("dmag", "float4", np.asarray(dmag, float)),
            Column("significance", "float4", np.asarray(significance, float)),
        ],
    )
    return n


def insert_provenance(
    cur: psycopg.Cursor, provenance_id: str, settings: Mapping[str, Any], code_version: str
) -> None:
    """Record a settings hash once (idempotent)."""
    cur.execute(
        "INSERT INTO galprovenance (id, code_version, settings) VALUES (%s, %s, %s)"
        " ON CONFLICT (id) DO NOTHING",
        [provenance_id, code_version, Jsonb(jsonable(dict(settings)))],
    )


def update_image(cur: psycopg.Cursor, galimage_id: int, fields: Mapping[str, Any]) -> None:
    """UPDATE the pipeline columns of one galimages row (JSON columns converted)."""
    unknown = set(fields) - IMAGE_FIELDS
    if unknown:
        raise ValueError(f"not pipeline columns of galimages: {sorted(unknown)}")
    values = []
    for k, v in fields.items():
        if k in ("details", "cheb_coeffs") and v is not None:
            v = Jsonb(jsonable(v))
        elif isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        values.append(v)
    stmt = sql.SQL("UPDATE galimages SET {} WHERE id = %s").format(
        sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in fields)
    )
    cur.execute(stmt, [*values, galimage_id])


def mark_failed(conn: psycopg.Connection, galimage_id: int, reason: str) -> None:
    """Mark an image failed with a one-line reason, in its own transaction."""
    line = " ".join(str(reason).split())[:500] or "unknown error"
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "UPDATE galimages SET status = 'failed', failure = %s, processed_at = now()"
            " WHERE id = %s",
            [line, galimage_id],
        )


def fetch_reference_table(conn: psycopg.Connection, galimage_id: int) -> Table:
    """The reference catalogue of an image (ref_id NULL rows).

    Columns ``id, ra, dec, mag, magerr``; ``x, y`` (pixel position on the
    reference image, which tells the pipeline where the reference footprint ends);
    and crowdsource's ``qf``, ``fracflux`` (NaN when not stored) and ``flags`` (0
    when not stored), which the pipeline uses to choose calibration stars, as it
    does with an in-memory reference catalogue.
    """
    rows = conn.execute(
        "SELECT id, ra, dec, mag, magerr, x, y, qf, fracflux, coalesce(flags, 0)"
        " FROM galsources WHERE galimage_id = %s AND ref_id IS NULL ORDER BY id",
        [galimage_id],
    ).fetchall()
    arr = np.array(rows, dtype=float).reshape(-1, 10)
    names = ("ra", "dec", "mag", "magerr", "x", "y", "qf", "fracflux")
    cols = {"id": arr[:, 0].astype(np.int64)}
    cols |= {name: arr[:, k + 1] for k, name in enumerate(names)}
    cols["flags"] = arr[:, 9].astype(np.int64)
    return Table(cols)


# ---------------------------------------------------------------- queries


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

_REFINFO = """
SELECT r.id, r.ra, r.dec, r.mag, r.magerr, e.filter
FROM galsources r JOIN galimages i ON r.galimage_id = i.id
JOIN galexposures e ON i.galexposure_id = e.id
WHERE r.id = ANY(%s)
"""

_FORCED = """
SELECT s.ref_id, s.mag, s.magerr FROM galsources s
JOIN galimages i ON s.galimage_id = i.id JOIN galexposures e ON i.galexposure_id = e.id
WHERE s.ref_id = ANY(%s) ORDER BY s.ref_id, e.mjd
"""


def variable_candidates(
    conn: psycopg.Connection,
    *,
    filter: str | None = None,
    min_repeats: int = 2,
    limit: int | None = 50,
) -> Table:
    """Variable candidates with their repeat counts, worst first.

    Ranked by the number of variable detections, then by χ²/ν of *all* forced
    measurements of the source about their weighted mean (the light curve, not
    only the 15σ points), then by the largest significance.

    Returns
    -------
    astropy.table.Table
        ``refsource_id, filter, ra, dec, ref_mag, ndet, n_epochs`` (forced points),
        ``chi2nu, amplitude, max_significance, epochs`` (MJDs of the detections,
        comma-separated) and ``dmag_median``.
    """
    from photdb.variability import rank_variables

    rows = conn.execute(_CANDIDATES, {"filter": filter, "min": int(min_repeats)}).fetchall()
    names = ["refsource_id", "filter", "ra", "dec", "ref_mag", "ndet", "n_epochs", "chi2nu",
             "amplitude", "max_significance", "epochs", "dmag_median"]  # fmt: skip
    if not rows:
        return Table(
            [np.zeros(0, t) for t in (np.int64, "U16", float, float, float, np.int64, np.int64,
                                     float, float, float, "U200", float)],
            names=names,
        )  # fmt: skip
    ids = [r[0] for r in rows]
    info = {r[0]: r[1:] for r in conn.execute(_REFINFO, [ids]).fetchall()}
    forced = conn.execute(_FORCED, [ids]).fetchall()
    stats = {}
    if forced:
        f = np.array(forced, dtype=float)
        ranked = rank_variables(f[:, 0].astype(np.int64), f[:, 1], f[:, 2])
        stats = {
            int(i): (int(n), c, a)
            for i, n, c, a in zip(ranked["id"], ranked["n"], ranked["chi2nu"], ranked["amplitude"],
                                  strict=True)
        }  # fmt: skip
    out = []
    for rid, ndet, max_sig, epochs, dmags in rows:
        ra, dec, mag, _magerr, band = info.get(rid, (np.nan, np.nan, np.nan, np.nan, ""))
        n, chi2nu, amp = stats.get(rid, (0, np.nan, np.nan))
        dm = np.array([np.nan if d is None else d for d in dmags], float)
        out.append((rid, band or "", ra, dec, np.nan if mag is None else mag, ndet, n,
                    chi2nu, amp, np.nan if max_sig is None else max_sig,
                    ",".join(f"{m:.2f}" for m in epochs),
                    float(np.nanmedian(dm)) if np.isfinite(dm).any() else np.nan))  # fmt: skip
    out.sort(key=lambda r: (-r[5], -np.nan_to_num(r[7], nan=-1.0), -r[9], r[0]))
    if limit is not None:
        out = out[: int(limit)]
    return Table(rows=out, names=names)


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
    if len(candidates) == 0:
        return Table([np.zeros(0, t) for t in (np.int64, "U16", np.int64, "U16", float,
                                               np.int64)], names=names)  # fmt: skip
    rows = conn.execute(
        """
        SELECT a.refsource_id, a.filter, b.id, e.filter,
               q3c_dist(a.ra, a.dec, b.ra, b.dec) * 3600.0,
               (SELECT COUNT(*) FROM galvarobjs w WHERE w.refsource_id = b.id)
        FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::float8[])
             AS a(refsource_id, filter, ra, dec)
        JOIN galsources b ON q3c_join(a.ra, a.dec, b.ra, b.dec, %s) AND b.ref_id IS NULL
        JOIN galimages i ON b.galimage_id = i.id
        JOIN galexposures e ON i.galexposure_id = e.id
        WHERE e.filter IS DISTINCT FROM a.filter
        ORDER BY a.refsource_id, e.filter, 5
        """,
        [
            [int(v) for v in candidates["refsource_id"]],
            [str(v) for v in candidates["filter"]],
            [float(v) for v in candidates["ra"]],
            [float(v) for v in candidates["dec"]],
            radius_arcsec / 3600.0,
        ],
    ).fetchall()
    if not rows:
        return cross_filter_matches(conn, candidates[:0], radius_arcsec=radius_arcsec)
    return Table(rows=rows, names=names)


_LC_COLUMNS = ["mjd", "filter", "mag", "magerr", "magerr_raw", "is_reference", "ref_id",
               "galsource_id", "galimage_id", "ra", "dec"]  # fmt: skip

_LC_SELECT = """
SELECT e.mjd, e.filter, s.mag, s.magerr, s.magerr_raw, e.is_reference, s.ref_id,
       s.id, s.galimage_id, s.ra, s.dec
FROM galsources s
JOIN galimages i ON s.galimage_id = i.id
JOIN galexposures e ON i.galexposure_id = e.id
"""


def _lc_table(rows: list[tuple]) -> Table:
    if not rows:
        return Table(
            [np.zeros(0, t) for t in (float, "U16", float, float, float, bool, np.int64,
                                     np.int64, np.int64, float, float)],
            names=_LC_COLUMNS,
        )  # fmt: skip
    t = Table(rows=[tuple(-1 if (v is None and k == "ref_id") else v
                          for k, v in zip(_LC_COLUMNS, r, strict=True)) for r in rows],
              names=_LC_COLUMNS)  # fmt: skip
    t["mjd"].unit = "d"
    for c in ("mag", "magerr", "magerr_raw"):
        t[c].unit = "mag"
    t["ra"].unit = t["dec"].unit = "deg"
    t.meta["time_scale"] = "utc"
    return t


def lightcurve_by_refsource(conn: psycopg.Connection, refsource_id: int) -> Table:
    """Light curve of one reference source: its reference row and every forced measurement.

    Columns ``mjd`` (UTC, mid-exposure), ``filter``, ``mag``, ``magerr`` (calibrated),
    ``magerr_raw``, ``is_reference`` (the exposure is a reference), ``ref_id``
    (-1 on the reference catalogue row), ``galsource_id``, ``galimage_id``, ``ra``,
    ``dec``; ordered by ``mjd``.
    """
    rows = conn.execute(
        sql.SQL("{} WHERE s.id = %(id)s UNION ALL {} WHERE s.ref_id = %(id)s ORDER BY 1").format(
            sql.SQL(_LC_SELECT), sql.SQL(_LC_SELECT)
        ),
        {"id": int(refsource_id)},
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
    millisecond). Same columns as :func:`lightcurve_by_refsource`, ordered by
    filter then mjd. Neighbours closer than the radius are included: in a
    crowded field prefer :func:`lightcurve_by_refsource`.
    """
    stmt = _LC_SELECT + " WHERE q3c_join(%(ra)s, %(dec)s, s.ra, s.dec, %(r)s)"
    if filter is not None:
        stmt += " AND e.filter = %(filter)s"
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


def dump_json(value: Any) -> str:
    """JSON text with NaN as null."""
    return json.dumps(jsonable(value))
