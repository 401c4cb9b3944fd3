"""Write merged object lists: match known objects in bulk, fill their gaps, insert the rest.

One transaction, serialised against other object loads by an advisory lock;
matching is set-based SQL over a temporary staging table filled by binary COPY.
"""

from __future__ import annotations

import math

import numpy as np
import psycopg
from astropy.table import Table

from photdb.archive.objmerge import Groups
from photdb.db.copy import Column, copy_columns

__all__ = ["store_objects"]

#: pg_advisory_xact_lock key: one object load at a time.
OBJECTS_LOCK = 0x70686F74_64620010
_NAMES = ("gaia_name", "simbad_name", "ucac4_name", "apass_name", "vsx_name", "auid",
          "aavso_label", "class", "description")  # fmt: skip
_STAGE = (
    "CREATE TEMP TABLE objects_stage (gid int4, ra float8, dec float8, "
    + ", ".join(f"{c} text" for c in _NAMES)
    + ", match int4) ON COMMIT DROP"
)
# the text form keeps the exact degrees (as '(325.679d, 43.5862d)' in the document);
# spoint has no binary input, so the staging table holds ra/dec and this builds the point
_PT = "('(' || s.ra || 'd, ' || s.dec || 'd)')::spoint"  # NULL when ra or dec is
_MATCH = (
    # by Gaia id, then AUID
    "UPDATE objects_stage s SET match = o.id FROM objects o"
    " WHERE s.gaia_name IS NOT NULL AND o.gaia_name = s.gaia_name",
    "UPDATE objects_stage s SET match = o.id FROM objects o"
    " WHERE s.match IS NULL AND s.auid IS NOT NULL AND o.auid = s.auid",
    # by position, never across two different Gaia ids or AUIDs
    f"UPDATE objects_stage s SET match = (SELECT o.id FROM objects o"
    f" WHERE o.coordequ <@ scircle({_PT}, %(r)s)"
    " AND (o.gaia_name IS NULL OR s.gaia_name IS NULL)"
    " AND (o.auid IS NULL OR s.auid IS NULL)"
    f" ORDER BY o.coordequ <-> {_PT} LIMIT 1) WHERE s.match IS NULL AND s.ra IS NOT NULL",
    # by name, for objects without a position
    "UPDATE objects_stage s SET match = (SELECT min(o.id) FROM objects o"
    " WHERE lower(o.simbad_name) = lower(s.simbad_name) OR lower(o.vsx_name) = lower(s.vsx_name)"
    " OR lower(o.ucac4_name) = lower(s.ucac4_name) OR lower(o.apass_name) = lower(s.apass_name))"
    " WHERE s.match IS NULL AND s.ra IS NULL",
    # two list objects matched to one known object: one of them only, if their ids differ
    "WITH f AS (SELECT DISTINCT ON (match) match, gaia_name FROM objects_stage"
    " WHERE match IS NOT NULL AND gaia_name IS NOT NULL ORDER BY match, gid)"
    " UPDATE objects_stage s SET match = NULL FROM f WHERE s.match = f.match"
    " AND s.gaia_name IS NOT NULL AND s.gaia_name <> f.gaia_name",
    "WITH f AS (SELECT DISTINCT ON (match) match, auid FROM objects_stage"
    " WHERE match IS NOT NULL AND auid IS NOT NULL ORDER BY match, gid)"
    " UPDATE objects_stage s SET match = NULL FROM f WHERE s.match = f.match"
    " AND s.auid IS NOT NULL AND s.auid <> f.auid",
)
# fill the gaps of matched objects: each object from the first list object matched to it
# (from all of them, in list order, when several were)
_FILL_ONE = (
    f"WITH f AS (SELECT DISTINCT ON (match) match, {_PT} AS pt, "
    + ", ".join(_NAMES)
    + " FROM objects_stage s WHERE match IS NOT NULL ORDER BY match, gid)"
)
_FILL_MANY = (
    "WITH f AS (SELECT match, "
    + ", ".join(
        f"(array_agg({c} ORDER BY gid) FILTER (WHERE {c} IS NOT NULL))[1] AS {c}" for c in _NAMES
    )
    + f", (array_agg({_PT} ORDER BY gid) FILTER (WHERE s.ra IS NOT NULL))[1] AS pt"
    " FROM objects_stage s WHERE match IS NOT NULL GROUP BY match)"
)
_FILL = (
    " UPDATE objects o SET coordequ = COALESCE(o.coordequ, f.pt), "
    + ", ".join(f"{c} = COALESCE(o.{c}, f.{c})" for c in _NAMES)
    + " FROM f WHERE o.id = f.match AND ((o.coordequ IS NULL AND f.pt IS NOT NULL) OR "
    + " OR ".join(f"(o.{c} IS NULL AND f.{c} IS NOT NULL)" for c in _NAMES)
    + ")"
)
_INSERT = (
    f"INSERT INTO objects (coordequ, {', '.join(_NAMES)})"
    f" SELECT {_PT}, {', '.join(_NAMES)} FROM objects_stage s WHERE match IS NULL ORDER BY gid"
)


def store_objects(
    conn: psycopg.Connection, table: Table, groups: Groups, radius_arcsec: float
) -> dict[str, int]:
    """Match, fill and insert ``groups`` in one transaction; counts of objects."""
    n = len(groups.first)
    counts = {"inserted": 0, "updated": 0, "unchanged": 0}
    if n == 0:
        return counts
    v = groups.values
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [OBJECTS_LOCK])
        cur.execute(_STAGE)
        cols = [Column("gid", "int4", np.arange(n)),
                Column("ra", "float8", v["ra"]), Column("dec", "float8", v["dec"])]  # fmt: skip
        cols += [Column(c, "text", v[c]) for c in _NAMES]
        copy_columns(cur, "objects_stage", cols)
        cur.execute("ANALYZE objects_stage")
        for stmt in _MATCH:
            cur.execute(stmt, {"r": math.radians(radius_arcsec / 3600.0)})
        matched, shared = cur.execute(
            "SELECT count(match), count(match) - count(DISTINCT match) FROM objects_stage"
        ).fetchone()
        cur.execute((_FILL_MANY if shared else _FILL_ONE) + _FILL)
        counts["updated"] = cur.rowcount
        counts["unchanged"] = int(matched) - cur.rowcount
        cur.execute(_INSERT)
        counts["inserted"] = cur.rowcount
    return counts
