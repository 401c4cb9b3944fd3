"""The Python front door of photdb: functions over both halves, returning astropy objects.

What ``import photdb`` exposes, and what the CLI and the web service call. Each
function takes an open connection (``conn=``) or connects itself as the read-only
role from the settings (environment, ``.env`` or the embedded cluster).

* :func:`fetch_lightcurve` -- a light curve of an object (any catalogue name or id), a
  position or a pipeline reference source, from the archive's points and the
  pipeline's measurements, in the one shape of :mod:`photdb.lightcurve` with a
  ``time`` column (astropy Time, UTC) and the object's names and position in its meta;
* :func:`cone` -- objects (or pipeline measurements) around a position, a Table with a
  ``coord`` SkyCoord column;
* :func:`variable_candidates` and :func:`repeat_counts` -- the pipeline's candidates;
  :func:`reference_outliers` -- stars whose reference, not the star, differs;
* :func:`images` -- exposures and their images with audit columns and status;
* :func:`load_differential_photometry` -- ensemble differential photometry of a
  target, loaded into the archive with its comparison stars.

Examples
--------
>>> import photdb                                                   # doctest: +SKIP
>>> lc = photdb.fetch_lightcurve("SS Cyg")                                # doctest: +SKIP
>>> lc["time"].scale, lc.meta["object_name"], lc["mag"].unit        # doctest: +SKIP
('utc', 'SS Cyg', Unit("mag"))
>>> near = photdb.cone("21h42m43s +43d35m10s", "6arcmin")           # doctest: +SKIP

Over 400 lines: it is the documented front door, and most of it is docstrings.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence

import astropy.units as u
import numpy as np
import psycopg
from astropy.coordinates import SkyCoord
from astropy.table import Table

from photdb.archive.query import (
    DEFAULT_RADIUS,
    QueryError,
    archive_lightcurve,
    check_radius,
    cone_objects,
    find_objects,
    parse_coord,
    parse_radius,
)
from photdb.lightcurve import lightcurve_table, stack_lightcurves
from photdb.settings import Settings
from photdb.survey import browse, queries
from photdb.survey import candidates as _cands

__all__ = [
    "as_coord",
    "as_radius",
    "cone",
    "connection",
    "count_candidates",
    "get_lightcurve",
    "images",
    "fetch_lightcurve",
    "load_differential_photometry",
    "reference_outliers",
    "repeat_counts",
    "variable_candidates",
]

#: Cone around a pipeline reference source in which other filters' reference
#: sources count as the same star (the notebook's cross-filter radius).
CROSS_FILTER_RADIUS = 0.5 * u.arcsec
#: The most rows :func:`cone` returns unless told otherwise.
CONE_LIMIT = 10_000


@contextlib.contextmanager
def connection(
    conn: psycopg.Connection | None = None,
    settings: Settings | None = None,
    role: str = "readonly",
) -> Iterator[psycopg.Connection]:
    """``conn`` itself, or a new connection as ``role`` from ``settings`` (closed after)."""
    if conn is not None:
        yield conn
        return
    from photdb.db import connect
    from photdb.settings import load_settings

    with connect(role, settings or load_settings()) as own:
        yield own


def as_coord(position: SkyCoord | str | tuple | None) -> SkyCoord | None:
    """A SkyCoord from a SkyCoord, ``(ra, dec)`` (deg or text) or one string
    ("325.679 43.5862", "21:42:43 +43:35:10", "21h42m43s +43d35m10s")."""
    if position is None or isinstance(position, SkyCoord):
        return position
    if isinstance(position, str):
        parts = position.replace(",", " ").split()
        if len(parts) == 2:
            return parse_coord(*parts)
        if len(parts) == 6:
            return parse_coord(":".join(parts[:3]), ":".join(parts[3:]))
        raise QueryError(f"cannot read position {position!r}: give RA and Dec")
    ra, dec = position
    return parse_coord(ra, dec)


def as_radius(radius: u.Quantity | str | float | None, default: u.Quantity) -> u.Quantity:
    """A radius from a Quantity, text with a unit ('2arcsec', "0.5'", '1deg') or a bare
    number in arcsec (photdb's one unit for bare radii)."""
    if radius is None:
        return default
    if isinstance(radius, u.Quantity):
        check_radius(radius)
        return radius
    return parse_radius(radius, default_unit=u.arcsec)


def _names(row) -> list[str]:
    keys = ("simbad_name", "vsx_name", "gaia_name", "ucac4_name", "apass_name")
    out = []
    for k in keys:
        v = row[k]
        if v is not np.ma.masked and str(v).strip():
            out.append(f"Gaia DR3 {v}" if k == "gaia_name" else str(v))
    return out


def get_lightcurve(
    conn: psycopg.Connection,
    *,
    object: str | int | None = None,
    coord: SkyCoord | None = None,
    refsource: int | None = None,
    radius: u.Quantity | None = None,
    include: Sequence[str] = ("archive", "pipeline"),
) -> Table:
    """Every photometric point of an object, a position or a reference source.

    Parameters
    ----------
    conn : psycopg.Connection
        Any role.
    object : str or int, optional
        Object id or any catalogue name (see
        :func:`~photdb.archive.query.find_objects`); it must match exactly one object.
    coord : SkyCoord, optional
        A position instead of ``object``: the archive points of every object within
        ``radius`` and the pipeline measurements within ``radius``.
    refsource : int, optional
        A pipeline reference source (``galsources.id`` of a reference catalogue row,
        the ``refsource_id`` of ``photdb variables``): its forced measurements, and
        those of the reference sources of other filters within 0.5″.
    radius : Quantity, optional
        Cone radius, default 1 arcsec. With ``object`` it is the cone around the
        object's position for the pipeline's ``galsources``.
    include : sequence of str
        'archive' and/or 'pipeline'.

    Returns
    -------
    astropy.table.Table
        A :func:`photdb.lightcurve.lightcurve_table` ordered by time; its meta has
        ``objects`` (matched object ids), ``object_name``, ``names``, ``ra``/``dec``
        (deg, ICRS) and ``time_scale``.

    Raises
    ------
    photdb.archive.query.QueryError
        Not exactly one of ``object``, ``coord`` and ``refsource``; an unknown or
        ambiguous name; an unknown reference source.
    """
    if sum(x is not None for x in (object, coord, refsource)) != 1:
        raise QueryError("give one of an object (name or id), a position or a reference source")
    radius = DEFAULT_RADIUS if radius is None else radius
    check_radius(radius)
    meta: dict = {"object_name": None, "names": [], "ra": None, "dec": None}
    if refsource is not None:
        return _refsource_lightcurve(conn, int(refsource), meta)
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
        meta["names"] = _names(found[0])
        meta["object_name"] = meta["names"][0] if meta["names"] else f"object {oid}"
    else:
        near = cone_objects(conn, coord, radius)
        ids = [int(i) for i in near["id"]]
        oid, centre = (ids[0] if len(ids) == 1 else None), coord
        if oid is not None:
            meta["names"] = _names(near[0])
            meta["object_name"] = meta["names"][0] if meta["names"] else None
    if centre is not None:
        c = centre.icrs
        meta["ra"], meta["dec"] = float(c.ra.deg), float(c.dec.deg)
    parts = [lightcurve_table({})]
    if "archive" in include and ids:
        parts.append(archive_lightcurve(conn, ids))
    if "pipeline" in include and centre is not None:
        lc = queries.lightcurve_by_cone(
            conn, meta["ra"], meta["dec"], float(u.Quantity(radius).to_value(u.arcsec))
        )
        if oid is not None and len(lc):
            lc["object_id"] = [oid] * len(lc)
        parts.append(lc)
    table = stack_lightcurves(parts)
    table.meta.update(meta)
    table.meta["objects"] = ids
    table.meta["radius_arcsec"] = float(u.Quantity(radius).to_value(u.arcsec))
    return table


def _refsource_lightcurve(conn: psycopg.Connection, refsource: int, meta: dict) -> Table:
    try:
        table = queries.lightcurve_of_star(
            conn, refsource, cross_radius_arcsec=CROSS_FILTER_RADIUS.to_value(u.arcsec)
        )
    except KeyError:
        raise QueryError(f"no reference source {refsource} (a refid of photdb variables)") from None
    meta.update(ra=table.meta["ra"], dec=table.meta["dec"], refsource_id=refsource)
    table.meta.update(meta)
    table.meta["objects"] = []
    return table


def fetch_lightcurve(
    object: str | int | None = None,
    *,
    position: SkyCoord | str | tuple | None = None,
    refsource: int | None = None,
    radius: u.Quantity | str | float | None = None,
    include: Sequence[str] = ("archive", "pipeline"),
    conn: psycopg.Connection | None = None,
    settings: Settings | None = None,
) -> Table:
    """A light curve as an astropy Table with a ``time`` column (Time, UTC).

    Parameters
    ----------
    object : str or int, optional
        Object id or any catalogue name ("SS Cyg", "Gaia DR3 1972957892448494592").
    position : SkyCoord, str or (ra, dec), optional
        A position instead: "325.679 43.5862", "21:42:43 +43:35:10".
    refsource : int, optional
        A pipeline reference source id (``photdb variables``' ``refid``).
    radius : Quantity or str or float, optional
        Cone for pipeline points: a Quantity, text with a unit ('2arcsec', "0.5'") or
        a bare number in arcsec; default 1″.
    conn, settings : optional
        An open connection, or settings to connect with (read-only role).

    Returns
    -------
    astropy.table.Table
        The shape of :func:`photdb.lightcurve.lightcurve_table`; ``meta`` holds
        ``object_name``, ``names``, ``ra``, ``dec`` (deg) and ``time_scale``.
    """
    coord = as_coord(position)
    r = as_radius(radius, DEFAULT_RADIUS)
    with connection(conn, settings) as c:
        return get_lightcurve(c, object=object, coord=coord, refsource=refsource, radius=r,
                              include=include)  # fmt: skip


def cone(
    position: SkyCoord | str | tuple,
    radius: u.Quantity | str | float,
    *,
    table: str = "objects",
    limit: int = CONE_LIMIT,
    conn: psycopg.Connection | None = None,
    settings: Settings | None = None,
) -> Table:
    """Objects (or pipeline measurements) within ``radius`` of ``position``, nearest first.

    Parameters
    ----------
    position : SkyCoord, str or (ra, dec)
    radius : Quantity, str or float
        A bare number is in arcsec.
    table : {'objects', 'galsources'}
        The archive's known objects, or every pipeline measurement (q3c).
    limit : int
        At most this many rows (the nearest).

    Returns
    -------
    astropy.table.Table
        ``coord`` (SkyCoord, ICRS) first, then the table's columns and ``dist_arcsec``.
    """
    coord = as_coord(position)
    r = as_radius(radius, DEFAULT_RADIUS)
    if table not in ("objects", "galsources"):
        raise QueryError(f"cone over {table!r}: use 'objects' or 'galsources'")
    with connection(conn, settings) as c:
        if table == "objects":
            out = cone_objects(c, coord, r)[: int(limit)]
        else:
            c0 = coord.icrs
            out = queries.sources_in_cone(
                c,
                float(c0.ra.deg),
                float(c0.dec.deg),
                float(r.to_value(u.arcsec)),
                limit=int(limit),
            )
    out.add_column(SkyCoord(np.asarray(out["ra"], float), np.asarray(out["dec"], float),
                            unit="deg", frame="icrs"), name="coord", index=0)  # fmt: skip
    out.meta.update(ra=float(coord.icrs.ra.deg), dec=float(coord.icrs.dec.deg),
                    radius_arcsec=float(r.to_value(u.arcsec)), table=table)  # fmt: skip
    return out


def variable_candidates(
    *,
    filter: str | None = None,
    min_repeats: int = 2,
    limit: int | None = 50,
    mag_range: tuple[float | None, float | None] = (None, None),
    position: SkyCoord | str | tuple | None = None,
    radius: u.Quantity | str | float | None = None,
    conn: psycopg.Connection | None = None,
    settings: Settings | None = None,
) -> Table:
    """The pipeline's variable candidates, worst first, with a ``coord`` SkyCoord column.

    Columns of :data:`photdb.survey.candidates.CANDIDATE_COLUMNS` (``refsource_id,
    filter, ra, dec, ref_mag, ndet, n_epochs, chi2nu, amplitude, max_significance,
    epochs, dmag_median, mean_mag, eta, stetson_j``), ``ra``/``dec`` in deg and
    magnitudes in mag. Read from the per-source statistics (``galrefstats``), so it
    takes the same time on any survey size; reference outliers are not candidates
    (:func:`reference_outliers`). ``mag_range`` limits the reference magnitude,
    ``position`` and ``radius`` (default 60″) the sky area.
    """
    with connection(conn, settings) as c:
        t = _cands.variable_candidates(c, filter=filter, min_repeats=min_repeats, limit=limit,
                                       mag_min=mag_range[0], mag_max=mag_range[1],
                                       cone=_cone(position, radius))  # fmt: skip
    for name, unit in (("ra", u.deg), ("dec", u.deg), ("ref_mag", u.mag), ("amplitude", u.mag),
                       ("dmag_median", u.mag), ("mean_mag", u.mag)):  # fmt: skip
        t[name].unit = unit
    t.add_column(SkyCoord(np.asarray(t["ra"], float), np.asarray(t["dec"], float), unit="deg"),
                 name="coord", index=1)  # fmt: skip
    return t


def count_candidates(
    *,
    filter: str | None = None,
    min_repeats: int = 2,
    mag_range: tuple[float | None, float | None] = (None, None),
    position: SkyCoord | str | tuple | None = None,
    radius: u.Quantity | str | float | None = None,
    conn: psycopg.Connection | None = None,
    settings: Settings | None = None,
) -> int:
    """How many candidates :func:`variable_candidates` gives with these filters and no limit."""
    with connection(conn, settings) as c:
        return _cands.count_candidates(c, filter=filter, min_repeats=min_repeats,
                                       mag_min=mag_range[0], mag_max=mag_range[1],
                                       cone=_cone(position, radius))  # fmt: skip


def _cone(position, radius) -> tuple[float, float, float] | None:
    if position is None:
        return None
    c0 = as_coord(position).icrs
    r = as_radius(radius, 60 * u.arcsec)
    return float(c0.ra.deg), float(c0.dec.deg), float(r.to_value(u.arcsec))


def reference_outliers(
    *,
    filter: str | None = None,
    limit: int | None = 50,
    conn: psycopg.Connection | None = None,
    settings: Settings | None = None,
) -> Table:
    """Stars whose search epochs agree with each other and all differ from the reference.

    Columns of :data:`photdb.survey.candidates.OUTLIER_COLUMNS` (``ref_offset``: the
    weighted mean of search minus reference, mag; ``ref_offset_sigma``: its
    significance), most significant first. They are never variable candidates.
    """
    with connection(conn, settings) as c:
        t = _cands.reference_outliers(c, filter=filter, limit=limit)
    for name in ("ref_mag", "ref_magerr", "mean_mag", "ref_offset"):
        t[name].unit = u.mag
    for name in ("ra", "dec"):
        t[name].unit = u.deg
    return t


def repeat_counts(
    *,
    filter: str | None = None,
    conn: psycopg.Connection | None = None,
    settings: Settings | None = None,
) -> Table:
    """The notebook's first query: reference sources per number of variable detections."""
    with connection(conn, settings) as c:
        return queries.repeat_counts(c, filter=filter)


def images(
    *,
    status: str | None = None,
    filter: str | None = None,
    limit: int = 5000,
    conn: psycopg.Connection | None = None,
    settings: Settings | None = None,
) -> Table:
    """Exposures and their images: processing status and the audit columns."""
    with connection(conn, settings) as c:
        return browse.images(c, status=status, filter=filter, limit=limit)


def load_differential_photometry(
    phot: Table,
    target: object,
    comps: Sequence[object],
    *,
    times: Mapping[object, object],
    band: str,
    datasource: str,
    object: str | int,
    catalog_mags: Mapping[object, float] | None = None,
    names: Mapping[object, str] | None = None,
    exp_time: float | None = None,
    conn: psycopg.Connection | None = None,
    settings: Settings | None = None,
    **columns: str,
):
    """Differential photometry of ``target`` against comparison stars, loaded into the archive.

    Runs :func:`photdb.diffphot.differential_photometry` (ensemble of ``comps``,
    variable comparison stars rejected) and loads the light curve with
    :func:`photdb.archive.lightcurves.load_lightcurves`: ``magnitude`` and
    ``mag_err`` (calibrated when ``catalog_mags`` covers every comparison star),
    ``mag_diff``, ``mag_diff_err``, and per point in ``metadata_lc_json``:
    ``comp_stars``, ``num_comp``, ``aver_comp``, ``differential = 1``,
    ``type_calib`` ('ensemble') and ``exp_time``.

    Parameters
    ----------
    phot : Table
        One row per (frame, star): see :func:`~photdb.diffphot.differential_photometry`;
        ``columns`` passes ``frame_col``, ``star_col``, ``mag_col``, ``err_col``.
    times : mapping
        Frame -> its time (ISO text, or an astropy Time), UTC mid-exposure.
    band, datasource, object
        The band of the frames, the data source progid, the target's object name or id.

    Returns
    -------
    (DiffPhotResult, LoadReport)
    """
    from photdb.archive.lightcurves import load_lightcurves
    from photdb.diffphot import differential_photometry

    result = differential_photometry(phot, target, comps, catalog_mags=catalog_mags,
                                     names=names, **columns)  # fmt: skip
    lc = result.lightcurve
    stamps = [times[f] for f in lc["frame"].tolist()]
    n = len(lc)
    table = Table(
        {
            "dateobs": [str(getattr(s, "isot", s)) for s in stamps],
            "filename": [str(f) for f in lc["frame"]],
            "magnitude": lc["magnitude"],
            "mag_err": lc["mag_err"],
            "mag_diff": lc["mag_diff"],
            "mag_diff_err": lc["mag_diff_err"],
            "comp_stars": lc["comp_stars"],
            "num_comp": lc["num_comp"],
            "aver_comp": lc["aver_comp"],
            "differential": [1] * n,
            "type_calib": ["ensemble" + (", catalogue" if catalog_mags else "")] * n,
            **({"exp_time": [float(exp_time)] * n} if exp_time is not None else {}),
        }
    )
    with connection(conn, settings, role="writer") as c:
        report = load_lightcurves(c, table, datasource=datasource, band=band, object=object)
    return result, report
