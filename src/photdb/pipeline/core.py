"""The crowded-field pipeline for one image: composition of the stages, no database.

Follows the pipeline notebook step by step:

* :func:`reduce_reference` - mask, variance from gain and read noise, Bijaoui sky
  (20 x 10 tiles + smooth surface), crowdsource PSF photometry of every source, an
  approximate zero point (header MAGZERO/MAGZPT or :data:`~photdb.pipeline.config.NOMINAL_ZP`).
* :func:`reduce_search` - the same preparation; crowdsource detection used only for
  calibration; WCS refined against the reference catalogue; forced crowdsource
  photometry at every reference position; zero point + 4th-order Chebyshev Δmag(x, y)
  correction; 0.01 mag floor then the χ²/ν factor; significance against the
  reference and the 15σ variable flag.
* The notebook's main flaw, an artefact on the single reference repeating as a
  "variable" on every search image, is addressed by :func:`reduce_reference_set`
  (several references, each forced at the primary's positions and calibrated to it,
  combined per source with an outlier-rejecting median) and by
  :func:`build_stacked_reference` (aligned, calibrated, outlier-rejected stack).

Every stage's wall time is in ``stats["timings_s"]``.  Nothing here reads or writes
a database; :func:`load_image` is the only I/O (reading one FITS HDU).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from os import PathLike
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

import photdb
from photdb.absolute import flatten_reference
from photdb.astrometry import AstrometrySolution, refine_wcs
from photdb.background import Background, estimate_sky
from photdb.calibration import CalibrationResult, calibrate_search_catalog, fit_zero_point
from photdb.image import Image, MaskBits, build_mask, make_variance, read_image
from photdb.pedestal import PedestalFit, fit_flux_pedestal
from photdb.photometry import estimate_fwhm, measure_forced, measure_sources
from photdb.pipeline.config import NOMINAL_ZP, PipelineConfig, SelectionConfig
from photdb.variability import detect_variables

__all__ = [
    "NOMINAL_ZP",
    "PipelineConfig",
    "ReferenceResult",
    "SearchResult",
    "SelectionConfig",
    "PreparedImage",
    "load_image",
    "prepare_image",
    "reduce_reference",
    "reduce_search",
]

#: Header card marking an :class:`~photdb.image.Image` made by
#: :func:`build_stacked_reference`: its variance is used as given.
STACK_CARD = "PDBSTACK"


@dataclass(frozen=True, eq=False)
class ReferenceResult:
    """A reference catalogue and how it was made.

    Attributes
    ----------
    catalog : astropy.table.Table
        One row per source: ``x, y`` (pix), ``ra, dec`` (deg, header WCS of the
        primary reference), ``flux, dflux`` (ADU), ``mag, magerr`` (calibrated with
        the approximate zero point; combined over references by
        :func:`reduce_reference_set`), ``mag_inst``, ``qf, rchi2, fracflux``,
        ``flags`` (mask bits at the source pixel), ``n_ref`` (references combined),
        plus ``fwhm_pix``, ``sky``, ``magerr_inst``.
    wcs : astropy.wcs.WCS
        WCS of the (primary) reference image.
    stats : dict
        JSON-able: ``seeing_fwhm_arcsec, sky_level, sky_rms, n_detected, zp,
        zp_source, shape, provenance_id, version, timings_s`` (per stage) ...
    """

    catalog: Table
    wcs: WCS
    stats: dict


@dataclass(frozen=True, eq=False)
class SearchResult:
    """Forced photometry of a search image, calibrated to its reference.

    Attributes
    ----------
    catalog : astropy.table.Table
        One row per reference source forced on this image: ``ref_row`` (row index
        into the reference catalogue given), ``x, y, ra, dec``, ``flux, dflux``,
        ``mag`` (corrected; NaN if flux <= 0), ``magerr`` (floor, then χ²/ν factor),
        ``magerr_raw``, ``mag_inst``, ``qf, rchi2, fracflux, flags``,
        ``significance`` ((mag - ref mag) / combined error), ``is_variable``,
        ``ref_mag, ref_magerr``, ``dmag_corr`` (zp + surface added), ``calib_used``.
    wcs : astropy.wcs.WCS
        The refined WCS.
    calibration : photdb.calibration.CalibrationResult
    astrometry : photdb.astrometry.AstrometrySolution
    stats : dict
        JSON-able: ``seeing_fwhm_arcsec, sky_level, n_detected, n_forced,
        n_positive, n_variables, astrom_rms_arcsec, astrom_n_matched, zp_approx, zp,
        chi2nu_before, error_factor, timings_s`` (mask, sky, detect, astrometry,
        forced, calibration, variability) ...
    """

    catalog: Table
    wcs: WCS
    calibration: CalibrationResult
    astrometry: AstrometrySolution
    stats: dict


# ----------------------------------------------------------------------------- helpers


class _Timer:
    """Wall time per named stage (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.seconds.items()}


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """An image after mask, sky, variance and crowdsource detection.

    The expensive, reference-independent part of a reduction: pass it instead of
    an :class:`~photdb.image.Image` to reduce the same image against several
    references without refitting (see :func:`prepare_image`).

    Attributes
    ----------
    image : photdb.image.Image
        The input.
    data : numpy.ndarray
        Sky-subtracted image (ADU, float32); non-finite input pixels are 0.
    mask : numpy.ndarray
        Input mask OR :func:`~photdb.image.build_mask` with ``config.mask``.
    variance : numpy.ndarray
        From gain, read noise and the Bijaoui sky (a stack's own variance).
    sky : photdb.background.Background
    fwhm_pix : float
        Median Moffat FWHM of bright isolated stars (NaN if none).
    detections : astropy.table.Table
        :func:`~photdb.photometry.measure_sources` catalogue.
    psf : crowdsource PSF
        This image's fitted PSF.
    timings_s : dict
        Seconds for ``mask``, ``sky``, ``detect``.
    """

    image: Image
    data: np.ndarray
    mask: np.ndarray
    variance: np.ndarray
    sky: Background
    fwhm_pix: float
    detections: Table
    psf: Any
    timings_s: dict


