"""What :func:`photdb.survey.process.process` has to do: reference chips, then search chips.

A reference chip is a chip of the primary exposure of an active reference set (with
the matching chips of the set's other members); a search chip is a chip of any other
exposure of a filter with a reference, forced at the reference chip that covers it.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from photdb.survey import bookkeeping as book

__all__ = ["RefTask", "SearchTask", "plan", "plan_references", "plan_searches"]


@dataclass(frozen=True)
class RefTask:
    """A reference chip: the primary's chip and the matching chips of the other members."""

    galimage_id: int
    path: str
    hdu: int
    kind: str
    members: tuple[tuple[int, str, int], ...] = ()
    band: str | None = None


@dataclass(frozen=True)
class SearchTask:
    """A search chip and the reference image whose catalogue it is forced at."""

    galimage_id: int
    path: str
    hdu: int
    reference_id: int


def _states(retry_failed: bool) -> tuple[str, ...]:
    return ("new", "failed") if retry_failed else ("new",)


def plan_references(
    conn: psycopg.Connection, *, filter: str | None = None, retry_failed: bool = False
) -> list[RefTask]:
    """Reference chips of the active sets that are not done yet."""
    tasks = []
    for rs in book.active_reference_sets(conn, filter=filter):
        for gid in book.chips_to_do(conn, rs.primary_exposure_id, _states(retry_failed)):
            members = []
            for m in rs.member_exposure_ids:
                mid = book.matching_chip(conn, gid, m)
                if mid is not None:
                    members.append((mid, *book.image_file(conn, mid)))
            tasks.append(
                RefTask(gid, *book.image_file(conn, gid), rs.kind, tuple(members), rs.filter)
            )
    return tasks


def plan_searches(
    conn: psycopg.Connection, *, filter: str | None = None, retry_failed: bool = False
) -> tuple[list[SearchTask], list[str]]:
    """Search chips to process, and messages for those that must wait for a reference."""
    sets = {rs.filter: rs for rs in book.active_reference_sets(conn, filter=filter)}
    tasks, waiting = [], []
    for gid, band in book.searches_to_do(conn, _states(retry_failed), filter):
        rs = sets.get(band)
        if rs is None:
            waiting.append(f"image {gid}: no reference for filter {band!r} (photdb reference)")
            continue
        ref = book.matching_chip(conn, gid, rs.primary_exposure_id)
        if ref is None:
            waiting.append(f"image {gid}: no reference chip covers it")
            continue
        tasks.append(SearchTask(gid, *book.image_file(conn, gid), ref))
    return tasks, waiting


def plan(conn: psycopg.Connection, *, filter: str | None = None) -> dict[str, int]:
    """Counts of what :func:`process` would do now (references, searches, waiting)."""
    refs = plan_references(conn, filter=filter)
    searches, waiting = plan_searches(conn, filter=filter)
    return {"references": len(refs), "searches": len(searches), "waiting": len(waiting)}
