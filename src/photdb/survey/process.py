"""Run the crowded-field pipeline over everything not yet processed.

References first (per filter and chip, from the active reference sets, see
:mod:`photdb.survey.references`), then every search image whose status is ``new``.
Each image is one transaction: its galsources rows (binary COPY), its
galvarobjs rows and the galimages audit row with ``status = 'done'`` commit
together or not at all. A failure rolls the image back and marks it
``failed`` with a one-line reason in a separate transaction; the run goes on.
Re-running finds nothing to do. Images run in parallel in a process pool
(``jobs``); each worker opens its own connection.
"""

from __future__ import annotations

import importlib
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

import photdb
from photdb.survey import store

__all__ = ["ImageOutcome", "ProcessReport", "plan", "process"]

#: Module providing reduce_reference / reduce_reference_set / reduce_search (tests swap it).
REDUCER = "photdb.pipeline"

#: Test hooks: ``HOOKS["after_copy"](galimage_id)`` runs inside the image transaction.
HOOKS: dict[str, Callable[[int], None] | None] = {"after_copy": None}


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


# ----------------------------------------------------------------------------- planning


def _file(conn: psycopg.Connection, galimage_id: int) -> tuple[str, int]:
    path, fname, hdu = conn.execute(
        "SELECT e.path, e.filename, i.hdu FROM galimages i"
        " JOIN galexposures e ON e.id = i.galexposure_id WHERE i.id = %s",
        [galimage_id],
    ).fetchone()
    return f"{path}/{fname}", int(hdu)


def plan_references(
    conn: psycopg.Connection, *, filter: str | None = None, retry_failed: bool = False
) -> list[RefTask]:
    """Reference chips of the active sets that are not done yet."""
    from photdb.survey.references import active_reference_sets, matching_chip

    states = ("new", "failed") if retry_failed else ("new",)
    tasks = []
    for rs in active_reference_sets(conn, filter=filter):
        chips = conn.execute(
            "SELECT id FROM galimages WHERE galexposure_id = %s AND status = ANY(%s) ORDER BY hdu",
            [rs.primary_exposure_id, list(states)],
        ).fetchall()
        for (gid,) in chips:
            members = []
            for m in rs.member_exposure_ids:
                mid = matching_chip(conn, gid, m)
                if mid is not None:
                    members.append((mid, *_file(conn, mid)))
            tasks.append(RefTask(gid, *_file(conn, gid), rs.kind, tuple(members), rs.filter))
    return tasks


def plan_searches(
    conn: psycopg.Connection, *, filter: str | None = None, retry_failed: bool = False
) -> tuple[list[SearchTask], list[str]]:
    """Search chips to process, and messages for those that must wait for a reference."""
    from photdb.survey.references import active_reference_sets, matching_chip

    states = ("new", "failed") if retry_failed else ("new",)
    sets = {rs.filter: rs for rs in active_reference_sets(conn, filter=filter)}
    rows = conn.execute(
        "SELECT i.id, e.filter FROM galimages i JOIN galexposures e ON e.id = i.galexposure_id"
        " WHERE NOT e.is_reference AND i.status = ANY(%s)"
        " AND (%s::text IS NULL OR e.filter = %s) ORDER BY e.mjd, i.hdu",
        [list(states), filter, filter],
    ).fetchall()
    tasks, waiting = [], []
    for gid, band in rows:
        rs = sets.get(band)
        if rs is None:
            waiting.append(f"image {gid}: no reference for filter {band!r} (photdb reference)")
            continue
        ref = matching_chip(conn, gid, rs.primary_exposure_id)
        if ref is None:
            waiting.append(f"image {gid}: no reference chip covers it")
            continue
        tasks.append(SearchTask(gid, *_file(conn, gid), ref))
    return tasks, waiting


def plan(conn: psycopg.Connection, *, filter: str | None = None) -> dict[str, int]:
    """Counts of what :func:`process` would do now (references, searches, waiting)."""
    refs = plan_references(conn, filter=filter)
    searches, waiting = plan_searches(conn, filter=filter)
    return {"references": len(refs), "searches": len(searches), "waiting": len(waiting)}


# ----------------------------------------------------------------------------- workers

_WORKER: dict[str, Any] = {}


def _init_worker(settings: Any, config: Any) -> None:
    _WORKER.clear()
    _WORKER.update(settings=settings, config=config, conn=None)


def _astrometric_reference(config: Any):
    """The astrometric catalogue of ``config`` (read once per worker), or None."""
    path = getattr(config, "astrometric_catalog", None)
    if not path:
        return None
    if _WORKER.get("astrometric_path") != path:
        from astropy.table import Table

        from photdb.errors import PhotdbError

        try:
            table = Table.read(path)
        except (OSError, ValueError) as exc:
            raise PhotdbError(f"{path}: cannot read the astrometric catalogue: {exc}") from None
        missing = {"ra", "dec"} - set(table.colnames)
        if missing:
            raise PhotdbError(f"{path}: astrometric catalogue lacks {', '.join(sorted(missing))}")
        _WORKER.update(astrometric_path=path, astrometric_table=table)
    return _WORKER["astrometric_table"]