def _pixscale_arcsec(wcs: WCS) -> float:
    return float(np.sqrt(abs(np.linalg.det(wcs.celestial.pixel_scale_matrix))) * 3600.0)


def _header_band(header: fits.Header) -> str | None:
    band = header.get("BAND")
    if isinstance(band, str) and band.strip():
        return band.strip()
    filt = header.get("FILTER")
    if isinstance(filt, str) and filt.strip():
        return filt.strip().split()[0]
    return None


def _zero_point(image: Image, config: PipelineConfig, band: str | None) -> tuple[float, str]:
    """Approximate zero point (mag for 1 ADU) and where it came from."""
    h = image.header
    for key in ("MAGZERO", "MAGZPT"):
        v = h.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v):
            return float(v), key
    band = band or _header_band(h)
    if band is None or band not in config.nominal_zp:
        return 0.0, "none"
    zp = float(config.nominal_zp[band])
    exptime = h.get("EXPTIME")
    if isinstance(exptime, int | float) and exptime > 0:
        zp += 2.5 * np.log10(float(exptime) / config.nominal_exptime_s)
    return zp, f"nominal_zp[{band}]"


def _is_stack(image: Image) -> bool:
    return bool(image.header.get(STACK_CARD, False))


def prepare_image(image: Image, *, config: PipelineConfig = PipelineConfig()) -> PreparedImage:
    """Mask, Bijaoui sky, variance from gain and read noise, crowdsource detection.

    The first steps of every reduction (notebook: "it will run through the same
    reduction procedure").  A stacked reference (``PDBSTACK`` card) keeps its own
    variance.
    """
    timer = _Timer()
    with timer("mask"):
        data = np.asarray(image.data, dtype=np.float32)
        finite = np.isfinite(data)
        mask = np.asarray(image.mask, dtype=np.int32) | build_mask(
            data, saturate=image.saturate, config=config.mask, variance=image.variance
        )
        mask[~finite] |= MaskBits.EDGE
        data = np.where(finite, data, 0.0).astype(np.float32)
    with timer("sky"):
        sky = estimate_sky(data, mask=mask, config=config.sky)
        sub = sky.subtract(data)
        sub[~finite] = 0.0
        if _is_stack(image) or not image.gain > 0:
            variance = np.asarray(image.variance, dtype=np.float32)
        else:
            variance = make_variance(data, sky.level, gain=image.gain, readnoise=image.readnoise)
        variance = np.where(np.isfinite(variance) & (variance > 0), variance, 0.0)
        variance = variance.astype(np.float32)
        mask[variance <= 0] |= MaskBits.EDGE
    with timer("detect"):
        fwhm = estimate_fwhm(sub, variance=variance, mask=mask, beta=config.photometry.moffat_beta)
        guess = fwhm if np.isfinite(fwhm) else config.photometry.fwhm_default
        det, psf = measure_sources(
            sub, variance=variance, mask=mask, fwhm_pix=guess, config=config.photometry
        )
    return PreparedImage(image, sub, mask, variance, sky, float(fwhm), det, psf, timer.as_dict())


