"""Run the crowded-field pipeline over everything not yet processed.

References first (per filter and chip, from the active reference sets, see
:mod:`photdb.survey.references`), then every search image whose status is ``new``.
Each image is one transaction: its galsources rows (binary COPY), its
galvarobjs rows and the galimages audit row with ``status = 'done'`` commit
together or not at all. A failure rolls the image back and marks it
``failed`` with a one-line reason in a separate transaction; the run goes on.
Re-running finds nothing to do. Images run on Dask (:mod:`photdb.survey.engine`):
here (``jobs=1``), on a local cluster (``jobs > 1``) or on a scheduler's workers.
The database decides who computes what (:mod:`photdb.survey.claims`): an image is
claimed before it is computed and stored only while the claim is still its own,
so concurrent runs on any machines never compute or store an image twice. The
settings, configuration and claim policy travel with every task.
Then new sources seen on several search images are added to the reference
catalogues and forced on every search image already done
(:mod:`photdb.survey.newsources`).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import astropy.units as u
import numpy as np
import psycopg
from astropy.table import Table
from astropy.time import Time

import photdb
from photdb.db.connection import connect, resolve
from photdb.errors import PhotdbError
from photdb.pipeline import (
    PipelineConfig,
    read_chip,
    reduce_reference,
    reduce_reference_set,
    reduce_search,
)
from photdb.propermotion import attach_proper_motions, has_proper_motions, normalise_catalog
from photdb.settings import Settings
from photdb.survey import claims, newsources, refstats, store
from photdb.survey.audit import reference_audit, search_audit
from photdb.survey.claims import Claim, ClaimPolicy, Refused
from photdb.survey.engine import claimant, drive, open_engine
from photdb.survey.plan import RefTask, SearchTask, plan, plan_references, plan_searches
from photdb.survey.store import ImageAudit

__all__ = [
    "ClaimPolicy",
    "Hooks",
    "ImageOutcome",
    "ProcessReport",
    "plan",
    "process",
    "run_reference",
    "run_search",
]


@dataclass(frozen=True)
class Hooks:
    """Callables run at fixed points of an image's transaction (tests inject failures).

    Attributes
    ----------
    after_copy : callable, optional
        ``after_copy(galimage_id)``, inside the image transaction, after its COPY.
    after_claim : callable, optional
        ``after_claim(galimage_id)``, once the image is claimed, before it is computed
        (tests make an image slow, or kill its worker there).
    """

    after_copy: Callable[[int], None] | None = None
    after_claim: Callable[[int], None] | None = None


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one image."""

    galimage_id: int
    kind: str
    status: str  # done | failed | skipped | busy (another claimant holds it: wait)
    message: str = ""
    seconds: float = 0.0
    n_saved: int = 0
    n_variables: int = 0
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ProcessReport:
    """All outcomes of one :func:`process` run."""

    outcomes: tuple[ImageOutcome, ...] = ()
    seconds: float = 0.0
    waiting: tuple[str, ...] = ()
    new_sources: newsources.NewSourceReport = field(default_factory=newsources.NewSourceReport)

    @property
    def failed(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def done(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if o.status == "done"]

    @property
    def nothing_to_do(self) -> bool:
        return not self.outcomes


# ----------------------------------------------------------------------------- one image

#: One writer connection per worker thread and database (reused across its images).
_CONNECTIONS: dict[tuple[str, int], psycopg.Connection] = {}


def _connection(settings: Settings) -> psycopg.Connection:
    key = (settings.describe("writer"), threading.get_ident())
    conn = _CONNECTIONS.get(key)
    if conn is None or conn.closed:
        conn = connect("writer", settings)
        conn.autocommit = True  # explicit transactions only
        _CONNECTIONS[key] = conn
    return conn


def _close_connections() -> None:
    while _CONNECTIONS:
        _, conn = _CONNECTIONS.popitem()
        if not conn.closed:
            conn.close()


@functools.lru_cache(maxsize=4)
def astrometric_catalog(path: str) -> Table:
    """The astrometric catalogue at ``path`` (read once per process)."""
    try:
        table = Table.read(path)
    except (OSError, ValueError) as exc:
        raise PhotdbError(f"{path}: cannot read the astrometric catalogue: {exc}") from None
    try:  # Gaia DR3's columns as the archive delivers them, or plain ra/dec[/mag]
        return normalise_catalog(table)
    except (ValueError, u.UnitsError) as exc:
        raise PhotdbError(f"{path}: {exc}") from None


def _saveable(cat: Table) -> np.ndarray:
    flux = np.asarray(cat["flux"], float)
    ok = np.isfinite(flux) & (flux > 0)
    for c in ("ra", "dec", "mag"):
        ok &= np.isfinite(np.asarray(cat[c], float))
    if "added" in cat.colnames:  # added new sources: every epoch (mag NULL when flux <= 0)
        ok |= np.asarray(cat["added"], bool) & np.isfinite(flux)
    return ok


def _claim(
    conn: psycopg.Connection, gid: int, kind: str, policy: ClaimPolicy
) -> Claim | ImageOutcome:
    try:
        got = claims.claim(conn, gid, claimant(), policy)
    except psycopg.Error as exc:
        return ImageOutcome(gid, kind, "failed", f"cannot claim: {' '.join(str(exc).split())}")
    if isinstance(got, Refused):
        return ImageOutcome(gid, kind, "busy" if got.busy else "skipped", got.reason)
    return got


def run_reference(
    task: RefTask, settings: Settings, config: PipelineConfig, hooks: Hooks = Hooks(),
    policy: ClaimPolicy = ClaimPolicy(),
) -> ImageOutcome:  # fmt: skip
    """Claim one reference chip, reduce it and store its catalogue (one transaction)."""
    t0 = time.perf_counter()
    conn = _connection(settings)
    held = _claim(conn, task.galimage_id, "reference", policy)
    if isinstance(held, ImageOutcome):
        return held
    beat = claims.Heartbeat(settings, held, policy.lease_s)
    try:
        if hooks.after_claim is not None:
            hooks.after_claim(task.galimage_id)
        image = read_chip(task.path, task.hdu, config=config)
        astro = (
            astrometric_catalog(config.astrometric_catalog) if config.astrometric_catalog else None
        )
        t_read = time.perf_counter() - t0
        if task.kind == "set" and task.members:
            others = [read_chip(p, h, config=config) for _, p, h in task.members]
            res = reduce_reference_set(
                image, others, config=config, band=task.band, astrometric_reference=astro
            )
        else:
            res = reduce_reference(
                image, config=config, band=task.band, astrometric_reference=astro
            )
        t_db = time.perf_counter()
        cat = res.catalog[_saveable(res.catalog)]
        with conn.transaction(), conn.cursor() as cur:
            if not store.lock_unfinished(cur, task.galimage_id):
                return ImageOutcome(task.galimage_id, "reference", "skipped", "already done")
            if not claims.hold(cur, held):
                return ImageOutcome(task.galimage_id, "reference", "busy", "claim taken over")
            store.insert_provenance(cur, res.stats.provenance_id, config.to_dict(),
                                    photdb.__version__)  # fmt: skip
            ids = store.write_sources(cur, task.galimage_id, cat)
            if "mag_refs" in cat.colnames:
                images = [task.galimage_id, *(mid for mid, _, _ in task.members)]
                store.write_reference_members(cur, task.galimage_id, ids, images,
                                              cat["mag_refs"], cat["magerr_refs"])  # fmt: skip
            if hooks.after_copy is not None:
                hooks.after_copy(task.galimage_id)
            timings = dict(res.stats.timings_s)
            timings |= {"read": round(t_read, 4), "db": round(time.perf_counter() - t_db, 4)}
            audit = reference_audit(res, task, len(cat), timings)
            store.update_image(cur, task.galimage_id, audit)
            for mid, _, _ in task.members:
                store.update_image(cur, mid, ImageAudit(
                    status="done", processed_at=audit.processed_at,
                    provenance_id=audit.provenance_id, code_version=audit.code_version,
                    reference=task.galimage_id, n_saved=0,
                    details={"role": f"reference-member-{task.kind}",
                             "primary": task.galimage_id},
                ))  # fmt: skip
            claims.finish(cur, held, "done")
        return ImageOutcome(task.galimage_id, "reference", "done", "", time.perf_counter() - t0,
                            len(cat), 0, timings)  # fmt: skip
    except Exception as exc:  # one image's failure never stops the run
        return _fail(conn, held, "reference", exc, t0)
    finally:
        beat.stop()


def run_search(
    task: SearchTask, settings: Settings, config: PipelineConfig, hooks: Hooks = Hooks(),
    policy: ClaimPolicy = ClaimPolicy(),
) -> ImageOutcome:  # fmt: skip
    """Claim one search chip, force it at its reference catalogue and store it (one
    transaction)."""
    t0 = time.perf_counter()
    conn = _connection(settings)
    held = _claim(conn, task.galimage_id, "search", policy)
    if isinstance(held, ImageOutcome):
        return held
    beat = claims.Heartbeat(settings, held, policy.lease_s)
    try:
        if hooks.after_claim is not None:
            hooks.after_claim(task.galimage_id)
        if store.image_status(conn, task.reference_id) != "done":
            raise RuntimeError(f"reference image {task.reference_id} is not processed")
        ref = store.fetch_reference_table(conn, task.reference_id)
        if len(ref) == 0:
            raise RuntimeError(f"reference image {task.reference_id} has an empty catalogue")
        # forced rows are stored at their reference source's position (light curves are a
        # q3c equality lookup, migration 0009); x, y keep where a moving star was fitted
        ref_ra, ref_dec = np.asarray(ref["ra"], float), np.asarray(ref["dec"], float)
        ref = _with_proper_motions(conn, ref, task.reference_id, config)
        image = read_chip(task.path, task.hdu, config=config)
        t_read = time.perf_counter() - t0
        res = reduce_search(image, ref, config=config)
        t_db = time.perf_counter()
        cat = res.catalog
        rows = np.asarray(cat["ref_row"], np.int64)
        ref_ids = np.asarray(ref["id"], np.int64)[rows]
        keep = _saveable(cat)
        is_var = np.asarray(cat["is_variable"], bool) & keep
        dmag = np.asarray(cat["mag"], float) - np.asarray(ref["mag"], float)[rows]
        with conn.transaction(), conn.cursor() as cur:
            if not store.lock_unfinished(cur, task.galimage_id):
                return ImageOutcome(task.galimage_id, "search", "skipped", "already done")
            if not claims.hold(cur, held):
                return ImageOutcome(task.galimage_id, "search", "busy", "claim taken over")
            store.insert_provenance(cur, res.stats.provenance_id, config.to_dict(),
                                    photdb.__version__)  # fmt: skip
            rows_out = cat[keep]
            rows_out["ra"], rows_out["dec"] = ref_ra[rows[keep]], ref_dec[rows[keep]]
            ids = store.write_sources(cur, task.galimage_id, rows_out, ref_ids=ref_ids[keep])
            if hooks.after_copy is not None:
                hooks.after_copy(task.galimage_id)
            full = np.full(len(cat), -1, np.int64)
            full[keep] = ids
            nvar = store.write_variables(
                cur, task.galimage_id, full[is_var], ref_ids[is_var], dmag[is_var],
                np.asarray(cat["significance"], float)[is_var],
            )  # fmt: skip
            refstats.update_for_image(
                cur, task.galimage_id, task.reference_id, ref, rows[keep],
                np.asarray(cat["mag"], float)[keep], np.asarray(cat["magerr"], float)[keep],
                is_var[keep], np.asarray(cat["significance"], float)[keep],
            )  # fmt: skip
            newsources.write_candidates(cur, task.galimage_id, task.reference_id, res.new_sources)
            timings = dict(res.stats.timings_s)
            timings |= {"read": round(t_read, 4), "db": round(time.perf_counter() - t_db, 4)}
            audit = search_audit(res, task, int(keep.sum()), nvar, timings)
            store.update_image(cur, task.galimage_id, audit)
            claims.finish(cur, held, "done")
        return ImageOutcome(task.galimage_id, "search", "done", "", time.perf_counter() - t0,
                            int(keep.sum()), nvar, timings)  # fmt: skip
    except Exception as exc:  # one image's failure never stops the run
        return _fail(conn, held, "search", exc, t0)
    finally:
        beat.stop()


def _with_proper_motions(conn, ref: Table, reference_id: int, config: PipelineConfig) -> Table:
    """The stored reference catalogue with its stars' proper motions from the astrometric
    catalogue (when it has them), so each search image forces them at its own epoch."""
    if not config.astrometric_catalog:
        return ref
    catalog = astrometric_catalog(config.astrometric_catalog)
    mjd = store.image_epoch_mjd(conn, reference_id)
    if mjd is None or not has_proper_motions(catalog):
        return ref
    return attach_proper_motions(ref, catalog, Time(mjd, format="mjd", scale="utc"))


def _fail(conn: psycopg.Connection, held: Claim, kind: str, exc: Exception, t0: float):
    """Mark the image failed with a one-line reason, if the claim is still ours."""
    gid, reason = held.galimage_id, f"{type(exc).__name__}: {exc}"
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        with conn.transaction(), conn.cursor() as cur:
            if not claims.hold(cur, held):
                return ImageOutcome(gid, kind, "busy", "claim taken over")
            store.mark_failed(conn, gid, reason)
            claims.finish(cur, held, "failed")
    except psycopg.Error as db_exc:
        reason += f" (and could not record the failure: {db_exc})"
    return ImageOutcome(gid, kind, "failed", " ".join(reason.split()), time.perf_counter() - t0)


# ----------------------------------------------------------------------------- driver


def _runner(kind: str, out: list[ImageOutcome], on_image: Callable | None) -> Callable:
    """Collect what :func:`photdb.survey.engine.drive` reports about each task."""

    def on_result(task: Any, res: Any) -> None:
        gid = task.galimage_id
        if isinstance(res, claims.ImageState):  # finished by another claimant
            what = "image deleted" if res.status is None else f"{res.status} by {res.claimant}"
            res = ImageOutcome(gid, kind, "skipped", what)
        elif isinstance(res, BaseException):  # its worker kept dying before it could claim
            res = ImageOutcome(gid, kind, "failed", f"worker died: {type(res).__name__}: {res}")
        out.append(res)
        if on_image:
            on_image(res)

    return on_result


def process(
    settings: Settings | None = None,
    *,
    filter: str | None = None,
    jobs: int = 1,
    scheduler: str | None = None,
    config: PipelineConfig | None = None,
    retry_failed: bool = False,
    lease_s: float = 120.0,
    progress: Callable[[str, int], None] | None = None,
    on_image: Callable[[ImageOutcome], None] | None = None,
    hooks: Hooks = Hooks(),
) -> ProcessReport:
    """Process references, then search images, that are not done yet.

    Other runs may process the same database at the same time: each image is
    claimed before it is computed, and a run waits for the images others hold
    (it submits them again if their lease expires) until all are finished.

    Parameters
    ----------
    settings : photdb.settings.Settings, optional
        Database (default: environment / embedded).
    filter : str, optional
        Only this filter.
    jobs : int
        1: in this process; more: a local Dask cluster of that many worker processes.
    scheduler : str, optional
        Address (``tcp://host:8786``) or scheduler file of a running Dask scheduler
        whose workers compute the images (``jobs`` is then ignored).
    config : photdb.pipeline.PipelineConfig, optional
        Pipeline settings (default: the documented defaults).
    retry_failed : bool
        Also retry images marked ``failed``.
    lease_s : float
        Lease of a claim [s]: renewed every third of it while the image computes;
        an image whose worker died is taken over by another when it expires.
    progress : callable, optional
        ``progress(stage, n_tasks)`` when a stage ("references", "search") starts.
    on_image : callable, optional
        Called with each :class:`ImageOutcome` as it finishes.
    hooks : Hooks
        Test hooks run on the worker (picklable by cloudpickle with Dask).

    Returns
    -------
    ProcessReport
        ``nothing_to_do`` when everything was already processed.
    """
    config = PipelineConfig() if config is None else config
    settings = resolve(settings)
    # the workers need the writer's password only (never the admin's)
    task_settings = replace(settings, passwords={"writer": settings.password("writer")})
    t0 = time.perf_counter()
    with connect("writer", settings) as conn:
        refs = plan_references(conn, filter=filter, retry_failed=retry_failed)
        searches, waiting = plan_searches(conn, filter=filter, retry_failed=retry_failed)
        policy = ClaimPolicy(lease_s=lease_s, retry_failed=retry_failed,
                             since=claims.database_now(conn))  # fmt: skip
    outcomes: list[ImageOutcome] = []
    common = {"settings": task_settings, "policy": policy, "config": config, "hooks": hooks}
    try:
        with open_engine(jobs if refs or searches else 1, scheduler) as engine:
            for kind, fn, tasks in (("reference", run_reference, refs),
                                    ("search", run_search, searches)):  # fmt: skip
                if progress:
                    progress("references" if kind == "reference" else kind, len(tasks))
                drive(engine, fn, tasks, on_result=_runner(kind, outcomes, on_image), **common)
    finally:
        _close_connections()
    news = newsources.update_new_sources(settings, config, filter=filter)
    return ProcessReport(tuple(outcomes), time.perf_counter() - t0, tuple(waiting), news)
