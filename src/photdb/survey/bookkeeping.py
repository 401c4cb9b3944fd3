"""The SQL of the survey's bookkeeping: exposures, reference sets, what waits to be processed.

Used by :mod:`photdb.survey.references` (choosing and marking references) and
:mod:`photdb.survey.process` (planning). No algorithm lives here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

__all__ = [
    "ReferenceSet",
    "active_reference_sets",
    "chips_to_do",
    "exposure_by_file",
    "exposure_by_id",
    "exposure_chips",
    "exposure_filters",
    "exposure_seeing",
    "image_file",
    "mark_stack",
    "matching_chip",
    "replace_reference_set",
    "searches_to_do",
]


def image_file(conn: psycopg.Connection, galimage_id: int) -> tuple[str, int]:
    """The file and HDU of an image."""
    path, fname, hdu = conn.execute(
        "SELECT e.path, e.filename, i.hdu FROM galimages i"
        " JOIN galexposures e ON e.id = i.galexposure_id WHERE i.id = %s",
        [galimage_id],
    ).fetchone()
    return f"{path}/{fname}", int(hdu)


def chips_to_do(conn: psycopg.Connection, exposure_id: int, states: Sequence[str]) -> list[int]:
    """Images of one exposure whose status is one of ``states``, by HDU."""
    rows = conn.execute(
        "SELECT id FROM galimages WHERE galexposure_id = %s AND status = ANY(%s) ORDER BY hdu",
        [exposure_id, list(states)],
    ).fetchall()
    return [r[0] for r in rows]


def searches_to_do(
    conn: psycopg.Connection, states: Sequence[str], filter: str | None
) -> list[tuple[int, str | None]]:
    """``(image id, filter)`` of search images (not of reference exposures) in ``states``,
    by time then HDU."""
    return conn.execute(
        "SELECT i.id, e.filter FROM galimages i JOIN galexposures e ON e.id = i.galexposure_id"
        " WHERE NOT e.is_reference AND i.status = ANY(%s)"
        " AND (%s::text IS NULL OR e.filter = %s) ORDER BY e.mjd, i.hdu",
        [list(states), filter, filter],
    ).fetchall()


def matching_chip(conn: psycopg.Connection, galimage_id: int, exposure_id: int) -> int | None:
    """The chip of ``exposure_id`` covering the same sky as image ``galimage_id``.

    Same CCDNUM, else same EXTNAME, else same HDU, else the nearest chip centre
    (``observations.coordequ``).
    """
    exact = conn.execute(
        """
        SELECT c.id FROM galimages c, galimages s WHERE s.id = %(img)s
          AND c.galexposure_id = %(exp)s
          AND ((s.ccdnum IS NOT NULL AND c.ccdnum = s.ccdnum)
               OR (s.ccdnum IS NULL AND s.extname IS NOT NULL AND c.extname = s.extname)
               OR (s.ccdnum IS NULL AND s.extname IS NULL AND c.hdu = s.hdu))
        """,
        {"img": galimage_id, "exp": exposure_id},
    ).fetchone()
    if exact:
        return exact[0]
    near = conn.execute(
        """
        SELECT c.id FROM galimages c
        JOIN observations oc ON oc.id = c.id, observations os
        WHERE os.id = %(img)s AND c.galexposure_id = %(exp)s
          AND oc.coordequ IS NOT NULL AND os.coordequ IS NOT NULL
        ORDER BY oc.coordequ <-> os.coordequ LIMIT 1
        """,
        {"img": galimage_id, "exp": exposure_id},
    ).fetchone()
    return near[0] if near else None


# ---------------------------------------------------------------- reference sets


@dataclass(frozen=True)
class ReferenceSet:
    """The active references of one filter (a ``galrefsets`` row)."""

    id: int
    filter: str
    kind: str
    primary_exposure_id: int
    member_exposure_ids: tuple[int, ...]


def active_reference_sets(
    conn: psycopg.Connection, *, filter: str | None = None
) -> list[ReferenceSet]:
    """The active reference set of each filter (or of ``filter``)."""
    rows = conn.execute(
        "SELECT id, filter, kind, primary_exposure_id, member_exposure_ids FROM galrefsets"
        " WHERE active AND (%(f)s::text IS NULL OR filter = %(f)s) ORDER BY filter",
        {"f": filter},
    ).fetchall()
    return [ReferenceSet(r[0], r[1], r[2], r[3], tuple(r[4])) for r in rows]


def exposure_by_id(conn: psycopg.Connection, exposure_id: int) -> int | None:
    row = conn.execute("SELECT id FROM galexposures WHERE id = %s", [exposure_id]).fetchone()
    return None if row is None else row[0]


def exposure_by_file(conn: psycopg.Connection, folder: str, filename: str) -> int | None:
    row = conn.execute(
        "SELECT id FROM galexposures WHERE path = %s AND filename = %s", [folder, filename]
    ).fetchone()
    return None if row is None else row[0]


def exposure_filters(conn: psycopg.Connection, ids: Sequence[int]) -> list[tuple[int, str | None]]:
    """``(id, filter)`` of exposures."""
    return conn.execute(
        "SELECT id, filter FROM galexposures WHERE id = ANY(%s)", [list(ids)]
    ).fetchall()


def exposure_chips(conn: psycopg.Connection, exposure_id: int) -> tuple[str, list[tuple]]:
    """The exposure's file and its chips ``(image id, hdu, extname, ccdnum)`` by HDU."""
    path, fname = conn.execute(
        "SELECT path, filename FROM galexposures WHERE id = %s", [exposure_id]
    ).fetchone()
    chips = conn.execute(
        "SELECT id, hdu, extname, ccdnum FROM galimages WHERE galexposure_id = %s ORDER BY hdu",
        [exposure_id],
    ).fetchall()
    return f"{path}/{fname}", chips


