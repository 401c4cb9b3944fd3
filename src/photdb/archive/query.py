"""Read the archive back: objects by name or cone, their uploaded light-curve points.

Light curves come in the one shape of :mod:`photdb.lightcurve`; combining them with
the pipeline's measurements is :func:`photdb.api.get_lightcurve`. Times come from the
MJD (UTC) stored beside every point; JD and ISO are derived with astropy, never in
SQL (the archive document's ``EXTRACT(JULIAN ...)`` is off by half a day unless
written with care, and knows nothing of leap seconds).

Examples
--------
>>> from photdb.db import connect
>>> with connect("readonly") as conn:                       # doctest: +SKIP
...     objs = find_objects(conn, "SS Cyg")
...     near = cone_objects(conn, SkyCoord(325.679, 43.5862, unit="deg"), 6 * u.arcmin)
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path

import astropy.units as u
import numpy as np
import psycopg
from astropy.coordinates import Angle, SkyCoord
from astropy.table import MaskedColumn, Table
from astropy.time import Time

from photdb.errors import PhotdbError
from photdb.lightcurve import lightcurve_table

__all__ = [
    "OBJECT_COLUMNS",
    "QueryError",
    "archive_lightcurve",
    "check_radius",
    "cone_objects",
    "find_objects",
    "parse_coord",
    "parse_radius",
    "write_table",
]

#: Columns of :func:`find_objects` (``ra``, ``dec`` in deg; NaN without a position).
OBJECT_COLUMNS = (
    "id",
    "ra",
    "dec",
    "gaia_name",
    "simbad_name",
    "vsx_name",
    "ucac4_name",
    "apass_name",
    "class",
    "description",
)
#: Default cone around an object for its pipeline measurements, and for a position.
DEFAULT_RADIUS = 1.0 * u.arcsec
_NAME_COLUMNS = ("simbad_name", "vsx_name", "ucac4_name", "apass_name")
_GAIA = re.compile(r"^\s*gaia\s*(?:dr\d|edr3)?\s*(\d{5,20})\s*$", re.IGNORECASE)
_INT32 = 2**31 - 1


class QueryError(PhotdbError):
    """An object, position or radius the archive cannot answer for."""


_OBJ_SELECT = """
SELECT id, degrees(long(coordequ)), degrees(lat(coordequ)), gaia_name, simbad_name, vsx_name,
       ucac4_name, apass_name, class, description
FROM objects
"""


# the archive document's cone search, distance in arcsec (pgSphere works in radians)
_CONE = """
SELECT id, degrees(long(coordequ)), degrees(lat(coordequ)), gaia_name, simbad_name, vsx_name,
       ucac4_name, apass_name, class, description,
       degrees(coordequ <-> spoint(%(ra)s, %(dec)s)) * 3600 AS dist
