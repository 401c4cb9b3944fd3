"""New sources in the survey: candidates per image, confirmed, added, forced everywhere.

1. Each search image stores its new-source candidates (:func:`write_candidates`, in the
   image's own transaction): significant residual sources of the forced fit that match
   no reference source (:func:`photdb.newsources.find_new_sources`).
2. After a run (:func:`update_new_sources`), per reference image: candidates of
   different search images within ``match_radius_fwhm`` of each other are one source;
   one seen on at least ``min_images`` images, and brighter than on the reference by
   ``min_brightening_sigma`` on at least ``min_images`` of them each (a faint star the
   reference merely missed is not new, nor made new by one artefact-bright image), is
   measured by forced photometry on the reference image and added to its catalogue as a
   reference ``galsources`` row (``ref_id`` NULL), flagged in ``galnewsources`` with the
   image that found it. Search images processed later force it like any reference
   source.
3. Every search image of that reference already done gets the new source's forced
   measurement and variable detections (one transaction per image).

Concurrency: each reference's promotion and each image's backfill run under a
transaction-level advisory lock per reference image, and re-check what is missing
inside it, so two ``photdb process`` runs at once add a source once and store each
measurement once. A search image that fetched its reference catalogue before a source
was added is caught by the next pass (every run ends with one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import psycopg
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.wcs import WCS
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from photdb.db.connection import connect, resolve
from photdb.db.copy import Column, copy_columns
from photdb.fitting import MAG_PER_FLUX_FRACTION
from photdb.pipeline import PipelineConfig, read_chip, reduce_search
from photdb.settings import Settings
from photdb.survey import bookkeeping as book
from photdb.survey import refstats, store

__all__ = ["NewSourceReport", "added_sources", "update_new_sources", "write_candidates"]

log = logging.getLogger(__name__)

#: First key of the advisory lock (the second is the reference image id).
LOCK_CLASS = 0x6E657753  # "newS"
#: Relative systematic error of the brightening test (flux scales of two images).
_FLUX_SYSTEMATIC = 0.1


@dataclass(frozen=True)
class NewSourceReport:
    """What one pass did.

    Attributes
    ----------
    n_added : int
        Sources added to reference catalogues.
    n_on_reference : int
        Repeated candidates found as bright on the reference (not new; left out).
    n_images : int
        Search images given the added sources' measurements.
    n_rows : int
        ``galsources`` rows written for them.
    failures : tuple of str
        One line per reference or image that could not be handled (the rest went on).
    """

    n_added: int = 0
    n_on_reference: int = 0
    n_images: int = 0
    n_rows: int = 0
    failures: tuple[str, ...] = ()


_CANDIDATE_COLUMNS = {"ra": "float8", "dec": "float8", "x": "float4", "y": "float4",
                      "flux": "float4", "dflux": "float4", "mag": "float4",
                      "magerr": "float4", "snr": "float4", "sharpness": "float4"}  # fmt: skip


def write_candidates(
    cur: psycopg.Cursor, galimage_id: int, reference_id: int, candidates: Table
) -> int:
    """COPY one search image's new-source candidates into ``galcandidates``."""
    n = len(candidates)
    if n == 0:
        return 0
    cols = [Column("galimage_id", "int4", np.full(n, galimage_id, np.int64)),
            Column("reference_id", "int4", np.full(n, reference_id, np.int64))]  # fmt: skip
    for name, typ in _CANDIDATE_COLUMNS.items():
        cols.append(Column(name, typ, np.asarray(candidates[name], float)))
    copy_columns(cur, "galcandidates", cols)
    return n


def added_sources(conn: psycopg.Connection, refsource_ids) -> set[int]:
    """Those of ``refsource_ids`` that are added new sources."""
    ids = [int(i) for i in refsource_ids]
    if not ids:
        return set()
    rows = conn.execute(
        "SELECT refsource_id FROM galnewsources WHERE refsource_id = ANY(%s)", [ids]
    ).fetchall()
    return {int(r[0]) for r in rows}


def _lock(cur: psycopg.Cursor, reference_id: int) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_CLASS, reference_id])


def _tangent(ra: np.ndarray, dec: np.ndarray, dec0: float) -> np.ndarray:
    """Small-field plane coordinates in arcsec."""
    return np.c_[np.asarray(ra) * np.cos(np.radians(dec0)), np.asarray(dec)] * 3600.0


