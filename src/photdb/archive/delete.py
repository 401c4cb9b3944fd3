"""Remove observations, objects, data sources or whole nights: plan first, then execute.

:func:`plan_delete` resolves the target and counts, table by table, what would
go; :func:`execute_delete` removes exactly that in one transaction, in the
archive document's order::

    metadata_lc_json -> lightcurves -> metadata_obs_json -> observations -> objects

with the pipeline rows of an observation that is a pipeline image in between
(``galvarobjs``, ``galsources``, ``galimages``), and the ``galexposures`` row
(with its ``galrefsets``) of a file once its last image is gone; a file that
keeps some of its images has its ``n_images`` lowered, so that ingesting it
again adds the deleted ones back.

Targets
-------
observation
    An ``observations.id``, a file name (every HDU of that file), or
    ``path/filename`` when the same name exists in several folders.
object
    An ``objects.id`` or any catalogue name (one object): its light-curve
    points and the object. Observations stay.
datasource
    A ``datasources.progid``: its light-curve points and the data source.
night
    A date ``YYYY-MM-DD``, meaning the night that *begins* on that evening:
    every observation whose ``dateobs`` (start of exposure) lies from local
    mean noon of that date to local mean noon of the next day. Local mean noon
    is 12:00 UTC minus the longitude of the observation's observatory
    (telescope -> observatory, east positive, 4 min per degree), or 12:00 UTC
    when the longitude is unknown. Observations without ``dateobs`` are never
    part of a night. Light-curve points go with their observation; points
    without an observation are not touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import psycopg

from photdb.archive.query import find_objects
from photdb.archive.targets import DeleteError, Target, ids_of, resolve_target

__all__ = [
    "KINDS",
    "TABLE_ORDER",
    "DeleteError",
    "DeletePlan",
    "Target",
    "execute_delete",
    "plan_delete",
]

KINDS: tuple[str, ...] = ("observation", "object", "datasource", "night")
#: Tables in the order rows are removed.
TABLE_ORDER = (
    "metadata_lc_json",
    "lightcurves",
    "metadata_obs_json",
    "galvarobjs",
    "galsources",
    "galimages",
    "observations",
    "galrefsets",
    "galexposures",
    "objects",
    "datasources",
)


@dataclass(frozen=True)
class DeletePlan:
    """What :func:`execute_delete` would remove.

    Attributes
    ----------
    target : Target
    description : str
        One line naming the target.
    counts : Mapping[str, int]
        Rows per table, in :data:`TABLE_ORDER` (zeros included).
    observation_ids, object_ids, datasource_ids, exposure_ids : tuple of int
        The rows the deletion starts from (exposures: those losing their last image).
    items : tuple of str
        A few lines describing the top-level rows (at most 20).
    notes : tuple of str
        Side effects that are not deletions (links set to NULL, dangling references).
    """

    target: Target
    description: str
    counts: Mapping[str, int]
    observation_ids: tuple[int, ...] = ()
    object_ids: tuple[int, ...] = ()
    datasource_ids: tuple[int, ...] = ()
    exposure_ids: tuple[int, ...] = ()
    items: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        """Rows removed over all tables."""
        return sum(self.counts.values())

    @property
    def empty(self) -> bool:
        """True when nothing would be removed."""
        return self.total == 0


def _lc_where(keys: dict[str, list[int]]) -> tuple[str, list]:
    if keys["objects"]:
        return "object_id = ANY(%s)", [keys["objects"]]
    if keys["datasources"]:
        return "datasource_id = ANY(%s)", [keys["datasources"]]
    return "observation_id = ANY(%s)", [keys["obs"]]


def _exposures(cur: psycopg.Cursor, obs: list[int]) -> list[int]:
    """Exposures every one of whose images is in ``obs``."""
    if not obs:
        return []
    return ids_of(
        cur,
        "SELECT galexposure_id FROM galimages GROUP BY galexposure_id"
        " HAVING bool_and(id = ANY(%s)) AND bool_or(id = ANY(%s)) ORDER BY 1",
        [obs, obs],
    )


def _count(cur: psycopg.Cursor, query: str, params) -> int:
    return int(cur.execute(query, params).fetchone()[0])


def _counts(cur: psycopg.Cursor, keys: dict[str, list[int]], exps: list[int]) -> dict[str, int]:
    where, p = _lc_where(keys)
    obs = keys["obs"]
    c = dict.fromkeys(TABLE_ORDER, 0)
    c["metadata_lc_json"] = _count(
        cur,
        f"SELECT count(*) FROM metadata_lc_json WHERE lightcurve_id IN"
        f" (SELECT id FROM lightcurves WHERE {where})",
        p,
    )
    c["lightcurves"] = _count(cur, f"SELECT count(*) FROM lightcurves WHERE {where}", p)
    if obs:
        for table, col in (
            ("metadata_obs_json", "observation_id"),
            ("galvarobjs", "galimage_id"),
            ("galsources", "galimage_id"),
            ("galimages", "id"),
            ("observations", "id"),
        ):
            c[table] = _count(cur, f"SELECT count(*) FROM {table} WHERE {col} = ANY(%s)", [obs])
    if exps:
        c["galrefsets"] = _count(
            cur, "SELECT count(*) FROM galrefsets WHERE primary_exposure_id = ANY(%s)", [exps]
        )
        c["galexposures"] = len(exps)
    c["objects"] = len(keys["objects"])
    c["datasources"] = len(keys["datasources"])
    return c


def _items(cur: psycopg.Cursor, keys: dict[str, list[int]]) -> list[str]:
    out = []
    if keys["obs"]:
        rows = cur.execute(
            "SELECT o.id, o.filename, o.dateobs, o.band, g.hdu FROM observations o"
            " LEFT JOIN galimages g ON g.id = o.id WHERE o.id = ANY(%s) ORDER BY o.id LIMIT 20",
            [keys["obs"]],
        ).fetchall()
        for oid, name, when, band, hdu in rows:
            hdu_text = "" if hdu is None else f" [HDU {hdu}]"
            stamp = "no date" if when is None else when.strftime("%Y-%m-%d %H:%M:%S%z")
            out.append(f"observation {oid}: {name}{hdu_text}, {stamp}, band {band or '-'}")
    for oid in keys["objects"]:
        r = find_objects(cur.connection, oid)
        r = r[r["id"] == oid][0]
        names = [str(r[c]) for c in ("gaia_name", "simbad_name", "vsx_name") if r[c]]
        out.append(f"object {oid}: {' / '.join(names) or 'no name'}")
    for did in keys["datasources"]:
        (progid,) = cur.execute("SELECT progid FROM datasources WHERE id = %s", [did]).fetchone()
        out.append(f"data source {did}: {progid}")
    return out


def _notes(cur: psycopg.Cursor, obs: list[int]) -> list[str]:
    if not obs:
        return []
    notes = []
    n = _count(
        cur,
        "SELECT count(*) FROM galimages WHERE reference = ANY(%s) AND NOT id = ANY(%s)",
        [obs, obs],
    )
    if n:
        notes.append(f"{n} other pipeline image(s) lose their reference link (set to NULL)")
    n = _count(
        cur,
        # forced rows carry their reference's position: found through the q3c index
        "SELECT count(*) FROM galsources r JOIN galsources s"
        " ON q3c_ang2ipix(s.ra, s.dec) = q3c_ang2ipix(r.ra, r.dec) AND s.ref_id = r.id"
        " WHERE r.galimage_id = ANY(%s) AND NOT s.galimage_id = ANY(%s)",
        [obs, obs],
    )
    if n:
        notes.append(
            f"{n} forced measurement(s) in other images keep a ref_id to a removed reference source"
        )
    return notes


def _as_target(target: Target | tuple[str, object]) -> Target:
    if isinstance(target, Target):
        return target
    kind, value = target
    if kind not in KINDS:
        raise DeleteError(f"cannot delete a {kind!r}: use one of {', '.join(KINDS)}")
    return Target(kind, str(value))  # type: ignore[arg-type]


def plan_delete(conn: psycopg.Connection, target: Target | tuple[str, object]) -> DeletePlan:
    """Count what deleting ``target`` would remove, table by table; change nothing.

    Parameters
    ----------
    conn : psycopg.Connection
        Any role (the plan only reads).
    target : Target or (kind, value)
        See the module documentation for the four kinds.

    Raises
    ------
    DeleteError
        Unknown id or name, an ambiguous file name or object name, a bad date.

    Examples
    --------
    >>> plan = plan_delete(conn, ("night", "2021-10-22"))          # doctest: +SKIP
    >>> dict(plan.counts)["observations"]                           # doctest: +SKIP
    12
    """
    target = _as_target(target)
    with conn.transaction(), conn.cursor() as cur:
        what, keys = resolve_target(cur, target)
        exps = _exposures(cur, keys["obs"])
        return DeletePlan(
            target=target,
            description=what,
            counts=_counts(cur, keys, exps),
            observation_ids=tuple(keys["obs"]),
            object_ids=tuple(keys["objects"]),
            datasource_ids=tuple(keys["datasources"]),
            exposure_ids=tuple(exps),
            items=tuple(_items(cur, keys)),
            notes=tuple(_notes(cur, keys["obs"])),
        )


def _lock(cur: psycopg.Cursor, keys: dict[str, list[int]], exps: list[int]) -> None:
    for table, ids in (
        ("galexposures", exps),
        ("observations", keys["obs"]),
        ("objects", keys["objects"]),
        ("datasources", keys["datasources"]),
    ):
        if ids:
            cur.execute(f"SELECT id FROM {table} WHERE id = ANY(%s) ORDER BY id FOR UPDATE", [ids])
    where, p = _lc_where(keys)
    cur.execute(f"SELECT id FROM lightcurves WHERE {where} ORDER BY id FOR UPDATE", p)


def execute_delete(conn: psycopg.Connection, plan: DeletePlan) -> dict[str, int]:
    """Remove what ``plan`` lists, in one transaction, or nothing at all.

    Inside the transaction the target is resolved again, its rows are locked
    (``SELECT ... FOR UPDATE``, which also blocks new light-curve points
    referring to them) and counted; if anything differs from the plan the
    transaction is rolled back and :class:`DeleteError` raised.

    Parameters
    ----------
    conn : psycopg.Connection
        A writer connection. Committed on success (a savepoint when the caller
        has a transaction open).
    plan : DeletePlan
        From :func:`plan_delete`.

    Returns
    -------
    dict
        Rows removed per table (equal to ``plan.counts``).
    """
    with conn.transaction(), conn.cursor() as cur:
        _, keys = resolve_target(cur, plan.target)
        exps = _exposures(cur, keys["obs"])
        _lock(cur, keys, exps)
        exps = _exposures(cur, keys["obs"])
        now = _counts(cur, keys, exps)
        same_rows = (
            tuple(keys["obs"]),
            tuple(keys["objects"]),
            tuple(keys["datasources"]),
            tuple(exps),
        ) == (plan.observation_ids, plan.object_ids, plan.datasource_ids, plan.exposure_ids)
        if not same_rows or now != dict(plan.counts):
            changed = [t for t in TABLE_ORDER if now[t] != plan.counts.get(t, 0)]
            raise DeleteError(
                f"{plan.description} changed since the plan was made "
                f"({', '.join(changed) or 'different rows'}); nothing deleted, "
                "plan again"
            )
        where, p = _lc_where(keys)
        obs = keys["obs"]
        # files keeping some of their images: n_images follows, so ingest can add them back
        partial = ids_of(
            cur,
            "SELECT DISTINCT galexposure_id FROM galimages WHERE id = ANY(%s)"
            " AND NOT galexposure_id = ANY(%s) ORDER BY 1",
            [obs, exps],
        )
        steps = [
            (
                "metadata_lc_json",
                "DELETE FROM metadata_lc_json WHERE lightcurve_id IN"
                f" (SELECT id FROM lightcurves WHERE {where})",
                p,
            ),
            ("lightcurves", f"DELETE FROM lightcurves WHERE {where}", p),
            (
                "metadata_obs_json",
                "DELETE FROM metadata_obs_json WHERE observation_id = ANY(%s)",
                [obs],
            ),
            ("galvarobjs", "DELETE FROM galvarobjs WHERE galimage_id = ANY(%s)", [obs]),
            ("galsources", "DELETE FROM galsources WHERE galimage_id = ANY(%s)", [obs]),
            # the galimages trigger removes the matching observations rows itself
            ("galimages", "DELETE FROM galimages WHERE id = ANY(%s)", [obs]),
            ("observations", "DELETE FROM observations WHERE id = ANY(%s)", [obs]),
            # galrefsets go with their primary exposure (ON DELETE CASCADE)
            ("galexposures", "DELETE FROM galexposures WHERE id = ANY(%s)", [exps]),
            ("objects", "DELETE FROM objects WHERE id = ANY(%s)", [keys["objects"]]),
            ("datasources", "DELETE FROM datasources WHERE id = ANY(%s)", [keys["datasources"]]),
        ]
        for table, stmt, params in steps:
            cur.execute(stmt, params)
            if table not in ("observations",) and cur.rowcount != now[table]:
                raise DeleteError(
                    f"deleting from {table} removed {cur.rowcount} rows, "
                    f"{now[table]} planned; rolled back"
                )
        cur.execute(
            "UPDATE galexposures e SET n_images = (SELECT count(*) FROM galimages g"
            " WHERE g.galexposure_id = e.id) WHERE e.id = ANY(%s)",
            [partial],
        )
        left = _count(cur, "SELECT count(*) FROM observations WHERE id = ANY(%s)", [obs])
        left += _count(
            cur, "SELECT count(*) FROM galrefsets WHERE primary_exposure_id = ANY(%s)", [exps]
        )
        if left:
            raise DeleteError(f"{left} planned row(s) survived the deletion; rolled back")
    return now
