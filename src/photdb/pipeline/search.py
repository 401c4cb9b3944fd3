"""A search image: forced photometry at the reference positions, calibrated to the reference.

Follows the pipeline notebook: the same preparation as a reference; crowdsource
detection used only for calibration; WCS refined against the reference catalogue;
forced crowdsource photometry at every reference position; an additive flux
pedestal c(x, y) removed; zero point + 4th-order Chebyshev Δmag(x, y) correction;
0.01 mag floor then the χ²/ν factor (and photdb's per-magnitude and blending
terms); significance against the reference and the 15σ variable flag.
No I/O, no SQL.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from photdb.astrometry import refine_wcs
from photdb.calibration import calibrate_search_catalog, fit_zero_point
from photdb.fitting import MAG_PER_FLUX_FRACTION, flux_to_mag
from photdb.image import Image
from photdb.newsources import find_new_sources, flux_significance
from photdb.pedestal import PedestalFit, fit_flux_pedestal
from photdb.photometry import measure_forced
from photdb.pipeline.config import PipelineConfig
from photdb.pipeline.prepare import (
    PreparedImage,
    Timer,
    column,
    fit_reference,
    image_stats,
    prepared,
)
from photdb.pipeline.results import SearchResult, SearchStats
from photdb.propermotion import epoch_of_header, positions_at_epoch
from photdb.variability import detect_variables

__all__ = ["reduce_search"]


def reduce_search(
    image: Image | PreparedImage,
    reference: Table,
    *,
    config: PipelineConfig = PipelineConfig(),
) -> SearchResult:
    """Forced photometry of a search image at the reference positions, calibrated to it.

    Parameters
    ----------
    image : photdb.image.Image or PreparedImage
        Search image (ADU, sky not subtracted), header WCS good to ~arcsec.
    reference : astropy.table.Table
        Reference catalogue of the same filter with at least ``ra, dec, mag, magerr``
        (e.g. ``ReferenceResult.catalog``, or the stored catalogue); with ``pmra``,
        ``pmdec``, ``pm_epoch_mjd`` (:func:`photdb.propermotion.attach_proper_motions`)
        its positions are moved to this image's epoch first; ``qf``,
        ``fracflux`` and ``flags`` are used, when present, to choose the
        calibration stars.
    config : PipelineConfig

    Returns
    -------
    SearchResult

    Raises
    ------
    RuntimeError, ValueError
        Too few astrometric matches or calibration stars.
    """
    timer = Timer()
    cfg = config
    prep = prepared(image, cfg, timer, calibration_only=True)
    image, det, psf = prep.image, prep.detections, prep.psf
    # reference positions at this image's epoch (when the reference carries proper motions)
    ref_ra, ref_dec = positions_at_epoch(reference, epoch_of_header(image.header))
    ref_mag, ref_err = column(reference, "mag"), column(reference, "magerr")
    measured = np.flatnonzero(np.isfinite(ref_mag))  # added new sources may have no mag
    with timer("astrometry"):
        sol = refine_wcs(
            image.wcs, column(det, "x"), column(det, "y"), ref_ra[measured], ref_dec[measured],
            mag=column(det, "mag_inst"), ref_mag=ref_mag[measured], config=cfg.astrometry,
        )  # fmt: skip
        zp_approx, zp_scatter, _ = fit_zero_point(
            column(det, "mag_inst")[sol.matched_det],
            ref_mag[measured][sol.matched_ref],
            clip_sigma=cfg.calibration.clip_sigma,
        )
    with timer("forced"):
        xr, yr = sol.wcs.all_world2pix(ref_ra, ref_dec, 0)
        rows = np.flatnonzero(_on_chip(xr, yr, prep.data.shape, cfg.selection.forced_edge_pix))
        forced, model = measure_forced(
            prep.data, xr[rows], yr[rows], variance=prep.variance, mask=prep.mask, psf=psf,
            config=cfg.photometry, return_model=True,
        )  # fmt: skip
        forced["x"], forced["y"] = xr[rows], yr[rows]
    cands, trails = None, []
    if cfg.newsources.enabled:
        with timer("newsources"):
            cands, trails = find_new_sources(
                prep.data, forced, variance=prep.variance, mask=prep.mask, psf=psf,
                fwhm_pix=_fwhm(prep, cfg), photometry=cfg.photometry, config=cfg.newsources,
                model=model,
            )  # fmt: skip
    del model
    with timer("calibration"):
        fit_ref = fit_reference(reference[rows], forced, cfg.selection)
        ped = None
        if cfg.selection.fit_pedestal:
            ped = _fit_pedestal(forced, fit_ref, zp_approx, prep.data.shape, cfg)
            if ped is not None:
                _subtract_pedestal(forced, ped.surface(column(forced, "x"), column(forced, "y")))
        cal, calres = calibrate_search_catalog(
            forced,
            fit_ref,
            shape=prep.data.shape,
            config=cfg.calibration,
            scale_ref=Table({"mag": ref_mag[rows], "magerr": ref_err[rows]}),
        )
    with timer("variability"):
        is_var, signif = detect_variables(
            column(cal, "mag"), column(cal, "magerr"), ref_mag[rows], ref_err[rows],
            config=cfg.variability,
        )  # fmt: skip
        added = np.zeros(len(rows), bool)
        if "ref_flux" in reference.colnames:  # added sources: compared in flux
            added = np.isfinite(column(reference, "ref_flux")[rows])
            sig_added = _added_significance(cal, calres, reference, rows, cfg)
            signif = np.where(added, sig_added, signif)
            is_var = np.where(added, np.abs(np.nan_to_num(sig_added)) >= cfg.variability.nsigma,
                              is_var)  # fmt: skip
        near_edge = _near_edge(xr[rows], yr[rows], prep.data.shape, reference, rows, cfg)
        is_var &= ~near_edge
        catalog = _search_table(cal, rows, ref_ra, ref_dec, ref_mag, ref_err, is_var, signif)
        catalog["added"] = added
        new_sources = _new_source_table(cands, sol.wcs, calres)
    stats = SearchStats(
        **image_stats(prep, cfg),
        n_forced=len(catalog),
        n_positive=int(np.count_nonzero(column(catalog, "flux") > 0)),
        n_variables=int(np.count_nonzero(is_var)),
        n_near_edge=int(np.count_nonzero(near_edge)),
        astrom_rms_arcsec=sol.rms_arcsec,
        astrom_rms_pix=sol.rms_pix,
        astrom_n_matched=sol.n_matched,
        astrom_offset_arcsec=tuple(sol.offset_arcsec),
        zp_approx=zp_approx,
        zp_approx_scatter=zp_scatter,
        pedestal_adu=ped.mean_adu if ped is not None else 0.0,
        pedestal_coeffs=ped.surface.to_list() if ped is not None else None,
        zp=calres.zp,
        chi2nu_before=calres.chi2nu_before,
        error_factor=calres.error_factor,
        calib_n_fit=calres.n_fit,
        calib_residual_rms_mag=calres.residual_rms_mag,
        calib_order=calres.order,
        calib_surface_err_mag=calres.surface_err_mag,
        n_new_candidates=len(new_sources),
        trails=tuple(trails),
        timings_s=timer.as_dict(),
    )
    return SearchResult(catalog, sol.wcs, calres, sol, stats, new_sources)


def _fwhm(prep: PreparedImage, cfg: PipelineConfig) -> float:
    fwhm = prep.fwhm_pix
    return float(fwhm) if np.isfinite(fwhm) else cfg.photometry.fwhm_default


def _calibrated_scale(calres, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Factor from ADU to calibrated flux (``10**(-0.4 mag)``) at pixel positions."""
    return 10.0 ** (-0.4 * (calres.zp + calres.surface()(x, y)))