def _references(conn: psycopg.Connection, filter: str | None) -> list[int]:
    rows = conn.execute(
        "SELECT DISTINCT r.id FROM galimages r JOIN galexposures e ON e.id = r.galexposure_id"
        " WHERE (%(f)s::text IS NULL OR e.filter = %(f)s) AND r.status = 'done' AND ("
        " EXISTS (SELECT 1 FROM galcandidates c WHERE c.reference_id = r.id"
        "         AND c.status = 'new')"
        " OR EXISTS (SELECT 1 FROM galnewsources n WHERE n.reference_id = r.id))"
        " ORDER BY r.id",
        {"f": filter},
    ).fetchall()
    return [r[0] for r in rows]


def _reference_forced(conn, reference_id: int, extra: Table, config: PipelineConfig) -> Table:
    """Forced photometry of the reference catalogue plus ``extra`` on the reference image.

    Returns the rows of ``extra``: ``x, y, flux, dflux, mag, magerr, qf, rchi2,
    fracflux, flags`` and the calibrated flux ``cflux, dcflux`` (``10**(-0.4 mag)``).
    """
    ref = store.fetch_reference_table(conn, reference_id)
    n0 = len(ref)
    add = Table({c: np.full(len(extra), -1 if ref[c].dtype.kind == "i" else np.nan,
                            dtype=ref[c].dtype) for c in ref.colnames})  # fmt: skip
    add["flags"] = 0
    add["ra"], add["dec"] = np.asarray(extra["ra"], float), np.asarray(extra["dec"], float)
    both = vstack([ref, add])
    path, hdu = book.image_file(conn, reference_id)
    res = reduce_search(read_chip(path, hdu, config=config), both, config=config)
    cat, cal = res.catalog, res.calibration
    pos = {int(r): k for k, r in enumerate(np.asarray(cat["ref_row"]))}
    out = Table({c: np.full(len(extra), np.nan) for c in
                 ("x", "y", "flux", "dflux", "mag", "magerr", "qf", "rchi2", "fracflux",
                  "cflux", "dcflux")})  # fmt: skip
    out["flags"] = np.zeros(len(extra), np.int64)
    for j in range(len(extra)):
        k = pos.get(n0 + j)
        if k is None:  # off the reference chip
            continue
        for c in ("x", "y", "flux", "dflux", "mag", "magerr", "qf", "rchi2", "fracflux"):
            out[c][j] = float(cat[c][k])
        out["flags"][j] = int(cat["flags"][k])
        scale = 10.0 ** (-0.4 * (cal.zp + float(cal.surface()(out["x"][j], out["y"][j]))))
        out["cflux"][j] = out["flux"][j] * scale
        out["dcflux"][j] = out["dflux"][j] * scale * cal.error_factor
    return out