FROM objects
WHERE coordequ <@ scircle(spoint(%(ra)s, %(dec)s), %(r)s)
ORDER BY dist, id
"""


def _object_table(rows: Sequence[tuple], extra: Sequence[str] = ()) -> Table:
    names = [*OBJECT_COLUMNS, *extra]
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    t = Table()
    for name, values in zip(names, cols, strict=True):
        if name == "id":
            t[name] = np.array(values, dtype=np.int64)
        elif name in ("ra", "dec", *extra):
            t[name] = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
            t[name].unit = u.arcsec if name == "dist_arcsec" else u.deg
        else:
            t[name] = MaskedColumn(
                ["" if v is None else str(v) for v in values],
                dtype=str,
                mask=[v is None for v in values],
            )
    return t


def _like(text: str) -> str:
    """A glob (``*`` any run, ``?`` one character) as an ILIKE pattern; ``%``/``_`` literal."""
    escaped = re.sub(r"([\\%_])", r"\\\1", text)
    return escaped.replace("*", "%").replace("?", "_")


def find_objects(
    conn: psycopg.Connection, name_or_id: str | int, *, pattern: bool | None = None
) -> Table:
    """Objects whose id or any catalogue name is ``name_or_id``.

    Parameters
    ----------
    conn : psycopg.Connection
        Any role.
    name_or_id : str or int
        An ``objects.id``; a Gaia source id, bare or as 'Gaia DR3 <id>'; or a
        SIMBAD, VSX, UCAC4, APASS or AAVSO (AUID) name, compared
        case-insensitively. ``%`` and ``_`` are always literal characters.
    pattern : bool, optional
        True: ``name_or_id`` is a glob, ``*`` any run of characters and ``?``
        one (``'TYC 4568-4*'``). False: never a pattern. None (default): exact
        names first; only when nothing matches exactly and the text holds a
        ``*`` or ``?`` is it taken as a glob (so SIMBAD's 'V* SS Cyg' is found
        as itself).

    Returns
    -------
    astropy.table.Table
        :data:`OBJECT_COLUMNS`, one row per object, ordered by id; empty when
        nothing matches. A bare number matches both an id and a Gaia id.
    """
    text = " ".join(str(name_or_id).split())
    if not text:
        raise QueryError("an empty object name")
    if pattern is not True:
        rows = _exact(conn, text)
        if rows or pattern is False or not ("*" in text or "?" in text):
            return _object_table(rows)
    glob = _like(text)
    clauses = [f"{c} ILIKE %s" for c in (*_NAME_COLUMNS, "gaia_name", "auid")]
    rows = conn.execute(
        _OBJ_SELECT + " WHERE " + " OR ".join(clauses) + " ORDER BY id", [glob] * len(clauses)
    ).fetchall()
    return _object_table(rows)


def _exact(conn: psycopg.Connection, text: str) -> list[tuple]:
    gaia = _GAIA.match(text)
    clauses, params = [], []
    if text.isdigit():
        if int(text) <= _INT32:
            clauses.append("id = %s")
            params.append(int(text))
        clauses.append("gaia_name = %s")
        params.append(text.lstrip("0") or "0")
    elif gaia:
        clauses.append("gaia_name = %s")
        params.append(gaia.group(1))
    clauses += [f"lower({c}) = lower(%s)" for c in (*_NAME_COLUMNS, "auid")]
    params += [text] * (len(_NAME_COLUMNS) + 1)
    return conn.execute(
        _OBJ_SELECT + " WHERE " + " OR ".join(clauses) + " ORDER BY id", params
    ).fetchall()


def _spoint(coord: SkyCoord) -> tuple[float, float]:
    c = coord.icrs
    return float(c.ra.rad), float(c.dec.rad)


def cone_objects(conn: psycopg.Connection, coord: SkyCoord, radius: u.Quantity) -> Table:
    """Objects within ``radius`` of ``coord``, nearest first.

    Uses the archive document's pgSphere cone: ``coordequ <@ scircle(...)``
    (GiST index) ordered by ``coordequ <-> spoint``.

    Parameters
    ----------
    coord : SkyCoord
        Centre (any frame; converted to ICRS).
    radius : Quantity
        Angular radius.

    Returns
    -------
    astropy.table.Table
        :data:`OBJECT_COLUMNS` plus ``dist_arcsec``.

    Examples
    --------
    >>> cone_objects(conn, SkyCoord(325.679, 43.5862, unit="deg"), 0.1 * u.deg)  # doctest: +SKIP
    """
    r = check_radius(radius)
    ra, dec = _spoint(coord)
    rows = conn.execute(_CONE, {"ra": ra, "dec": dec, "r": r}).fetchall()
    return _object_table(rows, extra=("dist_arcsec",))


def check_radius(radius: u.Quantity) -> float:
    try:
        r = u.Quantity(radius).to_value(u.rad)
    except (u.UnitsError, TypeError, ValueError):
        raise QueryError(f"radius {radius} is not an angle") from None
    if not math.isfinite(r):
        raise QueryError(f"radius {radius} is not a finite angle")
    if not 0 <= r <= math.pi / 2:
        raise QueryError(
            f"radius {radius} must be between 0 and 90 deg (a cone is at most a hemisphere)"
        )
    return float(r)


# --------------------------------------------------------------------------- light curves

_ARCHIVE_LC = """
SELECT l.object_id, l.mjd, l.dateobs, p.band, l.magnitude::float8, l.mag_err::float8,
       l.mag_diff::float8, l.mag_diff_err::float8, l.quality, ob.filename, d.progid,
       m.data -> 'comp_stars'
FROM lightcurves l
LEFT JOIN photosys p ON p.id = l.photosys_id
LEFT JOIN observations ob ON ob.id = l.observation_id
LEFT JOIN datasources d ON d.id = l.datasource_id
LEFT JOIN LATERAL (SELECT data FROM metadata_lc_json j WHERE j.lightcurve_id = l.id
                   ORDER BY j.id LIMIT 1) m ON true