def exposure_seeing(conn: psycopg.Connection, ids: Sequence[int]) -> list[tuple]:
    """``(id, mjd, median header seeing in arcsec or None)`` of exposures: SEEING
    (arcsec), else FWHM (pix) x PIXSCAL1 (default 0.263, DECam)."""
    return conn.execute(
        """
        SELECT e.id, e.mjd, (
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY COALESCE(
                (m.data->>'SEEING')::float8,
                (m.data->>'FWHM')::float8 * COALESCE((m.data->>'PIXSCAL1')::float8, 0.263)))
            FROM galimages i JOIN metadata_obs_json m ON m.observation_id = i.id
            WHERE i.galexposure_id = e.id
              AND jsonb_typeof(COALESCE(m.data->'SEEING', m.data->'FWHM')) = 'number')
        FROM galexposures e WHERE e.id = ANY(%s)
        """,
        [list(ids)],
    ).fetchall()


def mark_stack(conn: psycopg.Connection, exposure_id: int) -> None:
    """Mark the images of a stacked exposure as ``observations.type = 'stack'``."""
    conn.execute(
        "UPDATE observations SET type = 'stack' WHERE id IN"
        " (SELECT id FROM galimages WHERE galexposure_id = %s)",
        [exposure_id],
    )


def replace_reference_set(
    conn: psycopg.Connection, band: str, kind: str, primary_id: int, members: Sequence[int]
) -> ReferenceSet:
    """Make a new active set for ``band``: the old one is deactivated and its exposures
    lose ``is_reference`` unless they are in the new one."""
    others = [m for m in members if m != primary_id]
    old = conn.execute(
        "UPDATE galrefsets SET active = false WHERE active AND filter = %s"
        " RETURNING primary_exposure_id, member_exposure_ids",
        [band],
    ).fetchall()
    for p, ms in old:
        conn.execute(
            "UPDATE galexposures SET is_reference = false WHERE id = ANY(%s) AND NOT id = ANY(%s)",
            [[p, *ms], [primary_id, *members]],
        )
    conn.execute(
        "UPDATE galexposures SET is_reference = true WHERE id = ANY(%s)",
        [[primary_id, *members]],
    )
    (sid,) = conn.execute(
        "INSERT INTO galrefsets (filter, kind, primary_exposure_id, member_exposure_ids)"
        " VALUES (%s, %s, %s, %s) RETURNING id",
        [band, kind, primary_id, others],
    ).fetchone()
    return ReferenceSet(sid, band, kind, primary_id, tuple(others))