def _added_significance(cal: Table, calres, reference: Table, rows, cfg) -> np.ndarray:
    """Significance of added sources in calibrated flux (their reference may be ~0)."""
    k = _calibrated_scale(calres, column(cal, "x"), column(cal, "y"))
    return flux_significance(
        column(cal, "flux") * k, column(cal, "dflux") * k * calres.error_factor,
        column(reference, "ref_flux")[rows], column(reference, "ref_dflux")[rows],
        floor_mag=cfg.calibration.error_floor_mag,
    )  # fmt: skip


def _new_source_table(cands: Table | None, wcs, calres) -> Table:
    """Candidates with sky positions and calibrated magnitudes (flux > 0 by selection)."""
    names = ("x", "y", "ra", "dec", "flux", "dflux", "mag", "magerr", "snr", "sharpness")
    if cands is None or len(cands) == 0:
        return Table({n: np.zeros(0) for n in names})
    x, y = column(cands, "x"), column(cands, "y")
    ra, dec = wcs.all_pix2world(x, y, 0)
    flux, dflux = column(cands, "flux"), column(cands, "dflux")
    k = _calibrated_scale(calres, x, y)
    out = Table({"x": x, "y": y, "ra": ra, "dec": dec, "flux": flux, "dflux": dflux})
    out["mag"] = -2.5 * np.log10(flux * k)
    out["magerr"] = MAG_PER_FLUX_FRACTION * dflux / flux * calres.error_factor
    out["snr"], out["sharpness"] = column(cands, "snr"), column(cands, "sharpness")
    for n, u in zip(names[:8], ("pix", "pix", "deg", "deg", "adu", "adu", "mag", "mag"),
                    strict=True):  # fmt: skip
        out[n].unit = u
    return out


