"""Load light-curve tables into ``lightcurves`` + ``metadata_lc_json``, each point once, fast.

A point is identified by what it is: (object, time, band, data source,
observation), a unique key in the database. Loading the same file again adds
nothing and says so; two loads of the same file at once store every point once
(the loser of a race on the key is retried and finds the points present).

Times may be JD, MJD, ISO strings (UTC unless ``time_scale`` says otherwise),
HJD (UTC), BJD_TDB, or an astropy ``Time`` column (a ``TimeSeries`` ECSV); all
are converted to UTC with astropy, whole arrays at once, and stored as an aware
``dateobs`` and as ``mjd``. Heliocentric and barycentric times are corrected
back to the observer with each object's position (from ``objects``) and the
observatory's location (an ``EarthLocation``; without one, the geocentre, which
is off by at most 21 ms).

Files are streamed (:func:`photdb.archive.tables.iter_chunks`); each chunk is
checked in bulk (:mod:`photdb.archive.lcvalues`: a bad value refuses its row
with one line) and written with one binary COPY, so memory stays flat and 10^6
points take seconds (``benchmarks/load_speed.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
from astropy.coordinates import EarthLocation
from astropy.table import Table

from photdb.archive.lcresolve import Resolver
from photdb.archive.lcvalues import (
    ALIASES,
    TIME_COLUMNS,
    Refusals,
    integers,
    numbers,
    rename_columns,
    texts,
    time_column,
    to_utc,
    utc_times,
)
from photdb.archive.lcwrite import KEY, existing_keys, new_ids, write_metadata
from photdb.archive.obstime import pg_micros
from photdb.archive.tables import iter_chunks, read_table
from photdb.db.copy import Column, copy_columns

__all__ = [
    "META_KEYS",
    "TIME_COLUMNS",
    "LightcurveReport",
    "LoadReport",
    "load_lightcurve_file",
    "load_lightcurves",
    "read_lightcurve_table",
    "to_utc",
]

#: Per-point processing metadata kept in ``metadata_lc_json.data``.
META_KEYS = (
    "comp_stars",
    "num_comp",
    "aver_comp",
    "num_calib",
    "type_calib",
    "detrend",
    "detrend_mag",
    "detrend_mag_err",
    "type_detrend",
    "differential",
    "exp_time",
    "binning",
    "temperature",
    "privileges",
    "check_stars",
    "airmass",
)


@dataclass(frozen=True)
class LightcurveReport:
    """What a light-curve load did.

    Attributes
    ----------
    inserted : int
        New points stored.
    present : int
        Points already in the database (a reload), or earlier in the file.
    duplicates : int
        Rows repeating another row of the same chunk of the file.
    skipped : int
        Rows refused for a bad value (one line each in ``messages``).
    messages : tuple of str
        One line per refused row and per observation file not found.
    notes : tuple of str
        File-level remarks (columns not stored, ...).
    """

    inserted: int = 0
    present: int = 0
    duplicates: int = 0
    skipped: int = 0
    messages: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def updated(self) -> int:  # the CLI's summary line is shared with object loads
        return 0

    @property
    def unchanged(self) -> int:
        return self.present


#: Backwards-compatible name.
LoadReport = LightcurveReport


@dataclass
class _Run:
    """Mutable state of one load (internal)."""

    res: Resolver
    defaults: dict[str, object]
    time_format: str | None
    time_scale: str
    location: EarthLocation | None
    columns: Mapping[str, str] | None
    refused: Refusals = field(default_factory=Refusals)
    messages: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict(inserted=0, present=0, dup=0))
    next_row: int = 1
    checked: bool = False


def read_lightcurve_table(
    path: str | Path, *, format: str | None = None, columns: Mapping[str, str] | None = None
) -> Table:
    """Read a light-curve file whole; columns renamed to canonical lower-case names.

    ``columns`` maps canonical names to the file's (``{"magnitude": "mag_inst_R"}``).
    The time column keeps its kind in its name (``jd``, ``mjd``, ``bjd_tdb``,
    ``hjd`` or ``dateobs`` for ISO strings); see :data:`TIME_COLUMNS`.
    """
    return rename_columns(read_table(Path(path), format), columns)


def _check_columns(table: Table, run: _Run) -> None:
    """File-level checks, once: a magnitude column, a time column; note what is not stored."""
    if not {"magnitude", "mag_diff"} & set(table.colnames):
        accepted = ", ".join(ALIASES["magnitude"] + ALIASES["mag_diff"])
        names = table.meta.get("columns_in_file", table.colnames)
        raise ValueError(
            f"no magnitude column: the file has {', '.join(names)}; accepted names "
            f"are {accepted}; map yours with --column magnitude=NAME (or mag_diff=NAME)"
        )
    time_column(table, run.time_format)
    used = {*ALIASES, *TIME_COLUMNS, *META_KEYS}
    renamed = dict(
        zip(table.colnames, table.meta.get("columns_in_file", table.colnames), strict=False)
    )
    unused = [renamed.get(c, c) for c in table.colnames if c not in used]
    if unused:
        run.notes.append(f"columns not stored: {', '.join(unused)}")


def _chunk(cur: psycopg.Cursor, table: Table, run: _Run) -> None:
    """Check, convert and write one chunk of rows."""
    table = rename_columns(table, run.columns)
    if not run.checked:
        _check_columns(table, run)
        run.checked = True
    n = len(table)
    rows = np.arange(run.next_row, run.next_row + n)
    run.next_row += n
    if n == 0:
        return
    ref = run.refused
    ok = np.ones(n, bool)
    mags = {}
    for name in ("magnitude", "mag_err", "mag_diff", "mag_diff_err"):
        mags[name], fine = numbers(table, name, rows, ref, negative=not name.endswith("err"))
        ok &= fine
    quality, qmissing, fine = integers(table, "quality", rows, ref)
    ok &= fine
    nothing = ok & np.isnan(mags["magnitude"]) & np.isnan(mags["mag_diff"])
    ok &= ref.add(rows, nothing, lambda i: "no magnitude (empty magnitude and mag_diff)")
    obj, fine = run.res.objects(table, rows, ref, run.defaults.get("object"))
    ok &= fine
    band, fine = run.res.bands(table, rows, ref, run.defaults.get("band"))
    ok &= fine
    source, fine = run.res.sources(table, rows, ref, run.defaults.get("datasource"))
    ok &= fine
    obs = run.res.observations(texts(table, "filename"), run.messages)
    tcol, kind = time_column(table, run.time_format)
    coord = None
    if kind in ("bjd", "hjd"):
        coord, ok = run.res.coords(obj, ok, rows, ref)
    times, fine = utc_times(table, tcol, kind, rows, ref, scale=run.time_scale,
                            coord=coord, location=run.location)  # fmt: skip
    ok &= fine
    micros = np.zeros(n, np.int64)
    micros[ok] = pg_micros(times[ok]) if ok.any() else micros[ok]
    mjd = np.asarray(times.mjd, float)
    keys = np.zeros(n, KEY)
    keys["o"], keys["t"], keys["p"], keys["d"] = obj, micros, band, source
    keys["b"] = np.where(obs < 0, -1, obs)
    keep = _new_points(cur, keys, ok, rows, run)
    if not keep.any():
        return
    meta = {k: table[k] for k in META_KEYS if k in table.colnames}
    ids = new_ids(cur, int(keep.sum())) if meta else None
    cols = [
        Column("object_id", "int4", obj[keep]),
        Column("dateobs", "timestamptz", micros[keep]),
        Column("mjd", "float8", mjd[keep]),
        *(Column(k, "numeric4", v[keep]) for k, v in mags.items()),
        Column("quality", "int4", quality[keep], null=qmissing[keep]),
        Column("datasource_id", "int4", source[keep]),
        Column("photosys_id", "int4", band[keep]),
        Column("observation_id", "int4", obs[keep], null=obs[keep] < 0),
    ]
    if ids is not None:
        cols.insert(0, Column("id", "int4", ids))
    copy_columns(cur, "lightcurves", cols)
    run.counts["inserted"] += int(keep.sum())
    if ids is not None:
        write_metadata(cur, ids, {k: v[keep] for k, v in meta.items()})


def _new_points(
    cur: psycopg.Cursor, keys: np.ndarray, ok: np.ndarray, rows: np.ndarray, run: _Run
) -> np.ndarray:
    """Rows to insert: good, not repeated in the chunk, not already in the database."""
    keep = ok.copy()
    idx = np.flatnonzero(ok)
    if idx.size:
        _, first, inverse = np.unique(keys[idx], return_index=True, return_inverse=True)
        dup = idx[first[inverse] != np.arange(idx.size)]
        for i in dup:
            j = idx[first[inverse[np.searchsorted(idx, i)]]]
            run.messages.append(f"row {rows[i]}: the same point as row {rows[j]}; loaded once")
        keep[dup] = False
        run.counts["dup"] += dup.size
    idx = np.flatnonzero(keep)
    if not idx.size:
        return keep
    existing = existing_keys(cur, keys[idx])
    if existing.size:
        there = np.isin(keys[idx], existing)
        keep[idx[there]] = False
        run.counts["present"] += int(there.sum())
    return keep


def _report(run: _Run) -> LightcurveReport:
    c = run.counts
    return LightcurveReport(
        inserted=c["inserted"],
        present=c["present"],
        duplicates=c["dup"],
        skipped=run.refused.rows,
        messages=tuple(run.refused.lines + run.messages),
        notes=tuple(run.notes),
    )


def _load(conn: psycopg.Connection, chunks: Iterable[Table], kw: dict) -> LightcurveReport:
    with conn.transaction(), conn.cursor() as cur:
        run = _Run(res=Resolver(cur, kw.pop("match_radius_arcsec")), **kw)
        for chunk in chunks:
            _chunk(cur, chunk, run)
    return _report(run)


def _with_retries(conn: psycopg.Connection, make_chunks, kw: dict) -> LightcurveReport:
    for attempt in range(5):
        try:
            return _load(conn, make_chunks(), dict(kw))
        except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
            # a concurrent load of the same points committed first: look again
            if attempt == 4:
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def _options(
    datasource, band, object, time_format, time_scale, location, match_radius_arcsec, columns
) -> dict:
    return {
        "defaults": {"datasource": datasource, "band": band, "object": object},
        "time_format": time_format,
        "time_scale": time_scale,
        "location": location,
        "match_radius_arcsec": match_radius_arcsec,
        "columns": columns,
    }


def load_lightcurves(
    conn: psycopg.Connection,
    table: Table,
    *,
    datasource: str | None = None,
    band: str | None = None,
    object: str | int | None = None,
    time_format: str | None = None,
    time_scale: str = "utc",
    location: EarthLocation | None = None,
    match_radius_arcsec: float = 2.0,
    columns: Mapping[str, str] | None = None,
) -> LightcurveReport:
    """Load one light-curve table in one transaction; every point once.

    Parameters
    ----------
    conn : psycopg.Connection
        Writer connection.
    table : astropy.table.Table
        A time column, ``magnitude`` and/or ``mag_diff``, ``mag_err``,
        optional ``mag_diff_err``, ``quality``, ``band``, object (``object_id``,
        ``object`` name or ``ra``/``dec``), ``filename`` (an
        ``observations.filename``), ``progid`` and any of :data:`META_KEYS`
        (names as in :func:`read_lightcurve_table`, or mapped by ``columns``).
    datasource, band, object : optional
        Defaults for columns the table lacks (``progid``, ``band``, object
        name or id). Data sources and photometric bands are created if missing.
    time_format : str, optional
        'jd', 'mjd', 'iso', 'hjd' or 'bjd' (BJD_TDB), overriding the column name.
    time_scale : str
        Scale of JD/MJD/ISO values (default 'utc').
    location : EarthLocation, optional
        The observatory, for HJD/BJD.
    columns : mapping, optional
        Canonical name -> the table's column, e.g. ``{"magnitude": "mag_inst_R"}``.

    Returns
    -------
    LightcurveReport
        Points inserted, already present, repeated, refused (one line each).

    Raises
    ------
    ValueError
        No magnitude or time column (the message lists the accepted names),
        or a mapped column the table lacks; nothing is written.
    """
    kw = _options(datasource, band, object, time_format, time_scale, location,
                  match_radius_arcsec, columns)  # fmt: skip
    return _with_retries(conn, lambda: [table.copy(copy_data=False)], kw)


def load_lightcurve_file(
    conn: psycopg.Connection,
    path: str | Path,
    *,
    format: str | None = None,
    datasource: str | None = None,
    band: str | None = None,
    object: str | int | None = None,
    time_format: str | None = None,
    time_scale: str = "utc",
    location: EarthLocation | None = None,
    match_radius_arcsec: float = 2.0,
    columns: Mapping[str, str] | None = None,
    chunk_rows: int = 200_000,
) -> LightcurveReport:
    """Stream a light-curve file into the archive in one transaction (see :func:`load_lightcurves`).

    CSV and ECSV files are read ``chunk_rows`` rows at a time, so memory does
    not grow with the file.
    """
    kw = _options(datasource, band, object, time_format, time_scale, location,
                  match_radius_arcsec, columns)  # fmt: skip
    return _with_retries(conn, lambda: iter_chunks(path, format=format, rows=chunk_rows), kw)
