"""Read the archive back: objects by name or cone, light curves from both halves of photdb.

A light curve combines the archive's ``lightcurves`` points (uploaded
photometry, with their ``metadata_lc_json``) and the pipeline's ``galsources``
measurements within a small cone around the object. Times come from the MJD
(UTC) stored beside every point; JD and ISO are derived with astropy, never in
SQL (the archive document's ``EXTRACT(JULIAN ...)`` is off by half a day unless
written with care, and knows nothing of leap seconds).

Examples
--------
>>> from photdb.db import connect
>>> with connect("readonly") as conn:                       # doctest: +SKIP
...     lc = get_lightcurve(conn, object="SS Cyg")
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

__all__ = [
    "LC_COLUMNS",
    "OBJECT_COLUMNS",
    "QueryError",
    "cone_objects",
    "find_objects",
    "get_lightcurve",
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
#: Columns of :func:`get_lightcurve`, in order.
LC_COLUMNS = (
    "source",
    "object_id",
    "mjd",
    "jd",
    "iso",
    "band",
    "mag",
    "mag_err",
    "mag_diff",
    "mag_diff_err",
    "quality",
    "filename",
    "progid",
    "comp_stars",
    "is_reference",
    "galsource_id",
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
    r = _radius_rad(radius)
    ra, dec = _spoint(coord)
    rows = conn.execute(_CONE, {"ra": ra, "dec": dec, "r": r}).fetchall()
    return _object_table(rows, extra=("dist_arcsec",))


def _radius_rad(radius: u.Quantity) -> float:
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
ORDER BY l.id
"""


def _archive_points(conn: psycopg.Connection, object_ids: Sequence[int]) -> list[dict]:
    rows = conn.execute(_ARCHIVE_LC, [list(object_ids)]).fetchall()
    out = []
    for oid, mjd, dateobs, band, mag, err, dmag, derr, q, fname, progid, comp in rows:
        if mjd is None:  # derive from the timestamp with astropy, never in SQL
            mjd = Time(dateobs.astimezone(UTC).replace(tzinfo=None), scale="utc").mjd
        comp_text = ",".join(str(c) for c in comp) if isinstance(comp, list) else comp
        out.append(
            {
                "source": "archive",
                "object_id": oid,
                "mjd": float(mjd),
                "band": band,
                "mag": mag,
                "mag_err": err,
                "mag_diff": dmag,
                "mag_diff_err": derr,
                "quality": q,
                "filename": fname,
                "progid": progid,
                "comp_stars": None if comp_text is None else str(comp_text),
            }
        )
    return out


def _pipeline_points(
    conn: psycopg.Connection, coord: SkyCoord, radius: u.Quantity, object_id: int | None
) -> list[dict]:
    from photdb.survey.store import lightcurve_by_cone  # the pipeline's own cone query

    c = coord.icrs
    lc = lightcurve_by_cone(
        conn,
        float(c.ra.deg),
        float(c.dec.deg),
        radius_arcsec=float(u.Quantity(radius).to_value(u.arcsec)),
    )
    if len(lc) == 0:
        return []
    ids = sorted({int(i) for i in lc["galimage_id"]})
    names = dict(
        conn.execute("SELECT id, filename FROM observations WHERE id = ANY(%s)", [ids]).fetchall()
    )
    out = []
    for row in lc:
        out.append(
            {
                "source": "pipeline",
                "object_id": object_id,
                "mjd": float(row["mjd"]),
                "band": _text(row["filter"]),
                "mag": _num(row["mag"]),
                "mag_err": _num(row["magerr"]),
                "filename": names.get(int(row["galimage_id"])),
                "is_reference": bool(row["is_reference"]),
                "galsource_id": int(row["galsource_id"]),
            }
        )
    return out


def _text(value) -> str | None:
    return None if value is None or str(value) in ("", "None", "--") else str(value)


