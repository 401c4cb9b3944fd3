"""The SQL that stores what the pipeline measured, image by image.

* per image: its catalogue (``galsources``, binary COPY in sky order), its variable
  detections (``galvarobjs``), its audit row (:class:`ImageAudit`), the settings
  (``galprovenance``), a failure; the stored reference catalogue it is forced at;
* claiming: an image's status, the lock that keeps it from being stored twice.

Writers take a cursor or connection and run inside the caller's transaction (the
orchestrator, :mod:`photdb.survey.process`, makes one transaction per image). No
algorithm lives here. Exposures, reference sets and planning are in
:mod:`photdb.survey.bookkeeping`; the user-facing reads in :mod:`photdb.survey.queries`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from astropy.table import Table
from psycopg import sql
from psycopg.types.json import Jsonb

from photdb.db.copy import Column, copy_columns, sky_order

__all__ = [
    "GALSOURCE_COLUMNS",
    "ImageAudit",
    "allocate_source_ids",
    "fetch_reference_table",
    "insert_provenance",
    "jsonable",
    "lock_unfinished",
    "mark_failed",
    "update_image",
    "write_reference_members",
    "write_sources",
    "write_variables",
]

#: galsources columns written by COPY (in table order), with their PostgreSQL types.
GALSOURCE_COLUMNS = {
    "id": "int8",
    "ra": "float8",
    "dec": "float8",
    "ref_id": "int8",
    "galimage_id": "int4",
    "mag": "float4",
    "magerr": "float4",
    "magerr_raw": "float4",
    "flux": "float4",
    "dflux": "float4",
    "x": "float4",
    "y": "float4",
    "qf": "float4",
    "rchi2": "float4",
    "fracflux": "float4",
    "flags": "int4",
}


_FLOAT_COLUMNS = tuple(k for k, t in GALSOURCE_COLUMNS.items() if t == "float4")

#: rows encoded per block of a catalogue's COPY: the server inserts one block while
#: the next is encoded (benchmarks/galsources_scale.py).
COPY_BLOCK_ROWS = 16_384


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
    """Reserve ``n`` galsources ids from the sequence (safe with concurrent writers).

    The sequence has a session cache (migration 0009), so one writer's ids are
    usually one contiguous block: the server then sends only its ends, not ``n``
    values; otherwise (a cache block ran out while another writer took the next)
    it sends them all.
    """
    if n <= 0:
        return np.zeros(0, np.int64)
    lo, hi, every = cur.execute(
        "WITH t AS (SELECT nextval('galsources_id_seq') AS v FROM generate_series(1, %s))"
        " SELECT min(v), max(v), CASE WHEN max(v) - min(v) + 1 = count(*) THEN NULL"
        " ELSE array_agg(v ORDER BY v) END FROM t",
        [n],
    ).fetchone()
    if every is None:
        return np.arange(lo, hi + 1, dtype=np.int64)
    return np.asarray(every, dtype=np.int64)


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

    Rows are sent in sky (Morton) order, see :func:`photdb.db.copy.sky_order`, and
    get ascending ids in that order (the primary key is appended to; the heap is
    in id order). ``ref_ids`` links forced measurements to their reference source
    (their ``ra, dec`` must be the reference source's: light curves are found
    through the q3c index, migration 0009); None: this is a reference catalogue,
    ``ref_id`` NULL. ``magerr_raw`` defaults to
    ``magerr`` when the catalogue has none.
    """
    n = len(catalog)
    if n == 0:
        return np.zeros(0, np.int64)
    magerr = _col(catalog, "magerr")
    raw = _col(catalog, "magerr_raw") if "magerr_raw" in catalog.colnames else magerr
    values = {
        "ra": _col(catalog, "ra"),
        "dec": _col(catalog, "dec"),
        "ref_id": np.zeros(n, np.int64) if ref_ids is None else np.asarray(ref_ids, np.int64),
        "galimage_id": np.full(n, galimage_id, np.int64),
        "mag": _col(catalog, "mag"),
        "magerr": magerr,
        "magerr_raw": raw,
        "flux": _col(catalog, "flux"),
        "dflux": _col(catalog, "dflux"),
        "x": _col(catalog, "x"),
        "y": _col(catalog, "y"),
        "qf": _col(catalog, "qf"),
        "rchi2": _col(catalog, "rchi2"),
        "fracflux": _col(catalog, "fracflux"),
        "flags": _col(catalog, "flags", 0).astype(np.int64),
    }
    # Sky order, rows with NULLs (NaN) after the others (the encoder groups rows by
    # NULL pattern): ids then ascend in the order the rows arrive, so the primary key
    # is only ever appended to and its leaves stay full.
    sky = sky_order(values["ra"], values["dec"])
    pattern = np.zeros(n, np.int64)
    for bit, name in enumerate(("ra", "dec", *_FLOAT_COLUMNS)):
        pattern |= (~np.isfinite(values[name])).astype(np.int64) << bit
    order = sky[np.argsort(pattern[sky], kind="stable")]
    ids = np.empty(n, np.int64)
    ids[order] = allocate_source_ids(cur, n)
    values["id"] = ids
    null_ref = np.ones(n, bool) if ref_ids is None else None
    cols = [
        Column(name, t, values[name][order], null_ref if name == "ref_id" else None)
        for name, t in GALSOURCE_COLUMNS.items()
    ]
    copy_columns(cur, "galsources", cols, block_rows=COPY_BLOCK_ROWS)
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