def _conn() -> psycopg.Connection:
    conn = _WORKER.get("conn")
    if conn is None or conn.closed:
        from photdb.db import connect

        conn = connect("writer", _WORKER["settings"])
        conn.autocommit = True  # explicit transactions only
        _WORKER["conn"] = conn
    return conn


def _close_worker() -> None:
    conn = _WORKER.pop("conn", None)
    if conn is not None and not conn.closed:
        conn.close()


def _reducer():
    return importlib.import_module(REDUCER)


def _hook(name: str, galimage_id: int) -> None:
    fn = HOOKS.get(name)
    if fn is not None:
        fn(galimage_id)


def _wcs_text(wcs: Any) -> str | None:
    if wcs is None:
        return None
    return wcs.to_header(relax=True).tostring(sep="\n", padding=False)


def _lock_new(cur: psycopg.Cursor, galimage_id: int) -> bool:
    row = cur.execute(
        "SELECT status FROM galimages WHERE id = %s FOR UPDATE", [galimage_id]
    ).fetchone()
    return row is not None and row[0] != "done"


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _saveable(cat) -> np.ndarray:
    flux = np.asarray(cat["flux"], float)
    ok = np.isfinite(flux) & (flux > 0)
    for c in ("ra", "dec", "mag"):
        ok &= np.isfinite(np.asarray(cat[c], float))
    return ok


def run_reference(task: RefTask) -> ImageOutcome:
    """Reduce one reference chip and store its catalogue (one transaction)."""
    t0 = time.perf_counter()
    conn, config = _conn(), _WORKER["config"]
    try:
        from photdb.survey.references import load_chip

        red = _reducer()
        image = load_chip(task.path, task.hdu, config=config)
        astro = _astrometric_reference(config)
        t_read = time.perf_counter() - t0
        if task.kind == "set" and task.members:
            others = [load_chip(p, h, config=config) for _, p, h in task.members]
            res = red.reduce_reference_set(
                image, others, config=config, band=task.band, astrometric_reference=astro
            )
        else:
            res = red.reduce_reference(
                image, config=config, band=task.band, astrometric_reference=astro
            )
        t_db = time.perf_counter()
        cat = res.catalog[_saveable(res.catalog)]
        stats = dict(res.stats)
        pid = config.provenance_id()
        with conn.transaction(), conn.cursor() as cur:
            if not _lock_new(cur, task.galimage_id):
                return ImageOutcome(task.galimage_id, "reference", "skipped", "already done")
            store.insert_provenance(cur, pid, config.to_dict(), photdb.__version__)
            store.write_sources(cur, task.galimage_id, cat)
            _hook("after_copy", task.galimage_id)
            now = datetime.now(UTC)
            timings = dict(stats.get("timings_s", {}))
            timings |= {"read": round(t_read, 4), "db": round(time.perf_counter() - t_db, 4)}
            stats |= {"role": f"reference-{task.kind}", "timings_s": timings,
                      "members": [m[0] for m in task.members]}  # fmt: skip
            store.update_image(cur, task.galimage_id, {
                "status": "done", "failure": None, "reference": None,
                "processed_at": now, "provenance_id": pid, "code_version": photdb.__version__,
                "zp": _num(stats.get("zp")),
                "seeing_fwhm_arcsec": _num(stats.get("seeing_fwhm_arcsec")),
                "sky_level": _num(stats.get("sky_level")), "n_detected": stats.get("n_detected"),
                "n_saved": len(cat), "n_forced": 0, "n_variables": 0,
                "wcs_header": _wcs_text(res.wcs), "details": stats,
            })  # fmt: skip
            for mid, _, _ in task.members:
                store.update_image(cur, mid, {
                    "status": "done", "failure": None, "reference": task.galimage_id,
                    "processed_at": now, "provenance_id": pid,
                    "code_version": photdb.__version__, "n_saved": 0,
                    "details": {"role": f"reference-member-{task.kind}",
                                "primary": task.galimage_id},
                })  # fmt: skip
        return ImageOutcome(task.galimage_id, "reference", "done", "", time.perf_counter() - t0,
                            len(cat), 0, timings)  # fmt: skip
    except Exception as exc:  # one image's failure never stops the run
        return _fail(conn, task.galimage_id, "reference", exc, t0)