def _num(value) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def _lc_table(points: list[dict]) -> Table:
    points = sorted(points, key=lambda p: (p["mjd"], p["source"]))
    kinds = {
        "source": str,
        "object_id": np.int64,
        "band": str,
        "mag": float,
        "mag_err": float,
        "mag_diff": float,
        "mag_diff_err": float,
        "quality": np.int64,
        "filename": str,
        "progid": str,
        "comp_stars": str,
        "is_reference": bool,
        "galsource_id": np.int64,
    }
    fill = {str: "", float: np.nan, np.int64: 0, bool: False}
    t = Table()
    mjd = np.array([p["mjd"] for p in points], dtype=float)
    times = Time(mjd, format="mjd", scale="utc")
    for name in LC_COLUMNS:
        if name == "mjd":
            t[name] = mjd
        elif name == "jd":
            t[name] = times.jd
        elif name == "iso":
            t[name] = np.array(times.isot if len(points) else [], dtype=str)
        else:
            kind = kinds[name]
            values = [p.get(name) for p in points]
            mask = [v is None for v in values]
            data = np.array([fill[kind] if v is None else v for v in values], dtype=kind)
            t[name] = MaskedColumn(data, mask=mask) if any(mask) else data
    for name in ("mjd", "jd"):
        t[name].unit = u.day
    for name in ("mag", "mag_err", "mag_diff", "mag_diff_err"):
        t[name].unit = u.mag
    t.meta["time_scale"] = "utc"
    t.meta["time_note"] = "mjd/jd/iso in UTC, from the stored MJD, derived with astropy"
    return t


def get_lightcurve(
    conn: psycopg.Connection,
    *,
    object: str | int | None = None,
    coord: SkyCoord | None = None,
    radius: u.Quantity | None = None,
    include: Sequence[str] = ("archive", "pipeline"),
) -> Table:
    """Every photometric point of an object, from the archive and the pipeline.

    Parameters
    ----------
    conn : psycopg.Connection
        Any role.
    object : str or int, optional
        Object id or any catalogue name (see :func:`find_objects`); it must
        match exactly one object.
    coord : SkyCoord, optional
        A position instead of ``object``: the archive points of every object
        within ``radius`` and the pipeline measurements within ``radius``.
    radius : Quantity, optional
        Cone radius, default 1 arcsec. With ``object`` it is the cone around the
        object's position for the pipeline's ``galsources``.
    include : sequence of str
        'archive' and/or 'pipeline'.

    Returns
    -------
    astropy.table.Table
        :data:`LC_COLUMNS` ordered by time: ``source`` ('archive' or
        'pipeline'), ``mjd``, ``jd`` [d] and ``iso`` (UTC; astropy), ``band``,
        ``mag``, ``mag_err``, ``mag_diff``, ``mag_diff_err``, ``quality``,
        ``filename`` (the observation), ``progid`` (data source),
        ``comp_stars`` (comma-separated), ``is_reference`` and
        ``galsource_id`` (pipeline rows). Missing values are masked.
        ``meta['objects']`` lists the matched object ids.

    Raises
    ------
    QueryError
        Neither or both of ``object`` and ``coord``; an unknown or ambiguous name.
    """
    if (object is None) == (coord is None):
        raise QueryError("give either an object (name or id) or a position, not both or neither")
    radius = DEFAULT_RADIUS if radius is None else radius
    _radius_rad(radius)
    if object is not None:
        found = find_objects(conn, object)
        if len(found) == 0:
            raise QueryError(f"no object named {object!r} (id, Gaia, SIMBAD, VSX, UCAC4, APASS)")
        if len(found) > 1:
            which = ", ".join(
                f"{r['id']} ({r['simbad_name'] or r['gaia_name'] or ''})" for r in found[:5]
            )
            raise QueryError(f"{object!r} matches {len(found)} objects: {which}; use an id")
        oid = int(found["id"][0])
        ids = [oid]
        ra, dec = float(found["ra"][0]), float(found["dec"][0])
        centre = SkyCoord(ra, dec, unit="deg") if math.isfinite(ra) else None
    else:
        ids = [int(i) for i in cone_objects(conn, coord, radius)["id"]]
        oid, centre = (ids[0] if len(ids) == 1 else None), coord
    points = _archive_points(conn, ids) if "archive" in include and ids else []
    if "pipeline" in include and centre is not None:
        points += _pipeline_points(conn, centre, radius, oid)
    table = _lc_table(points)
    table.meta["objects"] = ids
    return table


# --------------------------------------------------------------------------- parsing and output

_RADIUS_SHORT = re.compile(r"""^\s*([-+0-9.eE]+)\s*(["'d]|''|″|′|°)\s*$""")


def parse_radius(text: str | float, *, default_unit: u.UnitBase = u.deg) -> u.Quantity:
    """An angular radius from text: '30arcsec', '6 arcmin', '0.1deg', '30"', "6'", '0.1d'.

    A bare number is in ``default_unit`` (degrees, as the archive document's
    ``scircle('<(325.679d, 43.5862d), 0.1d>')``).
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
    back with :meth:`astropy.table.Table.read`.
    """
    if fmt not in FORMATS:
        raise QueryError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
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
