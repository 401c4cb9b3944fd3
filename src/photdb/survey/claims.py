"""The SQL of claims and leases: the database says who computes which image.

Any number of ``photdb process`` runs, on any number of machines, share one
database. Before an image is computed it is claimed (:func:`claim`): one short
transaction locks its ``galimages`` row with ``FOR UPDATE SKIP LOCKED`` and
writes its ``galclaims`` row (claimant, a random token, a lease expiry,
attempts). While it computes, :class:`Heartbeat` renews the lease from a thread.
The transaction that stores the image first calls :func:`hold`: it locks the
image and checks that the claim is still this one (a claim taken over after
its lease expired cannot store the image a second time), and :func:`finish`
closes the claim in that same transaction. Lock order everywhere: the
``galimages`` row, then the ``galclaims`` row. No algorithm lives here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from photdb.db.connection import connect
from photdb.settings import Settings

__all__ = [
    "Claim",
    "ClaimPolicy",
    "ImageState",
    "Refused",
    "claim",
    "database_now",
    "finish",
    "Heartbeat",
    "hold",
    "image_states",
    "renew",
]

log = logging.getLogger("photdb")


@dataclass(frozen=True)
class ClaimPolicy:
    """How images are claimed (travels with every task).

    Attributes
    ----------
    lease_s : float
        Length of a lease [s] (default 120). The heartbeat renews it every
        ``lease_s / 3``; a worker that dies holds its image at most this long.
    max_attempts : int
        An image whose lease expired this many times (its worker died each
        time, e.g. out of memory) is marked failed instead of claimed again.
    retry_failed : bool
        Images marked ``failed`` may be claimed too.
    since : datetime, optional
        Start of the run (database clock): an image another run finished after
        it is not claimed again, even a failed one with ``retry_failed``.
    """

    lease_s: float = 120.0
    max_attempts: int = 3
    retry_failed: bool = False
    since: datetime | None = None

    @property
    def states(self) -> tuple[str, ...]:
        """The ``galimages.status`` values an image may be claimed in."""
        return ("new", "failed") if self.retry_failed else ("new",)


@dataclass(frozen=True)
class Claim:
    """An image this process may compute and store, until ``token`` is taken over."""

    galimage_id: int
    token: str
    claimant: str
    attempts: int


@dataclass(frozen=True)
class Refused:
    """Why an image was not claimed; ``busy``: someone else holds it now (wait and retry)."""

    galimage_id: int
    reason: str
    busy: bool


def claim(
    conn: psycopg.Connection, galimage_id: int, claimant: str, policy: ClaimPolicy
) -> Claim | Refused:
    """Claim an image for ``claimant`` (its own transaction).

    Refused when the image is locked (``SKIP LOCKED``: someone claims or stores
    it right now), not in ``policy.states``, finished by another run since
    ``policy.since``, or under another claimant's live lease. An image whose
    lease expired ``policy.max_attempts`` times is marked failed.
    """
    with conn.transaction(), conn.cursor() as cur:
        row = cur.execute(
            "SELECT i.status, c.claimant, c.finished_at IS NULL AND c.token IS NOT NULL,"
            " c.lease_until > now(), c.attempts, c.finished_at >= %s"
            " FROM galimages i LEFT JOIN galclaims c ON c.galimage_id = i.id"
            " WHERE i.id = %s FOR UPDATE OF i SKIP LOCKED",
            [policy.since, galimage_id],
        ).fetchone()
        if row is None:
            return Refused(galimage_id, "locked by another claimant", True)
        status, holder, running, live, attempts, recent = row
        if status not in policy.states:
            return Refused(galimage_id, f"already {status}", False)
        if recent:
            return Refused(galimage_id, f"finished by {holder} during this run", False)
        if running and live:
            return Refused(galimage_id, f"claimed by {holder}", True)
        if running and attempts >= policy.max_attempts:
            reason = (f"gave up after {attempts} attempts: each claimant stopped renewing its "
                      "lease (its worker died, out of memory?)")  # fmt: skip
            cur.execute("UPDATE galimages SET status = 'failed', failure = %s,"
                        " processed_at = now() WHERE id = %s", [reason, galimage_id])  # fmt: skip
            cur.execute("UPDATE galclaims SET finished_at = now(), outcome = 'failed'"
                        " WHERE galimage_id = %s", [galimage_id])  # fmt: skip
            return Refused(galimage_id, reason, False)
        token, attempts = cur.execute(
            "INSERT INTO galclaims (galimage_id, token, claimant, lease_until)"
            " VALUES (%(id)s, gen_random_uuid(), %(who)s, now() + make_interval(secs => %(s)s))"
            " ON CONFLICT (galimage_id) DO UPDATE SET token = EXCLUDED.token,"
            " claimant = EXCLUDED.claimant, claimed_at = now(), heartbeat_at = now(),"
            " lease_until = EXCLUDED.lease_until, attempts = galclaims.attempts + 1,"
            " finished_at = NULL, outcome = NULL RETURNING token, attempts",
            {"id": galimage_id, "who": claimant, "s": float(policy.lease_s)},
        ).fetchone()
    return Claim(galimage_id, str(token), claimant, int(attempts))


def renew(conn: psycopg.Connection, c: Claim, lease_s: float) -> bool:
    """Extend the lease of a claim still held; False if it was finished or taken over."""
    cur = conn.execute(
        "UPDATE galclaims SET heartbeat_at = now(), lease_until = now() + make_interval(secs => %s)"
        " WHERE galimage_id = %s AND token = %s AND finished_at IS NULL",
        [float(lease_s), c.galimage_id, c.token],
    )
    return cur.rowcount == 1


def hold(cur: psycopg.Cursor, c: Claim) -> bool:
    """Lock the image and its claim for this transaction; True if the claim is still ours.

    Call first in the transaction that stores or fails the image.
    """
    cur.execute("SELECT 1 FROM galimages WHERE id = %s FOR UPDATE", [c.galimage_id])
    row = cur.execute(
        "SELECT token = %s AND finished_at IS NULL FROM galclaims WHERE galimage_id = %s"
        " FOR UPDATE",
        [c.token, c.galimage_id],
    ).fetchone()
    return bool(row and row[0])


def finish(cur: psycopg.Cursor, c: Claim, outcome: str) -> None:
    """Close a held claim (``done``, ``failed`` or ``released``), in the storing transaction."""
    cur.execute(
        "UPDATE galclaims SET finished_at = now(), heartbeat_at = now(), outcome = %s"
        " WHERE galimage_id = %s AND token = %s",
        [outcome, c.galimage_id, c.token],
    )


class Heartbeat:
    """Renews the lease of a claim every ``lease_s / 3`` from a thread, until :meth:`stop`.

    The thread opens its own connection at its first beat (an image done sooner
    needs none). If the claim was finished or taken over, it stops and sets
    :attr:`lost`; if the database cannot be reached, it stops and the lease
    expires (another claimant then redoes the image).

    Examples
    --------
    >>> beat = Heartbeat(settings, claim, 120.0)  # doctest: +SKIP
    >>> try: compute_and_store()                  # doctest: +SKIP
    ... finally: beat.stop()
    """

    def __init__(self, settings: Settings, claim: Claim, lease_s: float):
        self.claim, self.lease_s, self._settings = claim, float(lease_s), settings
        self._stop, self.lost = threading.Event(), threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"photdb-lease-{claim.galimage_id}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        conn = None
        try:
            while not self._stop.wait(self.lease_s / 3):
                if conn is None:
                    conn = connect("writer", self._settings, autocommit=True)
                if not renew(conn, self.claim, self.lease_s):
                    self.lost.set()
                    return
        except Exception as exc:  # the lease then expires: another claimant redoes the image
            log.warning("image %s: heartbeat stopped: %s", self.claim.galimage_id, exc)
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        """Stop renewing (after the image's transaction has committed or rolled back)."""
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class ImageState:
    """Where an image stands for a run waiting on other claimants."""

    galimage_id: int
    status: str | None  # None: the image is gone
    failure: str | None
    claimant: str | None
    live: bool  # under a running claim whose lease has not expired
    finished_recently: bool  # its claim was finished since policy.since


def image_states(
    conn: psycopg.Connection, ids: Sequence[int], policy: ClaimPolicy
) -> list[ImageState]:
    """The status and claim of each image of ``ids`` (missing ones with status None)."""
    rows = conn.execute(
        "SELECT i.id, i.status, i.failure, c.claimant,"
        " coalesce(c.finished_at IS NULL AND c.lease_until > now(), false),"
        " coalesce(c.finished_at >= %s, false)"
        " FROM galimages i LEFT JOIN galclaims c ON c.galimage_id = i.id WHERE i.id = ANY(%s)",
        [policy.since, list(ids)],
    ).fetchall()
    found = {r[0]: ImageState(*r) for r in rows}
    return [found.get(i, ImageState(i, None, None, None, False, False)) for i in ids]


def database_now(conn: psycopg.Connection) -> datetime:
    """The database clock (leases are measured on it, never on a worker's clock)."""
    return conn.execute("SELECT now()").fetchone()[0]