def _promote(conn: psycopg.Connection, reference_id: int, config: PipelineConfig):
    """Confirm repeated candidates of one reference; add the new ones. Returns (added, on_ref)."""
    ncfg = config.newsources
    with conn.transaction(), conn.cursor() as cur:
        _lock(cur, reference_id)
        rows = cur.execute(
            "SELECT c.id, c.galimage_id, c.ra, c.dec, c.mag, c.magerr,"
            " coalesce(i.seeing_fwhm_arcsec, 1.0) FROM galcandidates c"
            " JOIN galimages i ON i.id = c.galimage_id"
            " WHERE c.reference_id = %s AND c.status = 'new' AND i.status = 'done'"
            " ORDER BY c.id",
            [reference_id],
        ).fetchall()
        if not rows:
            return 0, 0
        cid, gid = (np.array([r[k] for r in rows], np.int64) for k in (0, 1))
        ra, dec, mag, magerr, fwhm = (np.array([r[k] for r in rows], float) for k in range(2, 7))
        radius = ncfg.match_radius_fwhm * float(np.median(fwhm))
        xy = _tangent(ra, dec, float(np.median(dec)))
        # candidates of an already added source join it
        old = cur.execute(
            "SELECT n.refsource_id, s.ra, s.dec FROM galnewsources n"
            " JOIN galsources s ON s.id = n.refsource_id WHERE n.reference_id = %s",
            [reference_id],
        ).fetchall()
        free = np.ones(len(rows), bool)
        if old:
            oxy = _tangent([o[1] for o in old], [o[2] for o in old], float(np.median(dec)))
            d, k = cKDTree(oxy).query(xy)
            hit = d <= radius
            for j in np.flatnonzero(hit):
                cur.execute(
                    "UPDATE galcandidates SET status = 'added', refsource_id = %s WHERE id = %s",
                    [old[k[j]][0], int(cid[j])],
                )
            free &= ~hit
        idx = np.flatnonzero(free)
        if idx.size < 2:
            return 0, 0
        pairs = cKDTree(xy[idx]).query_pairs(radius, output_type="ndarray")
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                           shape=(idx.size, idx.size))  # fmt: skip
        _, label = connected_components(graph, directed=False)
        groups = [idx[label == g] for g in np.unique(label)]
        groups = [g for g in groups if np.unique(gid[g]).size >= ncfg.min_images]
        if not groups:
            return 0, 0
        flux = 10.0 ** (-0.4 * mag)
        dflux = flux * magerr / MAG_PER_FLUX_FRACTION
        w = 1.0 / np.where(dflux > 0, dflux, np.inf) ** 2
        cand = Table()
        cand["ra"] = [float(np.average(ra[g], weights=w[g])) for g in groups]
        cand["dec"] = [float(np.average(dec[g], weights=w[g])) for g in groups]
        mean_f = np.array([np.average(flux[g], weights=w[g]) for g in groups])
        forced = _reference_forced(conn, reference_id, cand, config)
        # new: brighter than on the reference on >= min_images images *each* (a group's
        # mean would let one artefact-bright image carry a faint star the reference shows)
        ref_f, ref_df = np.asarray(forced["cflux"], float), np.asarray(forced["dcflux"], float)
        bright = np.zeros(len(groups), np.int64)
        for j, g in enumerate(groups):
            excess = flux[g] - ref_f[j]
            noise = np.sqrt(dflux[g] ** 2 + ref_df[j] ** 2 + (_FLUX_SYSTEMATIC * flux[g]) ** 2)
            brighter = np.isfinite(excess) & (excess >= ncfg.min_brightening_sigma * noise)
            bright[j] = np.unique(gid[g][brighter]).size
        measured = np.isfinite(ref_f)
        new = measured & (bright >= ncfg.min_images)
        on_ref = measured & ~new
        for j in np.flatnonzero(on_ref):
            cur.execute("UPDATE galcandidates SET status = 'on_reference' WHERE id = ANY(%s)",
                        [cid[groups[j]].tolist()])  # fmt: skip
        keep = np.flatnonzero(new)
        if keep.size == 0:
            return 0, int(on_ref.sum())
        table = forced[keep]
        table["ra"], table["dec"] = cand["ra"][keep], cand["dec"][keep]
        ids = store.write_sources(cur, reference_id, table)
        for j, sid in zip(keep, ids, strict=True):
            g = groups[j]
            first = int(gid[g][np.argmin(cid[g])])
            cur.execute(
                "INSERT INTO galnewsources (refsource_id, reference_id, found_by, n_images,"
                " ref_flux, ref_dflux, mean_mag) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [int(sid), reference_id, first, int(np.unique(gid[g]).size),
                 float(forced["cflux"][j]), float(forced["dcflux"][j]),
                 float(-2.5 * np.log10(mean_f[j])) if mean_f[j] > 0 else None],
            )  # fmt: skip
            cur.execute(
                "UPDATE galcandidates SET status = 'added', refsource_id = %s WHERE id = ANY(%s)",
                [int(sid), cid[g].tolist()],
            )
        return int(keep.size), int(on_ref.sum())


def _missing(conn: psycopg.Connection, reference_id: int, image_id: int | None = None):
    """Done search images of a reference lacking rows of added sources on their chip.

    Returns ``{image_id: [refsource_id, ...]}``.
    """
    added = conn.execute(
        "SELECT n.refsource_id, s.ra, s.dec FROM galnewsources n"
        " JOIN galsources s ON s.id = n.refsource_id WHERE n.reference_id = %s",
        [reference_id],
    ).fetchall()
    if not added:
        return {}
    images = conn.execute(
        "SELECT i.id, i.wcs_header, i.naxis1, i.naxis2,"
        " array(SELECT s.ref_id FROM galsources s WHERE s.galimage_id = i.id"
        "       AND s.ref_id = ANY(%(ids)s))"
        " FROM galimages i WHERE i.reference = %(r)s AND i.status = 'done'"
        " AND i.details->>'role' = 'search' AND (%(i)s::int IS NULL OR i.id = %(i)s)",
        {"r": reference_id, "ids": [a[0] for a in added], "i": image_id},
    ).fetchall()
    out = {}
    ra, dec = np.array([a[1] for a in added]), np.array([a[2] for a in added])
    for gid_, header, nx, ny, have in images:
        if not header:
            continue
        wcs = WCS(fits.Header.fromstring(header, sep="\n"))
        x, y = wcs.all_world2pix(ra, dec, 0)
        on = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (y >= 0)
        on &= (x <= (nx or np.inf) - 1) & (y <= (ny or np.inf) - 1)
        need = [int(a[0]) for a, o in zip(added, on, strict=True) if o and a[0] not in set(have)]
        if need:
            out[int(gid_)] = need
    return out


