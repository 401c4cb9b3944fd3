"""Run the crowded-field pipeline over everything not yet processed.

References first (per filter and chip, from the active reference sets, see
:mod:`photdb.survey.references`), then every search image whose status is ``new``.
Each image is one transaction: its galsources rows (binary COPY), its
galvarobjs rows and the galimages audit row with ``status = 'done'`` commit
together or not at all. A failure rolls the image back and marks it
``failed`` with a one-line reason in a separate transaction; the run goes on.
Re-running finds nothing to do. Images run in parallel in a process pool
(``jobs``); the settings and pipeline configuration travel with every task, and
each worker process keeps one connection.
"""

from __future__ import annotations

import functools
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from astropy.table import Table

import photdb
from photdb.db.connection import connect, resolve
from photdb.errors import PhotdbError
from photdb.pipeline import (
    PipelineConfig,
    ReferenceResult,
    SearchResult,
    read_chip,
    reduce_reference,
    reduce_reference_set,
    reduce_search,
)
from photdb.settings import Settings
from photdb.survey import store
from photdb.survey.plan import RefTask, SearchTask, plan, plan_references, plan_searches
from photdb.survey.store import ImageAudit

__all__ = [
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
    """

    after_copy: Callable[[int], None] | None = None


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one image."""

    galimage_id: int
    kind: str
    status: str  # done | failed | skipped
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

#: One writer connection per worker process and database (reused across its images).
_CONNECTIONS: dict[str, psycopg.Connection] = {}


def _connection(settings: Settings) -> psycopg.Connection:
    key = settings.describe("writer")
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
    missing = {"ra", "dec"} - set(table.colnames)
    if missing:
        raise PhotdbError(f"{path}: astrometric catalogue lacks {', '.join(sorted(missing))}")
    return table


def _wcs_text(wcs: Any) -> str | None:
    return None if wcs is None else wcs.to_header(relax=True).tostring(sep="\n", padding=False)


def _saveable(cat: Table) -> np.ndarray:
    flux = np.asarray(cat["flux"], float)
    ok = np.isfinite(flux) & (flux > 0)
    for c in ("ra", "dec", "mag"):
        ok &= np.isfinite(np.asarray(cat[c], float))
    return ok


def _reference_audit(
    res: ReferenceResult, task: RefTask, n_saved: int, timings: dict
) -> ImageAudit:
    st = res.stats
    details = st.to_dict() | {"role": f"reference-{task.kind}", "timings_s": timings,
                              "members": [m[0] for m in task.members]}  # fmt: skip
    return ImageAudit(
        status="done", processed_at=datetime.now(UTC), provenance_id=st.provenance_id,
        code_version=st.version, zp=st.zp, seeing_fwhm_arcsec=st.seeing_fwhm_arcsec,
        sky_level=st.sky_level, n_detected=st.n_detected, n_saved=n_saved, n_forced=0,
        n_variables=0, wcs_header=_wcs_text(res.wcs), details=details,
    )  # fmt: skip


def _search_audit(res: SearchResult, task: SearchTask, n_saved: int, n_var: int,
                  timings: dict) -> ImageAudit:  # fmt: skip
    st, cal, ast = res.stats, res.calibration, res.astrometry
    details = st.to_dict() | {"role": "search", "timings_s": timings,
                              "calibration": cal.to_dict()}  # fmt: skip
    return ImageAudit(
        status="done", processed_at=datetime.now(UTC), provenance_id=st.provenance_id,
        code_version=st.version, reference=task.reference_id, zp=cal.zp,
        zp_scatter=cal.zp_scatter, cheb_coeffs=np.asarray(cal.cheb_coeffs, float).tolist(),
        chi2nu=cal.chi2nu_before, error_factor=cal.error_factor,
        astrom_rms_arcsec=ast.rms_arcsec, astrom_nmatch=int(ast.n_matched),
        seeing_fwhm_arcsec=st.seeing_fwhm_arcsec, sky_level=st.sky_level,
        n_detected=st.n_detected, n_forced=st.n_forced, n_saved=n_saved, n_variables=n_var,
        wcs_header=_wcs_text(res.wcs), details=details,
    )  # fmt: skip


def run_reference(
    task: RefTask, settings: Settings, config: PipelineConfig, hooks: Hooks = Hooks()
) -> ImageOutcome:
    """Reduce one reference chip and store its catalogue (one transaction)."""
    t0 = time.perf_counter()
    conn = _connection(settings)
    try:
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
            store.insert_provenance(cur, res.stats.provenance_id, config.to_dict(),
                                    photdb.__version__)  # fmt: skip
            store.write_sources(cur, task.galimage_id, cat)
            if hooks.after_copy is not None:
                hooks.after_copy(task.galimage_id)
            timings = dict(res.stats.timings_s)
            timings |= {"read": round(t_read, 4), "db": round(time.perf_counter() - t_db, 4)}
            audit = _reference_audit(res, task, len(cat), timings)
            store.update_image(cur, task.galimage_id, audit)
            for mid, _, _ in task.members:
                store.update_image(cur, mid, ImageAudit(
                    status="done", processed_at=audit.processed_at,
                    provenance_id=audit.provenance_id, code_version=audit.code_version,
                    reference=task.galimage_id, n_saved=0,
                    details={"role": f"reference-member-{task.kind}",
                             "primary": task.galimage_id},
                ))  # fmt: skip
        return ImageOutcome(task.galimage_id, "reference", "done", "", time.perf_counter() - t0,
                            len(cat), 0, timings)  # fmt: skip
    except Exception as exc:  # one image's failure never stops the run
        return _fail(conn, task.galimage_id, "reference", exc, t0)


def run_search(
    task: SearchTask, settings: Settings, config: PipelineConfig, hooks: Hooks = Hooks()
) -> ImageOutcome:
    """Force one search chip at its reference catalogue and store it (one transaction)."""
    t0 = time.perf_counter()
    conn = _connection(settings)
    try:
        if store.image_status(conn, task.reference_id) != "done":
            raise RuntimeError(f"reference image {task.reference_id} is not processed")
        ref = store.fetch_reference_table(conn, task.reference_id)
        if len(ref) == 0:
            raise RuntimeError(f"reference image {task.reference_id} has an empty catalogue")
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
            store.insert_provenance(cur, res.stats.provenance_id, config.to_dict(),
                                    photdb.__version__)  # fmt: skip
            ids = store.write_sources(cur, task.galimage_id, cat[keep], ref_ids=ref_ids[keep])
            if hooks.after_copy is not None:
                hooks.after_copy(task.galimage_id)
            full = np.full(len(cat), -1, np.int64)
            full[keep] = ids
            nvar = store.write_variables(
                cur, task.galimage_id, full[is_var], ref_ids[is_var], dmag[is_var],
                np.asarray(cat["significance"], float)[is_var],
            )  # fmt: skip
            timings = dict(res.stats.timings_s)
            timings |= {"read": round(t_read, 4), "db": round(time.perf_counter() - t_db, 4)}
            audit = _search_audit(res, task, int(keep.sum()), nvar, timings)
            store.update_image(cur, task.galimage_id, audit)
        return ImageOutcome(task.galimage_id, "search", "done", "", time.perf_counter() - t0,
                            int(keep.sum()), nvar, timings)  # fmt: skip
    except Exception as exc:  # one image's failure never stops the run
        return _fail(conn, task.galimage_id, "search", exc, t0)


def _fail(conn: psycopg.Connection, gid: int, kind: str, exc: Exception, t0: float):
    reason = f"{type(exc).__name__}: {exc}"
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        store.mark_failed(conn, gid, reason)
    except psycopg.Error as db_exc:
        reason += f" (and could not record the failure: {db_exc})"
    return ImageOutcome(gid, kind, "failed", " ".join(reason.split()), time.perf_counter() - t0)


# ----------------------------------------------------------------------------- driver


def _run(
    tasks: list,
    fn: Callable,
    jobs: int,
    settings: Settings,
    config: PipelineConfig,
    hooks: Hooks,
    progress: Callable[[ImageOutcome], None] | None,
) -> list[ImageOutcome]:
    out: list[ImageOutcome] = []
    if not tasks:
        return out
    if jobs <= 1 or len(tasks) == 1:
        try:
            for t in tasks:
                o = fn(t, settings, config, hooks)
                out.append(o)
                if progress:
                    progress(o)
        finally:
            _close_connections()
        return out
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx) as pool:
        futures = {pool.submit(fn, t, settings, config, hooks): t for t in tasks}
        for fut in as_completed(futures):
            try:
                o = fut.result()
            except Exception as exc:  # a worker died (killed, out of memory)
                t = futures[fut]
                o = ImageOutcome(t.galimage_id, fn.__name__, "failed", f"worker died: {exc}")
            out.append(o)
            if progress:
                progress(o)
    return out