def write_reference_members(
    cur: psycopg.Cursor,
    reference_image: int,
    refsource_ids: np.ndarray,
    member_images: list[int],
    mag: np.ndarray,
    magerr: np.ndarray,
) -> int:
    """COPY each reference image's own magnitude of each source into galrefmembers.

    ``mag``, ``magerr`` are (sources × images), columns in ``member_images`` order
    (the primary first); NaN is stored as NULL. Returns the number of rows.
    """
    ids = np.asarray(refsource_ids, np.int64)
    mag, magerr = np.asarray(mag, float), np.asarray(magerr, float)
    k = len(member_images)
    if ids.size == 0 or k == 0:
        return 0
    copy_columns(cur, "galrefmembers", [
        Column("refsource_id", "int8", np.repeat(ids, k)),
        Column("reference_image", "int4", np.full(ids.size * k, reference_image, np.int64)),
        Column("member_image", "int4", np.tile(np.asarray(member_images, np.int64), ids.size)),
        Column("mag", "float4", mag.reshape(-1)),
        Column("magerr", "float4", magerr.reshape(-1)),
    ])  # fmt: skip
    return ids.size * k


def insert_provenance(
    cur: psycopg.Cursor, provenance_id: str, settings: Mapping[str, Any], code_version: str
) -> None:
    """Record a settings hash once (idempotent)."""
    cur.execute(
        "INSERT INTO galprovenance (id, code_version, settings) VALUES (%s, %s, %s)"
        " ON CONFLICT (id) DO NOTHING",
        [provenance_id, code_version, Jsonb(jsonable(dict(settings)))],
    )


@dataclass(frozen=True)
class ImageAudit:
    """The pipeline's columns of one ``galimages`` row: the audit trail of an image.

    Every field is a column of ``galimages`` (see the 0002 and 0011 migrations); None is
    NULL.
    ``details`` holds the pipeline's statistics (:meth:`ImageStats.to_dict
    <photdb.pipeline.results.ImageStats.to_dict>`) and any extra context as JSON.
    """

    status: str
    processed_at: datetime
    provenance_id: str
    code_version: str
    reference: int | None = None
    failure: str | None = None
    zp: float | None = None
    zp_scatter: float | None = None
    cheb_coeffs: list[list[float]] | None = None
    calib_order: int | None = None
    chi2nu: float | None = None
    error_factor: float | None = None
    astrom_rms_arcsec: float | None = None
    astrom_nmatch: int | None = None
    seeing_fwhm_arcsec: float | None = None
    sky_level: float | None = None
    n_detected: int | None = None
    n_forced: int | None = None
    n_saved: int | None = None
    n_variables: int | None = None
    wcs_header: str | None = None
    details: Mapping[str, Any] | None = None


def _sql_value(name: str, value: Any) -> Any:
    if name in ("details", "cheb_coeffs") and value is not None:
        return Jsonb(jsonable(value))
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # a non-finite statistic is stored as NULL, never as a number
    return value


def update_image(cur: psycopg.Cursor, galimage_id: int, audit: ImageAudit) -> None:
    """Write the audit row of one image (every pipeline column of ``galimages``)."""
    fields = [f.name for f in dataclasses.fields(ImageAudit)]
    stmt = sql.SQL("UPDATE galimages SET {} WHERE id = %s").format(
        sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in fields)
    )
    cur.execute(stmt, [*(_sql_value(k, getattr(audit, k)) for k in fields), galimage_id])


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
    does with an in-memory reference catalogue. ``ref_flux, ref_dflux``: the
    calibrated reference flux of sources added later (:mod:`photdb.survey.newsources`),
    NaN for the others.
    """
    rows = conn.execute(
        "SELECT s.id, s.ra, s.dec, s.mag, s.magerr, s.x, s.y, s.qf, s.fracflux,"
        " coalesce(s.flags, 0), n.ref_flux, n.ref_dflux"
        " FROM galsources s LEFT JOIN galnewsources n ON n.refsource_id = s.id"
        " WHERE s.galimage_id = %s AND s.ref_id IS NULL ORDER BY s.id",
        [galimage_id],
    ).fetchall()
    arr = np.array(rows, dtype=float).reshape(-1, 12)
    names = ("ra", "dec", "mag", "magerr", "x", "y", "qf", "fracflux")
    cols = {"id": arr[:, 0].astype(np.int64)}
    cols |= {name: arr[:, k + 1] for k, name in enumerate(names)}
    cols["flags"] = arr[:, 9].astype(np.int64)
    cols["ref_flux"], cols["ref_dflux"] = arr[:, 10], arr[:, 11]
    return Table(cols)


def image_epoch_mjd(conn: psycopg.Connection, galimage_id: int) -> float | None:
    """Mid-exposure MJD of an image's exposure (``galexposures.mjd``), None if unknown."""
    row = conn.execute(
        "SELECT e.mjd FROM galimages i JOIN galexposures e ON e.id = i.galexposure_id"
        " WHERE i.id = %s",
        [galimage_id],
    ).fetchone()
    return None if row is None else row[0]


# ---------------------------------------------------------------- claiming


def image_status(conn: psycopg.Connection, galimage_id: int) -> str | None:
    """``galimages.status`` of an image (None: no such image)."""
    row = conn.execute("SELECT status FROM galimages WHERE id = %s", [galimage_id]).fetchone()
    return None if row is None else row[0]


def lock_unfinished(cur: psycopg.Cursor, galimage_id: int) -> bool:
    """Lock the image's row for this transaction; False if it is already done."""
    row = cur.execute(
        "SELECT status FROM galimages WHERE id = %s FOR UPDATE", [galimage_id]
    ).fetchone()
    return row is not None and row[0] != "done"