def _backfill(conn, reference_id: int, image_id: int, config: PipelineConfig) -> int:
    """Force the added sources on one done search image; store what is still missing."""
    ref = store.fetch_reference_table(conn, reference_id)
    path, hdu = book.image_file(conn, image_id)
    res = reduce_search(read_chip(path, hdu, config=config), ref, config=config)
    cat = res.catalog
    rows = np.asarray(cat["ref_row"], np.int64)
    ref_ids = np.asarray(ref["id"], np.int64)[rows]
    with conn.transaction(), conn.cursor() as cur:
        _lock(cur, reference_id)
        need = set(_missing(conn, reference_id, image_id).get(image_id, []))
        flux = np.asarray(cat["flux"], float)
        keep = np.isin(ref_ids, list(need)) & np.isfinite(flux)
        if not keep.any():
            return 0
        ids = store.write_sources(cur, image_id, cat[keep], ref_ids=ref_ids[keep])
        var = np.asarray(cat["is_variable"], bool)[keep]
        dmag = np.asarray(cat["mag"], float) - np.asarray(ref["mag"], float)[rows]
        nvar = store.write_variables(cur, image_id, ids[var], ref_ids[keep][var],
                                     dmag[keep][var],
                                     np.asarray(cat["significance"], float)[keep][var])  # fmt: skip
        refstats.update_for_image(  # the added sources' statistics, this image's points
            cur, image_id, reference_id, ref, rows[keep], np.asarray(cat["mag"], float)[keep],
            np.asarray(cat["magerr"], float)[keep], var,
            np.asarray(cat["significance"], float)[keep],
        )  # fmt: skip
        cur.execute(  # the audit row keeps counting what the image has
            "UPDATE galimages SET n_saved = coalesce(n_saved, 0) + %s,"
            " n_variables = coalesce(n_variables, 0) + %s WHERE id = %s",
            [int(keep.sum()), nvar, image_id],
        )
        return int(keep.sum())


def update_new_sources(
    settings: Settings | None = None,
    config: PipelineConfig | None = None,
    *,
    filter: str | None = None,
) -> NewSourceReport:
    """Confirm candidates, add new sources and force them on every done search image.

    Parameters
    ----------
    settings : photdb.settings.Settings, optional
        Database (default: environment / embedded).
    config : photdb.pipeline.PipelineConfig, optional
        Pipeline settings (``config.newsources``; the forced photometry's).
    filter : str, optional
        Only references of this filter.

    Returns
    -------
    NewSourceReport
    """
    config = PipelineConfig() if config is None else config
    if not config.newsources.enabled:
        return NewSourceReport()
    settings = resolve(settings)
    added = on_ref = n_img = n_rows = 0
    failures: list[str] = []
    with connect("writer", settings) as conn:
        conn.autocommit = True  # explicit transactions only
        for rid in _references(conn, filter):
            try:
                a, o = _promote(conn, rid, config)
                added, on_ref = added + a, on_ref + o
            except Exception as exc:  # one reference's failure never stops the pass
                failures.append(f"reference image {rid}: {type(exc).__name__}: {exc}")
                continue
            for gid_ in sorted(_missing(conn, rid)):
                try:
                    n = _backfill(conn, rid, gid_, config)
                except Exception as exc:
                    failures.append(f"image {gid_}: {type(exc).__name__}: {exc}")
                    continue
                n_img, n_rows = n_img + (n > 0), n_rows + n
    lines = tuple(" ".join(f.split()) for f in failures)
    return NewSourceReport(added, on_ref, n_img, n_rows, lines)
