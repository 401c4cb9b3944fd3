"""Functions over both halves of photdb: what the CLI (and later the web service) calls.

A light curve of an object or a position combines the archive's uploaded points
(:func:`photdb.archive.query.archive_lightcurve`) and the pipeline's measurements in
a small cone (:func:`photdb.survey.queries.lightcurve_by_cone`), in the one table
shape of :mod:`photdb.lightcurve`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import astropy.units as u
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
)
from photdb.lightcurve import lightcurve_table, stack_lightcurves
from photdb.survey.queries import lightcurve_by_cone

__all__ = ["get_lightcurve"]


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
        Object id or any catalogue name (see
        :func:`~photdb.archive.query.find_objects`); it must match exactly one object.
    coord : SkyCoord, optional
        A position instead of ``object``: the archive points of every object within
        ``radius`` and the pipeline measurements within ``radius``.
    radius : Quantity, optional
        Cone radius, default 1 arcsec. With ``object`` it is the cone around the
        object's position for the pipeline's ``galsources``.
    include : sequence of str
        'archive' and/or 'pipeline'.

    Returns
    -------
    astropy.table.Table
        A :func:`photdb.lightcurve.lightcurve_table` ordered by time;
        ``meta['objects']`` lists the matched object ids.

    Raises
    ------
    photdb.archive.query.QueryError
        Neither or both of ``object`` and ``coord``; an unknown or ambiguous name.
    """
    if (object is None) == (coord is None):
        raise QueryError("give either an object (name or id) or a position, not both or neither")
    radius = DEFAULT_RADIUS if radius is None else radius
    check_radius(radius)
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
    parts = [lightcurve_table({})]
    if "archive" in include and ids:
        parts.append(archive_lightcurve(conn, ids))
    if "pipeline" in include and centre is not None:
        c = centre.icrs
        lc = lightcurve_by_cone(conn, float(c.ra.deg), float(c.dec.deg),
                                float(u.Quantity(radius).to_value(u.arcsec)))  # fmt: skip
        if oid is not None and len(lc):
            lc["object_id"] = [oid] * len(lc)
        parts.append(lc)
    table = stack_lightcurves(parts)
    table.meta["objects"] = ids
    return table