def _near_edge(
    x: np.ndarray,
    y: np.ndarray,
    shape: tuple[int, int],
    reference: Table,
    rows: np.ndarray,
    cfg: PipelineConfig,
) -> np.ndarray:
    """Forced positions too close to the search chip's or the reference footprint's edge.

    The reference footprint is taken from the reference catalogue's own pixel
    positions (columns ``x``, ``y``, when present): its extent approximates the
    reference chip.
    """
    edge = cfg.selection.variability_edge_pix
    near = ~_on_chip(x, y, shape, edge)
    if {"x", "y"} <= set(reference.colnames) and len(reference):
        xr, yr = column(reference, "x"), column(reference, "y")
        xmax, ymax = np.nanmax(xr), np.nanmax(yr)
        xs, ys = xr[rows], yr[rows]
        near |= (np.minimum(xs, xmax - xs) < edge) | (np.minimum(ys, ymax - ys) < edge)
    return near


def _on_chip(x: np.ndarray, y: np.ndarray, shape: tuple[int, int], edge: float) -> np.ndarray:
    ny, nx = shape
    ok = np.isfinite(x) & np.isfinite(y)
    return ok & (x >= edge) & (x <= nx - 1 - edge) & (y >= edge) & (y <= ny - 1 - edge)


def _fit_pedestal(
    forced: Table, fit_ref: Table, zp: float, shape: tuple[int, int], config: PipelineConfig
) -> PedestalFit | None:
    """Additive flux error (ADU) of the forced fluxes against the reference, c(x, y).

    See :mod:`photdb.pedestal`: ``f = g(x, y) f_ref + c(x, y)`` over the calibration
    stars, ``f_ref`` the reference magnitude on the search image's approximate scale.
    None when there are too few stars (nothing is subtracted then).
    """
    fr = 10.0 ** (-0.4 * (column(fit_ref, "mag") - zp))
    dfr = fr * column(fit_ref, "magerr") / MAG_PER_FLUX_FRACTION
    sel = np.isfinite(fr) & (column(fit_ref, "magerr") <= config.calibration.max_fit_magerr)
    cal = config.calibration
    try:
        return fit_flux_pedestal(
            column(forced, "x")[sel], column(forced, "y")[sel], column(forced, "flux")[sel],
            column(forced, "dflux")[sel], fr[sel], dfr[sel], shape=shape,
            order=config.selection.pedestal_order, gain_order=cal.chebyshev_order,
            floor_frac=cal.error_floor_mag / MAG_PER_FLUX_FRACTION,
            clip_sigma=cal.clip_sigma, max_iter=cal.max_iter, min_stars=cal.min_stars,
        )  # fmt: skip
    except ValueError:
        return None


def _subtract_pedestal(forced: Table, pedestal: np.ndarray) -> None:
    """Remove the pedestal (ADU per star) in place; recompute instrumental magnitudes."""
    flux = column(forced, "flux") - pedestal
    forced["flux"] = flux
    forced["mag_inst"], forced["magerr_inst"] = flux_to_mag(flux, column(forced, "dflux"))


_UNITS = {"x": "pix", "y": "pix", "ra": "deg", "dec": "deg", "flux": "adu", "dflux": "adu",
          "mag": "mag", "magerr": "mag", "magerr_raw": "mag", "mag_inst": "mag",
          "dmag_corr": "mag", "sky": "adu", "ref_mag": "mag", "ref_magerr": "mag"}  # fmt: skip


def _search_table(cal, rows, ref_ra, ref_dec, ref_mag, ref_err, is_var, signif) -> Table:
    out = Table()
    out["ref_row"] = rows.astype(np.int64)
    out["x"], out["y"] = column(cal, "x"), column(cal, "y")
    out["ra"], out["dec"] = ref_ra[rows], ref_dec[rows]
    for name in ("flux", "dflux", "mag", "magerr", "magerr_raw", "mag_inst", "qf", "rchi2",
                 "fracflux", "dmag_corr", "sky"):  # fmt: skip
        out[name] = column(cal, name)
    out["flags"] = np.asarray(cal["flags"], dtype=np.int64)
    out["calib_used"] = np.asarray(cal["calib_used"], dtype=bool)
    out["ref_mag"], out["ref_magerr"] = ref_mag[rows], ref_err[rows]
    out["significance"] = signif
    out["is_variable"] = np.asarray(is_var, dtype=bool)
    for k, u in _UNITS.items():
        out[k].unit = u
    return out
