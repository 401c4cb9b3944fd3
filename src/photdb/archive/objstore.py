"""Write merged object lists: match known objects in bulk, fill their gaps, insert the rest.

One transaction, serialised against other object loads by an advisory lock;
matching is set-based SQL: the list is COPYed (binary) into a temporary staging
table and each matching rule appends (list object, known object) pairs to a
second one, so no row is rewritten.
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
    + ") ON COMMIT DROP"
)
# the text form keeps the exact degrees (as '(325.679d, 43.5862d)' in the document);
# spoint has no binary input, so the staging table holds ra/dec and this builds the point
_PT = "('(' || s.ra || 'd, ' || s.dec || 'd)')::spoint"  # NULL when ra or dec is
_UNMATCHED = "NOT EXISTS (SELECT 1 FROM objects_match m WHERE m.gid = s.gid)"
_MATCH = (
    # by Gaia id, then AUID
    "INSERT INTO objects_match SELECT s.gid, o.id FROM objects_stage s JOIN objects o"
    " ON o.gaia_name = s.gaia_name",
    "INSERT INTO objects_match SELECT s.gid, o.id FROM objects_stage s JOIN objects o"
    f" ON o.auid = s.auid WHERE {_UNMATCHED}",
    # by position, never across two different Gaia ids or AUIDs
    "INSERT INTO objects_match SELECT s.gid, (SELECT o.id FROM objects o"
    f" WHERE o.coordequ <@ scircle({_PT}, %(r)s)"
    " AND (o.gaia_name IS NULL OR s.gaia_name IS NULL) AND (o.auid IS NULL OR s.auid IS NULL)"
    f" ORDER BY o.coordequ <-> {_PT} LIMIT 1) AS id FROM objects_stage s"
    f" WHERE s.ra IS NOT NULL AND {_UNMATCHED}",
    # by name, for objects without a position
    "INSERT INTO objects_match SELECT s.gid, (SELECT min(o.id) FROM objects o"
    " WHERE lower(o.simbad_name) = lower(s.simbad_name) OR lower(o.vsx_name) = lower(s.vsx_name)"
    " OR lower(o.ucac4_name) = lower(s.ucac4_name) OR lower(o.apass_name) = lower(s.apass_name))"
    f" FROM objects_stage s WHERE s.ra IS NULL AND {_UNMATCHED}",
    "DELETE FROM objects_match WHERE id IS NULL",
)
# two list objects matched to one known object: only one of them if their ids differ
_SHARED = (
    "WITH x AS (SELECT m.gid, m.id, s.gaia_name, s.auid,"
    " first_value(s.gaia_name) OVER w AS g1, first_value(s.auid) OVER w AS a1"
    " FROM objects_match m JOIN objects_stage s USING (gid)"
    " WHERE m.id IN (SELECT id FROM objects_match GROUP BY id HAVING count(*) > 1)"
    " WINDOW w AS (PARTITION BY m.id ORDER BY (s.gaia_name IS NULL AND s.auid IS NULL), m.gid))"
    " DELETE FROM objects_match d USING x WHERE d.gid = x.gid"
    " AND ((x.gaia_name IS NOT NULL AND x.g1 IS NOT NULL AND x.gaia_name <> x.g1)"
    " OR (x.auid IS NOT NULL AND x.a1 IS NOT NULL AND x.auid <> x.a1))"
)
# fill the gaps of matched objects from the list objects matched to them, in list order
_FILL = (
    "WITH f AS (SELECT m.id, "
    + ", ".join(
        f"(array_agg(s.{c} ORDER BY s.gid) FILTER (WHERE s.{c} IS NOT NULL))[1] AS {c}"
        for c in _NAMES
    )
    + f", (array_agg({_PT} ORDER BY s.gid) FILTER (WHERE s.ra IS NOT NULL))[1] AS pt"
    " FROM objects_match m JOIN objects_stage s USING (gid) GROUP BY m.id)"
)
_FILL_ONE = (  # each known object matched once: no aggregation needed
    f"WITH f AS (SELECT m.id, {_PT} AS pt, "
    + ", ".join(f"s.{c}" for c in _NAMES)
    + " FROM objects_match m JOIN objects_stage s USING (gid))"
)
_UPDATE = (
    " UPDATE objects o SET coordequ = COALESCE(o.coordequ, f.pt), "
    + ", ".join(f"{c} = COALESCE(o.{c}, f.{c})" for c in _NAMES)
    + " FROM f WHERE o.id = f.id AND ((o.coordequ IS NULL AND f.pt IS NOT NULL) OR "
    + " OR ".join(f"(o.{c} IS NULL AND f.{c} IS NOT NULL)" for c in _NAMES)
    + ")"
)
_INSERT = (
    f"INSERT INTO objects (coordequ, {', '.join(_NAMES)})"
    f" SELECT {_PT}, {', '.join(_NAMES)} FROM objects_stage s WHERE {_UNMATCHED} ORDER BY gid"
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
        cur.execute("CREATE TEMP TABLE objects_match (gid int4, id int4) ON COMMIT DROP")
        cols = [Column("gid", "int4", np.arange(n)),
                Column("ra", "float8", v["ra"]), Column("dec", "float8", v["dec"])]  # fmt: skip
        cols += [Column(c, "text", v[c]) for c in _NAMES]
        copy_columns(cur, "objects_stage", cols)
        cur.execute("ANALYZE objects_stage")
        for k, stmt in enumerate(_MATCH):
            cur.execute(stmt, {"r": math.radians(radius_arcsec / 3600.0)})
            if k == 0:  # the later rules look up what is matched already
                cur.execute("CREATE INDEX ON objects_match (gid)")
        (shared,) = cur.execute(
            "SELECT count(*) - count(DISTINCT id) FROM objects_match"
        ).fetchone()
        if shared:
            cur.execute(_SHARED)
        (matched,) = cur.execute("SELECT count(*) FROM objects_match").fetchone()
        cur.execute((_FILL if shared else _FILL_ONE) + _UPDATE)
        counts["updated"] = cur.rowcount
        counts["unchanged"] = int(matched) - cur.rowcount
        cur.execute(_INSERT)
        counts["inserted"] = cur.rowcount
    return counts