def _prepared(image: Image | PreparedImage, config: PipelineConfig, timer: _Timer) -> PreparedImage:
    prep = image if isinstance(image, PreparedImage) else prepare_image(image, config=config)
    for k, v in prep.timings_s.items():
        timer.seconds[k] = timer.seconds.get(k, 0.0) + v
    return prep


def _seeing_arcsec(prep: PreparedImage, cat: Table) -> float:
    """Seeing FWHM (arcsec): bright-star Moffat fits, else crowdsource's median FWHM."""
    fwhm = prep.fwhm_pix
    if not np.isfinite(fwhm) and len(cat):
        fwhm = float(np.nanmedian(np.asarray(cat["fwhm_pix"], float)))
    return float(fwhm * _pixscale_arcsec(prep.image.wcs))


def _common_stats(prep: PreparedImage, cat: Table, config: PipelineConfig) -> dict[str, Any]:
    return {
        "shape": [int(s) for s in prep.data.shape],
        "seeing_fwhm_arcsec": _seeing_arcsec(prep, cat),
        "sky_level": prep.sky.global_level,
        "sky_rms": prep.sky.global_rms,
        "n_detected": len(cat),
        "n_masked_pix": int(np.count_nonzero(prep.mask)),
        "provenance_id": config.provenance_id(),
        "version": photdb.__version__,
    }


def _f(table: Table, name: str) -> np.ndarray:
    col = table[name]
    return np.array(getattr(col, "value", col), dtype=float)


def _reference_table(det: Table, wcs: WCS, zp: float) -> Table:
    """Detections -> reference catalogue columns."""
    x, y = _f(det, "x"), _f(det, "y")
    ra, dec = wcs.all_pix2world(x, y, 0)
    t = Table()
    t["x"], t["y"] = x, y
    t["ra"], t["dec"] = ra, dec
    t["flux"], t["dflux"] = _f(det, "flux"), _f(det, "dflux")
    t["mag"] = _f(det, "mag_inst") + zp
    t["magerr"] = _f(det, "magerr_inst")
    t["mag_inst"] = _f(det, "mag_inst")
    t["magerr_inst"] = _f(det, "magerr_inst")
    for name in ("qf", "rchi2", "fracflux", "fwhm_pix", "sky"):
        t[name] = _f(det, name)
    t["flags"] = np.asarray(det["flags"], dtype=np.int64)
    t["n_ref"] = np.ones(len(t), dtype=np.int64)
    units = {"x": "pix", "y": "pix", "ra": "deg", "dec": "deg", "flux": "adu",
             "dflux": "adu", "mag": "mag", "magerr": "mag", "mag_inst": "mag",
             "magerr_inst": "mag", "fwhm_pix": "pix", "sky": "adu"}  # fmt: skip
    for k, u in units.items():
        t[k].unit = u
    return t


# ----------------------------------------------------------------------------- public API