WHERE l.object_id = ANY(%s)
ORDER BY l.mjd, l.id
"""
_ARCHIVE_FIELDS = ("object_id", "mjd", "dateobs", "band", "mag", "mag_err", "mag_diff",
                   "mag_diff_err", "quality", "filename", "progid", "comp_stars")  # fmt: skip


def archive_lightcurve(conn: psycopg.Connection, object_ids: Sequence[int]) -> Table:
    """The uploaded points (``lightcurves``) of objects, as a standard light-curve table.

    A :func:`photdb.lightcurve.lightcurve_table` with ``source = 'archive'``, by time;
    ``comp_stars`` joined with commas. A point stored without an MJD gets one from its
    ``dateobs`` with astropy (never in SQL).
    """
    rows = conn.execute(_ARCHIVE_LC, [list(object_ids)]).fetchall()
    cols: dict[str, list] = {name: [r[k] for r in rows] for k, name in enumerate(_ARCHIVE_FIELDS)}
    dateobs = cols.pop("dateobs")
    cols["mjd"] = [
        m if m is not None else Time(d.astimezone(UTC).replace(tzinfo=None), scale="utc").mjd
        for m, d in zip(cols["mjd"], dateobs, strict=True)
    ]
    cols["comp_stars"] = [
        ",".join(str(c) for c in v) if isinstance(v, list) else v for v in cols["comp_stars"]
    ]
    cols["source"] = ["archive"] * len(rows)
    return lightcurve_table(cols)


# --------------------------------------------------------------------------- parsing and output

_RADIUS_SHORT = re.compile(r"""^\s*([-+0-9.eE]+)\s*(["'d]|''|″|′|°)\s*$""")


def parse_radius(text: str | float, *, default_unit: u.UnitBase = u.arcsec) -> u.Quantity:
    """An angular radius from text: '30arcsec', '6 arcmin', '0.1deg', '30"', "6'", '0.1d'.

    A bare number is in ``default_unit``: arcsec, photdb's one unit for bare radii
    (the CLI's ``--radius`` and the web pages alike).
    """
    s = str(text).strip()
    short = _RADIUS_SHORT.match(s)
    try:
        if short:
            unit = {
                '"': u.arcsec,
                "''": u.arcsec,
                "″": u.arcsec,
                "'": u.arcmin,
                "′": u.arcmin,
                "d": u.deg,
                "°": u.deg,
            }[short.group(2)]
            q = float(short.group(1)) * unit
        else:
            try:
                q = float(s) * default_unit
            except ValueError:
                q = u.Quantity(s)
        q = q.to(u.arcsec)
    except (ValueError, TypeError, u.UnitsError):
        raise QueryError(
            f"cannot read radius {text!r}: use e.g. 30arcsec, 6arcmin, 0.1deg, 30\" or 6'"
        ) from None
    if not math.isfinite(q.value):
        raise QueryError(f"radius {text!r} is not a finite angle")
    if q.value < 0:
        raise QueryError(f"radius {text!r} must be a positive angle")
    if q > 90 * u.deg:
        raise QueryError(f"radius {text!r} is over 90 deg: a cone is at most a hemisphere")
    return q


def parse_coord(ra: str | float, dec: str | float) -> SkyCoord:
    """ICRS position from degrees or sexagesimal text.

    RA with ':' or spaces or 'h' is in hours ('17:20:39', '17h20m39s'), a bare
    number in degrees; Dec is always in degrees ('+76:42:40', '76d42m40s', 76.71).
    RA must lie in 0..360 deg (0..24 h) and Dec in -90..+90 deg: nothing is
    wrapped silently; NaN and infinities are refused.
    """
    try:
        rs, ds = str(ra).strip(), str(dec).strip()
        try:
            ra_a = Angle(float(rs), u.deg)
        except ValueError:
            hours = not rs.lower().endswith(("d", "°")) and "d" not in rs.lower()
            ra_a = Angle(rs, unit=u.hourangle if hours else u.deg)
        try:
            dec_a = Angle(float(ds), u.deg)
        except ValueError:
            dec_a = Angle(ds, unit=u.deg)
        ra_deg, dec_deg = float(ra_a.deg), float(dec_a.deg)
        if not (math.isfinite(ra_deg) and math.isfinite(dec_deg)):
            raise QueryError(f"position RA={ra!r} Dec={dec!r} is not finite")
        if not (0 <= ra_deg <= 360 and -90 <= dec_deg <= 90):
            raise QueryError(
                f"position RA={ra!r} Dec={dec!r} is outside RA 0..360 deg (0..24 h), "
                "Dec -90..+90 deg"
            )
        return SkyCoord(ra_a, dec_a, frame="icrs")
    except (ValueError, TypeError, u.UnitsError) as exc:
        reason = " ".join(str(exc).split())
        raise QueryError(f"cannot read position RA={ra!r} Dec={dec!r}: {reason}") from None


#: Output formats of :func:`write_table` and their astropy writer names.
FORMATS = {"csv": "ascii.csv", "ecsv": "ascii.ecsv", "votable": "votable"}


def write_table(table: Table, fmt: str, output: str | Path | None = None) -> str | None:
    """Write ``table`` as CSV, ECSV or VOTable to ``output``, or return the text.

    Object columns (``comp_stars``) are plain strings, so every format reads
    back with :meth:`astropy.table.Table.read`; the ``time`` column (an astropy Time)
    is kept by ECSV only. :func:`photdb.export.export_lightcurve` writes light curves
    with their meta, UCDs, AAVSO and Parquet.
    """
    if fmt not in FORMATS:
        raise QueryError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt != "ecsv" and "time" in table.colnames:  # the Time mixin: mjd/jd/iso carry it
        table = table[[c for c in table.colnames if c != "time"]]
    if output is not None:
        try:
            table.write(output, format=FORMATS[fmt], overwrite=True)
        except OSError as exc:
            raise QueryError(f"cannot write {output}: {exc.strerror or exc}") from None
        return None
    buf = io.BytesIO() if fmt == "votable" else io.StringIO()
    table.write(buf, format=FORMATS[fmt])
    value = buf.getvalue()
    return value.decode() if isinstance(value, bytes) else value