def process(
    settings: Settings | None = None,
    *,
    filter: str | None = None,
    jobs: int = 1,
    config: PipelineConfig | None = None,
    retry_failed: bool = False,
    progress: Callable[[str, int], None] | None = None,
    on_image: Callable[[ImageOutcome], None] | None = None,
    hooks: Hooks = Hooks(),
) -> ProcessReport:
    """Process references, then search images, that are not done yet.

    Parameters
    ----------
    settings : photdb.settings.Settings, optional
        Database (default: environment / embedded).
    filter : str, optional
        Only this filter.
    jobs : int
        Worker processes (1: in this process).
    config : photdb.pipeline.PipelineConfig, optional
        Pipeline settings (default: the documented defaults).
    retry_failed : bool
        Also retry images marked ``failed``.
    progress : callable, optional
        ``progress(stage, n_tasks)`` when a stage ("references", "search") starts.
    on_image : callable, optional
        Called with each :class:`ImageOutcome` as it finishes.
    hooks : Hooks
        Test hooks run inside each image's transaction (picklable with ``jobs > 1``).

    Returns
    -------
    ProcessReport
        ``nothing_to_do`` when everything was already processed.
    """
    config = PipelineConfig() if config is None else config
    settings = resolve(settings)
    t0 = time.perf_counter()
    with connect("writer", settings) as conn:
        refs = plan_references(conn, filter=filter, retry_failed=retry_failed)
    if progress:
        progress("references", len(refs))
    outcomes = _run(refs, run_reference, jobs, settings, config, hooks, on_image)
    with connect("writer", settings) as conn:
        searches, waiting = plan_searches(conn, filter=filter, retry_failed=retry_failed)
    if progress:
        progress("search", len(searches))
    outcomes += _run(searches, run_search, jobs, settings, config, hooks, on_image)
    return ProcessReport(tuple(outcomes), time.perf_counter() - t0, tuple(waiting))