def load_image(
    path: str | PathLike[str],
    hdu: int | str = 0,
    *,
    config: PipelineConfig = PipelineConfig(),
    inherit: bool = True,
) -> Image:
    """Read one HDU as an :class:`~photdb.image.Image`, coping with sparse headers.

    Parameters
    ----------
    path, hdu
        FITS file and HDU (index or EXTNAME).
    config : PipelineConfig
        ``mask`` settings and ``selection.gain_fallback``.
    inherit : bool
        Copy primary-header cards missing from the HDU header (``INHERIT`` style,
        e.g. FILTER, EXPTIME, MAGZERO of a DECam MEF) into ``Image.header``.

    Notes
    -----
    With no GAIN/GAINA/GAINB the gain is ``selection.gain_fallback`` or, if None, an
    effective gain ``sky / sigma_sky²`` from a Bijaoui fit of the whole image (so the
    variance describes the observed noise, including pixel-to-pixel correlation at
    the 2 x 2 scale; see ``_effective_gain``).  A missing read noise is 0 (the
    effective gain then carries all of the sky noise) and a missing SATURATE is
    infinite (no saturation mask).
    """
    with fits.open(path) as hdul:
        header = hdul[hdu].header.copy()
        primary = hdul[0].header.copy() if inherit and hdul.index_of(hdu) != 0 else None
        data = None
        if not any(k in header for k in ("GAIN", "GAINA", "GAINB")):
            data = np.asarray(hdul[hdu].data, dtype=np.float32)
    gain = None
    if data is not None:
        gain = config.selection.gain_fallback
        if gain is None:
            gain = _effective_gain(data, config)
    img = read_image(path, hdu, mask_config=config.mask, gain=gain)
    if primary is not None:
        for card in primary.cards:
            if card.keyword and card.keyword not in img.header and card.keyword not in (
                "SIMPLE", "BITPIX", "NAXIS", "EXTEND", "COMMENT", "HISTORY", ""
            ):  # fmt: skip
                img.header[card.keyword] = (card.value, card.comment)
    return img


