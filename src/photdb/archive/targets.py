"""What a deletion starts from: observations, objects or data sources named by the user.

See :mod:`photdb.archive.delete` for the four kinds of target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

import psycopg

from photdb.archive.query import find_objects
from photdb.errors import PhotdbError

__all__ = ["DeleteError", "Kind", "Target", "ids_of", "resolve_target"]

Kind = Literal["observation", "object", "datasource", "night"]
KINDS: tuple[str, ...] = ("observation", "object", "datasource", "night")


class DeleteError(PhotdbError):
    """A target that cannot be resolved, or a database that changed under a plan."""


@dataclass(frozen=True)
class Target:
    """What to delete: ``kind`` (one of :data:`KINDS`) and its ``value``."""

    kind: Kind
    value: str


_NIGHT = """
SELECT o.id FROM observations o
LEFT JOIN telescopes t ON t.id = o.telescope_id
LEFT JOIN observatories s ON s.id = t.observatory_id
WHERE o.dateobs >= (%(d)s::date + time '12:00') AT TIME ZONE 'UTC'
                   - make_interval(secs => coalesce(s.longitude_deg, 0) * 240)
  AND o.dateobs <  (%(d)s::date + time '12:00') AT TIME ZONE 'UTC'
                   - make_interval(secs => coalesce(s.longitude_deg, 0) * 240) + interval '1 day'
ORDER BY o.id
"""


def ids_of(cur: psycopg.Cursor, query: str, params) -> list[int]:
    return [r[0] for r in cur.execute(query, params).fetchall()]


def resolve_target(cur: psycopg.Cursor, target: Target) -> tuple[str, dict[str, list[int]]]:
    kind, value = target.kind, str(target.value).strip()
    keys: dict[str, list[int]] = {"obs": [], "objects": [], "datasources": []}
    if not value:
        raise DeleteError(f"delete {kind}: an empty value")
    if kind == "observation":
        if value.isdigit():
            keys["obs"] = ids_of(cur, "SELECT id FROM observations WHERE id = %s", [int(value)])
            what = f"observation {value}"
        else:
            folder, _, name = value.rpartition("/")
            # the folder is a literal path ending, never a LIKE pattern: % and _ escaped
            tail = re.sub(r"([\\%_])", r"\\\1", "/" + folder.lstrip("/"))
            rows = cur.execute(
                "SELECT id, coalesce(path_to_fits, '') FROM observations WHERE filename = %s"
                " AND (%s = '' OR path_to_fits = %s OR path_to_fits LIKE '%%' || %s)"
                " ORDER BY id",
                [name, folder, folder, tail],
            ).fetchall()
            folders = sorted({r[1] for r in rows})
            if len(folders) > 1:
                raise DeleteError(
                    f"{len(folders)} files are named {name!r} (in {', '.join(folders[:3])}"
                    f"{', ...' if len(folders) > 3 else ''}); give path/filename or an id"
                )
            keys["obs"] = [r[0] for r in rows]
            what = f"observation file {value}"
        if not keys["obs"]:
            raise DeleteError(f"no observation with id or file name {value!r}")
    elif kind == "object":
        found = find_objects(cur.connection, value)
        if len(found) == 0:
            raise DeleteError(f"no object with id or name {value!r}")
        if len(found) > 1:
            raise DeleteError(
                f"{value!r} matches {len(found)} objects "
                f"(ids {', '.join(str(i) for i in found['id'][:10])}); use an id"
            )
        keys["objects"] = [int(found["id"][0])]
        what = f"object {keys['objects'][0]} ({value})"
    elif kind == "datasource":
        keys["datasources"] = ids_of(cur, "SELECT id FROM datasources WHERE progid = %s", [value])
        if not keys["datasources"]:
            keys["datasources"] = ids_of(
                cur, "SELECT id FROM datasources WHERE lower(progid) = lower(%s)", [value]
            )
        if len(keys["datasources"]) != 1:
            raise DeleteError(
                f"no data source with progid {value!r}"
                if not keys["datasources"]
                else f"progid {value!r} is ambiguous without case; spell it exactly"
            )
        what = f"data source {value}"
    elif kind == "night":
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise DeleteError(f"night {value!r}: give the evening's date as YYYY-MM-DD") from None
        keys["obs"] = ids_of(cur, _NIGHT, {"d": day})
        what = f"night of {day.isoformat()} (local noon to noon)"
    else:
        raise DeleteError(f"cannot delete a {kind!r}: use one of {', '.join(KINDS)}")
    return what, keys