def run_search(task: SearchTask) -> ImageOutcome:
    """Force one search chip at its reference catalogue and store it (one transaction)."""
    t0 = time.perf_counter()
    conn, config = _conn(), _WORKER["config"]
    try:
        from photdb.survey.references import load_chip

        status = conn.execute(
            "SELECT status FROM galimages WHERE id = %s", [task.reference_id]
        ).fetchone()
        if status is None or status[0] != "done":
            raise RuntimeError(f"reference image {task.reference_id} is not processed")
        ref = store.fetch_reference_table(conn, task.reference_id)
        if len(ref) == 0:
            raise RuntimeError(f"reference image {task.reference_id} has an empty catalogue")
        image = load_chip(task.path, task.hdu, config=config)
        t_read = time.perf_counter() - t0
        res = _reducer().reduce_search(image, ref, config=config)
        t_db = time.perf_counter()
        cat = res.catalog
        rows = np.asarray(cat["ref_row"], np.int64)
        ref_ids = np.asarray(ref["id"], np.int64)[rows]
        keep = _saveable(cat)
        is_var = np.asarray(cat["is_variable"], bool) & keep
        dmag = np.asarray(cat["mag"], float) - np.asarray(ref["mag"], float)[rows]
        cal, ast, stats = res.calibration, res.astrometry, dict(res.stats)
        pid = config.provenance_id()
        with conn.transaction(), conn.cursor() as cur:
            if not _lock_new(cur, task.galimage_id):
                return ImageOutcome(task.galimage_id, "search", "skipped", "already done")
            store.insert_provenance(cur, pid, config.to_dict(), photdb.__version__)
            ids = store.write_sources(cur, task.galimage_id, cat[keep], ref_ids=ref_ids[keep])
            _hook("after_copy", task.galimage_id)
            full = np.full(len(cat), -1, np.int64)
            full[keep] = ids
            nvar = store.write_variables(
                cur, task.galimage_id, full[is_var], ref_ids[is_var], dmag[is_var],
                np.asarray(cat["significance"], float)[is_var],
            )  # fmt: skip
            timings = dict(stats.get("timings_s", {}))
            timings |= {"read": round(t_read, 4), "db": round(time.perf_counter() - t_db, 4)}
            stats |= {"role": "search", "timings_s": timings,
                      "calibration": cal.to_dict()}  # fmt: skip
            store.update_image(cur, task.galimage_id, {
                "status": "done", "failure": None, "reference": task.reference_id,
                "processed_at": datetime.now(UTC), "provenance_id": pid,
                "code_version": photdb.__version__,
                "zp": _num(cal.zp), "zp_scatter": _num(cal.zp_scatter),
                "cheb_coeffs": np.asarray(cal.cheb_coeffs, float).tolist(),
                "chi2nu": _num(cal.chi2nu_before), "error_factor": _num(cal.error_factor),
                "astrom_rms_arcsec": _num(ast.rms_arcsec), "astrom_nmatch": int(ast.n_matched),
                "seeing_fwhm_arcsec": _num(stats.get("seeing_fwhm_arcsec")),
                "sky_level": _num(stats.get("sky_level")),
                "n_detected": stats.get("n_detected"), "n_forced": len(cat),
                "n_saved": int(keep.sum()), "n_variables": nvar,
                "wcs_header": _wcs_text(res.wcs), "details": stats,
            })  # fmt: skip
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


def _run(tasks: list, fn: Callable, jobs: int, settings: Any, config: Any,
         progress: Callable[[ImageOutcome], None] | None) -> list[ImageOutcome]:  # fmt: skip
    out: list[ImageOutcome] = []
    if not tasks:
        return out
    if jobs <= 1 or len(tasks) == 1:
        _init_worker(settings, config)
        try:
            for t in tasks:
                o = fn(t)
                out.append(o)
                if progress:
                    progress(o)
        finally:
            _close_worker()
        return out
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(tasks)), mp_context=ctx, initializer=_init_worker,
        initargs=(settings, config),
    ) as pool:  # fmt: skip
        futures = {pool.submit(fn, t): t for t in tasks}
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
    settings: Any = None,
    *,
    filter: str | None = None,
    jobs: int = 1,
    config: Any = None,
    retry_failed: bool = False,
    progress: Callable[[str, int], None] | None = None,
    on_image: Callable[[ImageOutcome], None] | None = None,
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

    Returns
    -------
    ProcessReport
        ``nothing_to_do`` when everything was already processed.
    """
    from photdb.db import connect
    from photdb.db.connection import resolve

    if config is None:
        from photdb.pipeline import PipelineConfig

        config = PipelineConfig()
    settings = resolve(settings)
    t0 = time.perf_counter()
    with connect("writer", settings) as conn:
        refs = plan_references(conn, filter=filter, retry_failed=retry_failed)
    if progress:
        progress("references", len(refs))
    outcomes = _run(refs, run_reference, jobs, settings, config, on_image)
    with connect("writer", settings) as conn:
        searches, waiting = plan_searches(conn, filter=filter, retry_failed=retry_failed)
    if progress:
        progress("search", len(searches))
    outcomes += _run(searches, run_search, jobs, settings, config, on_image)
    return ProcessReport(tuple(outcomes), time.perf_counter() - t0, tuple(waiting))