def _effective_gain(data: np.ndarray, config: PipelineConfig) -> float:
    """``sky / sigma²`` (e-/ADU) from one-tile Bijaoui fits; 1.0 if meaningless.

    ``sigma`` is the larger of the per-pixel noise and half the noise of 2 x 2 pixel
    sums, so pixel-to-pixel correlated noise (scanned plates, resampled data) is
    not underestimated at the PSF scale, which would make noise peaks "sources".
    """
    cfg = replace(config.sky, tiles=(1, 1), order=(0, 0))
    d = np.where(np.isfinite(data), data, np.nan)
    ny, nx = (s - s % 2 for s in d.shape)
    binned = d[:ny, :nx].reshape(ny // 2, 2, nx // 2, 2).sum(axis=(1, 3))
    sig = []
    for arr, norm in ((d, 1.0), (binned, 2.0)):
        bad = ~np.isfinite(arr)
        bkg = estimate_sky(np.where(bad, 0.0, arr), mask=bad, config=cfg)
        sig.append(bkg.global_rms / norm)
        if norm == 1.0:
            level = bkg.global_level
    rms = max(sig)
    if not (np.isfinite(level) and np.isfinite(rms) and level > 0 and rms > 0):
        return 1.0
    return float(level / rms**2)


def reduce_reference(
    image: Image | PreparedImage,
    *,
    config: PipelineConfig = PipelineConfig(),
    band: str | None = None,
    astrometric_reference: Table | None = None,
) -> ReferenceResult:
    """Full crowdsource reduction of a reference image.

    Parameters
    ----------
    image : photdb.image.Image
        The reference image (ADU, sky not subtracted).
    config : PipelineConfig
    band : str, optional
        Filter band for the nominal zero point when the header has neither
        MAGZERO/MAGZPT nor BAND/FILTER.
    astrometric_reference : astropy.table.Table, optional
        Absolute positions (``ra``, ``dec`` in degrees, optional ``mag``) the image's
        WCS is refined against before the catalogue's sky positions are computed
        (see ``PipelineConfig.astrometric_catalog``). When it also has a
        ``mag_<band>`` column for this image's band, the catalogue is put on that
        photometric system, flat across the chip (:func:`photdb.absolute.flatten_reference`).

    Returns
    -------
    ReferenceResult
        ``stats["timings_s"]`` has ``mask, sky, detect, [astrometry,] catalog
        [, photometric]``; ``stats["photometric_calibration"]`` the external fit, or
        why it was skipped (too few catalogue matches: the header or nominal zero point
        then stays, as without a catalogue).
    """
    timer = _Timer()
    prep = _prepared(image, config, timer)
    image, det = prep.image, prep.detections
    wcs, astrom = image.wcs, {}
    if astrometric_reference is not None:
        with timer("astrometry"):
            wcs, astrom = _tie_to_catalog(det, wcs, astrometric_reference, config)
    with timer("catalog"):
        zp, zp_source = _zero_point(image, config, band)
        cat = _reference_table(det, wcs, zp)
    phot: dict[str, Any] = {}
    column = _photometric_column(astrometric_reference, band, image.header)
    if column is not None and config.selection.reference_photometry:
        with timer("photometric"):
            try:
                cat, phot = flatten_reference(
                    cat, astrometric_reference, column, shape=prep.data.shape,
                    config=config.calibration, use=_fit_quality(config.selection, cat),
                )  # fmt: skip
                zp, zp_source = zp + phot["zp"], f"catalogue {column}"
            except ValueError as exc:  # too sparse: keep the header/nominal zero point
                phot = {"column": column, "skipped": str(exc)}
    stats = _common_stats(prep, det, config) | astrom
    stats |= {"zp": zp, "zp_source": zp_source, "n_references": 1, "stacked": _is_stack(image)}
    if phot:
        stats["photometric_calibration"] = phot
    stats["timings_s"] = timer.as_dict()
    return ReferenceResult(cat, wcs, stats)


def _photometric_column(catalog: Table | None, band: str | None, header: fits.Header) -> str | None:
    """The catalogue's ``mag_<band>`` column for this image: the header's BAND/FILTER
    first, then the database's filter name and its part before ``_`` (``r_decam``)."""
    if catalog is None:
        return None
    names = [_header_band(header), band, (band or "").split("_")[0]]
    for b in names:
        if b and f"mag_{b}" in catalog.colnames:
            return f"mag_{b}"
    return None


def _tie_to_catalog(
    det: Table, wcs: WCS, catalog: Table, config: PipelineConfig
) -> tuple[WCS, dict[str, Any]]:
    """Refine a reference image's WCS against an absolute astrometric catalogue."""
    ref_mag = np.asarray(catalog["mag"], float) if "mag" in catalog.colnames else None
    sol = refine_wcs(
        wcs,
        _f(det, "x"),
        _f(det, "y"),
        np.asarray(catalog["ra"], float),
        np.asarray(catalog["dec"], float),
        mag=_f(det, "mag_inst") if ref_mag is not None else None,
        ref_mag=ref_mag,
        config=config.astrometry,
    )
    return sol.wcs, {
        "astrom_rms_arcsec": float(sol.rms_arcsec),
        "astrom_n_matched": int(sol.n_matched),
        "astrom_offset_arcsec": [float(v) for v in sol.offset_arcsec],
    }


def _fit_quality(sel: SelectionConfig, *tables: Table) -> np.ndarray:
    """Rows good enough for a calibration fit on every table (matched row by row):
    crowdsource ``qf`` and ``fracflux`` above the selection's limits, no mask flag."""
    ok = np.ones(len(tables[0]), dtype=bool)
    for tab in tables:
        if "qf" in tab.colnames:
            ok &= np.nan_to_num(_f(tab, "qf")) >= sel.fit_min_qf
        if "fracflux" in tab.colnames:
            ok &= np.nan_to_num(_f(tab, "fracflux")) >= sel.fit_min_fracflux
        if sel.fit_require_unflagged and "flags" in tab.colnames:
            ok &= np.asarray(tab["flags"]) == 0
    return ok


def _fit_reference(reference: Table, search: Table, sel: SelectionConfig) -> Table:
    """Reference mag/magerr for the calibration; NaN for stars kept out of the fits."""
    ok = _fit_quality(sel, reference, search)
    return Table(
        {"mag": np.where(ok, _f(reference, "mag"), np.nan), "magerr": _f(reference, "magerr")}
    )


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
        xr, yr = _f(reference, "x"), _f(reference, "y")
        xmax, ymax = np.nanmax(xr), np.nanmax(yr)
        xs, ys = xr[rows], yr[rows]
        near |= (np.minimum(xs, xmax - xs) < edge) | (np.minimum(ys, ymax - ys) < edge)
    return near


def _on_chip(x: np.ndarray, y: np.ndarray, shape: tuple[int, int], edge: float) -> np.ndarray:
    ny, nx = shape
    ok = np.isfinite(x) & np.isfinite(y)
    return ok & (x >= edge) & (x <= nx - 1 - edge) & (y >= edge) & (y <= ny - 1 - edge)


def reduce_search(
    image: Image | PreparedImage,
    reference: Table,
    *,
    config: PipelineConfig = PipelineConfig(),
) -> SearchResult:
    """Forced photometry of a search image at the reference positions, calibrated to it.

    Parameters
    ----------
    image : photdb.image.Image
        Search image (ADU, sky not subtracted), header WCS good to ~arcsec.
    reference : astropy.table.Table
        Reference catalogue of the same filter with at least ``ra, dec, mag, magerr``
        (e.g. ``ReferenceResult.catalog``, or the stored catalogue); ``qf``,
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
    timer = _Timer()
    cfg = config
    prep = _prepared(image, cfg, timer)
    image, det, psf = prep.image, prep.detections, prep.psf
    ref_ra, ref_dec = _f(reference, "ra"), _f(reference, "dec")
    ref_mag, ref_err = _f(reference, "mag"), _f(reference, "magerr")
    with timer("astrometry"):
        sol = refine_wcs(
            image.wcs,
            _f(det, "x"),
            _f(det, "y"),
            ref_ra,
            ref_dec,
            mag=_f(det, "mag_inst"),
            ref_mag=ref_mag,
            config=cfg.astrometry,
        )
        zp_approx, zp_scatter, _ = fit_zero_point(
            _f(det, "mag_inst")[sol.matched_det],
            ref_mag[sol.matched_ref],
            clip_sigma=cfg.calibration.clip_sigma,
        )
    with timer("forced"):
        xr, yr = sol.wcs.all_world2pix(ref_ra, ref_dec, 0)
        rows = np.flatnonzero(_on_chip(xr, yr, prep.data.shape, cfg.selection.forced_edge_pix))
        forced = measure_forced(
            prep.data,
            xr[rows],
            yr[rows],
            variance=prep.variance,
            mask=prep.mask,
            psf=psf,
            config=cfg.photometry,
        )
        forced["x"], forced["y"] = xr[rows], yr[rows]
    with timer("calibration"):
        fit_ref = _fit_reference(reference[rows], forced, cfg.selection)
        ped = None
        if cfg.selection.fit_pedestal:
            ped = _fit_pedestal(forced, fit_ref, zp_approx, prep.data.shape, cfg)
            if ped is not None:
                _subtract_pedestal(forced, ped.surface(_f(forced, "x"), _f(forced, "y")))
        cal, calres = calibrate_search_catalog(
            forced,
            fit_ref,
            shape=prep.data.shape,
            config=cfg.calibration,
            scale_ref=Table({"mag": ref_mag[rows], "magerr": ref_err[rows]}),
        )
    with timer("variability"):
        is_var, signif = detect_variables(
            _f(cal, "mag"),
            _f(cal, "magerr"),
            ref_mag[rows],
            ref_err[rows],
            config=cfg.variability,
        )
        near_edge = _near_edge(xr[rows], yr[rows], prep.data.shape, reference, rows, cfg)
        is_var &= ~near_edge
        catalog = _search_table(cal, rows, ref_ra, ref_dec, ref_mag, ref_err, is_var, signif)
    stats = _common_stats(prep, det, cfg)
    stats |= {
        "n_forced": len(catalog),
        "n_positive": int(np.count_nonzero(_f(catalog, "flux") > 0)),
        "n_variables": int(np.count_nonzero(is_var)),
        "n_near_edge": int(np.count_nonzero(near_edge)),
        "astrom_rms_arcsec": sol.rms_arcsec,
        "astrom_rms_pix": sol.rms_pix,
        "astrom_n_matched": sol.n_matched,
        "astrom_offset_arcsec": list(sol.offset_arcsec),
        "zp_approx": zp_approx,
        "zp_approx_scatter": zp_scatter,
        "pedestal_adu": ped.mean_adu if ped is not None else 0.0,
        "pedestal_coeffs": ped.surface.to_list() if ped is not None else None,
        "zp": calres.zp,
        "chi2nu_before": calres.chi2nu_before,
        "error_factor": calres.error_factor,
        "calib_n_fit": calres.n_fit,
        "calib_residual_rms_mag": calres.residual_rms_mag,
        "timings_s": timer.as_dict(),
    }
    return SearchResult(catalog, sol.wcs, calres, sol, stats)


def _fit_pedestal(
    forced: Table, fit_ref: Table, zp: float, shape: tuple[int, int], config: PipelineConfig
) -> PedestalFit | None:
    """Additive flux error (ADU) of the forced fluxes against the reference, c(x, y).

    See :mod:`photdb.pedestal`: ``f = g(x, y) f_ref + c(x, y)`` over the calibration
    stars, ``f_ref`` the reference magnitude on the search image's approximate scale.
    None when there are too few stars (nothing is subtracted then).
    """
    fr = 10.0 ** (-0.4 * (_f(fit_ref, "mag") - zp))
    dfr = fr * _f(fit_ref, "magerr") / 1.0857362047581294
    sel = np.isfinite(fr) & (_f(fit_ref, "magerr") <= config.calibration.max_fit_magerr)
    cal = config.calibration
    try:
        return fit_flux_pedestal(
            _f(forced, "x")[sel], _f(forced, "y")[sel], _f(forced, "flux")[sel],
            _f(forced, "dflux")[sel], fr[sel], dfr[sel], shape=shape,
            order=config.selection.pedestal_order, gain_order=cal.chebyshev_order,
            floor_frac=cal.error_floor_mag / 1.0857362047581294,
            clip_sigma=cal.clip_sigma, max_iter=cal.max_iter, min_stars=cal.min_stars,
        )  # fmt: skip
    except ValueError:
        return None


def _subtract_pedestal(forced: Table, pedestal: np.ndarray) -> None:
    """Remove the pedestal (ADU per star) in place; recompute instrumental magnitudes."""
    flux = _f(forced, "flux") - pedestal
    dflux = _f(forced, "dflux")
    pos = flux > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        forced["flux"] = flux
        forced["mag_inst"] = np.where(pos, -2.5 * np.log10(np.where(pos, flux, 1.0)), np.nan)
        forced["magerr_inst"] = np.where(
            pos, 2.5 / np.log(10) * dflux / np.where(pos, flux, 1.0), np.nan
        )


def _search_table(cal, rows, ref_ra, ref_dec, ref_mag, ref_err, is_var, signif) -> Table:
    out = Table()
    out["ref_row"] = rows.astype(np.int64)
    out["x"], out["y"] = _f(cal, "x"), _f(cal, "y")
    out["ra"], out["dec"] = ref_ra[rows], ref_dec[rows]
    for name in ("flux", "dflux", "mag", "magerr", "magerr_raw", "mag_inst", "qf", "rchi2",
                 "fracflux", "dmag_corr", "sky"):  # fmt: skip
        out[name] = _f(cal, name)
    out["flags"] = np.asarray(cal["flags"], dtype=np.int64)
    out["calib_used"] = np.asarray(cal["calib_used"], dtype=bool)
    out["ref_mag"], out["ref_magerr"] = ref_mag[rows], ref_err[rows]
    out["significance"] = signif
    out["is_variable"] = np.asarray(is_var, dtype=bool)
    units = {"x": "pix", "y": "pix", "ra": "deg", "dec": "deg", "flux": "adu", "dflux": "adu",
             "mag": "mag", "magerr": "mag", "magerr_raw": "mag", "mag_inst": "mag",
             "dmag_corr": "mag", "sky": "adu", "ref_mag": "mag", "ref_magerr": "mag"}  # fmt: skip
    for k, u in units.items():
        out[k].unit = u
    return out
