"""The first steps of every reduction: mask, sky, variance, detection; shared helpers.

:func:`prepare_image` is the expensive, reference-independent part of a reduction;
the rest of the package builds reference catalogues (:mod:`.reference`), forced
search photometry (:mod:`.search`) and reference sets and stacks (:mod:`.combine`)
on a :class:`PreparedImage`. No I/O, no SQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

import photdb
from photdb.background import Background, estimate_sky
from photdb.bands import band_family, header_band
from photdb.detection import detect_calibration_stars
from photdb.image import Image, MaskBits, build_mask, make_variance
from photdb.photometry import estimate_fwhm, fit_psf_on_stars, measure_sources
from photdb.pipeline.config import PipelineConfig, SelectionConfig
from photdb.pipeline.io import STACK_CARD

__all__ = [
    "PreparedImage",
    "Timer",
    "column",
    "fit_quality",
    "fit_reference",
    "image_stats",
    "is_stack",
    "prepare_image",
    "prepared",
    "zero_point",
]


class Timer:
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

    Pass it instead of an :class:`~photdb.image.Image` to reduce the same image
    against several references without refitting (see :func:`prepare_image`).

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


def column(table: Table, name: str) -> np.ndarray:
    """A table column as a float ndarray (units dropped)."""
    col = table[name]
    return np.array(getattr(col, "value", col), dtype=float)


def is_stack(image: Image) -> bool:
    """True for a stacked reference made by :func:`~photdb.pipeline.build_stacked_reference`."""
    return bool(image.header.get(STACK_CARD, False))


def zero_point(image: Image, config: PipelineConfig, band: str | None) -> tuple[float, str]:
    """Approximate zero point (mag for 1 ADU) and where it came from.

    A header MAGZERO/MAGZPT; else the nominal zero point of the band's family
    (``r_decam`` -> ``r``, :func:`photdb.bands.band_family`) scaled by EXPTIME; else 0.
    ``band`` (the database's filter) wins over the header's.
    """
    h = image.header
    for key in ("MAGZERO", "MAGZPT"):
        v = h.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v):
            return float(v), key
    family = band_family(band or header_band(h))
    if family is None or family not in config.nominal_zp:
        return 0.0, "none"
    zp = float(config.nominal_zp[family])
    exptime = h.get("EXPTIME")
    if isinstance(exptime, int | float) and exptime > 0:
        zp += 2.5 * np.log10(float(exptime) / config.nominal_exptime_s)
    return zp, f"nominal_zp[{family}]"


def prepare_image(
    image: Image, *, config: PipelineConfig = PipelineConfig(), calibration_only: bool = False
) -> PreparedImage:
    """Mask, Bijaoui sky, variance from gain and read noise, detection and PSF.

    The first steps of every reduction (notebook: "it will run through the same
    reduction procedure"). The mask is built here (see ``_build_mask``); an image that
    brings its own variance (a stacked reference) keeps it; a raw image gets its
    variance from gain, read noise and the Bijaoui sky.

    Detection is crowdsource's full find-and-fit (``measure_sources``), except with
    ``calibration_only`` (a search image, whose detections only calibrate it) and
    ``config.detection.detector == "fast"``: then photutils' DAOFIND finds the peaks
    and marks the bright isolated stars (:func:`photdb.detection.detect_calibration_stars`),
    crowdsource fits the PSF with every peak in the model but no find-and-fit
    (:func:`photdb.photometry.fit_psf_on_stars`), and ``detections`` holds the bright
    isolated stars only (as fitted with the initial Moffat PSF).
    """
    timer = Timer()
    with timer("mask"):
        data = np.asarray(image.data, dtype=np.float32)
        finite = np.isfinite(data)
        mask = np.asarray(image.mask, dtype=np.int32) | _build_mask(image, data, config)
        mask[~finite] |= MaskBits.EDGE
        data = np.where(finite, data, 0.0).astype(np.float32)
    with timer("sky"):
        sky = estimate_sky(data, mask=mask, config=config.sky)
        sub = sky.subtract(data)
        sub[~finite] = 0.0
        if image.variance is not None and (is_stack(image) or not image.gain > 0):
            variance = np.asarray(image.variance, dtype=np.float32)
        else:
            variance = make_variance(data, sky.level, gain=image.gain, readnoise=image.readnoise)
        variance = np.where(np.isfinite(variance) & (variance > 0), variance, 0.0)
        variance = variance.astype(np.float32)
        mask[variance <= 0] |= MaskBits.EDGE
    with timer("detect"):
        fwhm = estimate_fwhm(sub, variance=variance, mask=mask, beta=config.photometry.moffat_beta)
        guess = fwhm if np.isfinite(fwhm) else config.photometry.fwhm_default
        if calibration_only and config.detection.detector == "fast":
            det, psf = _detect_fast(sub, variance, mask, guess, config)
        else:
            det, psf = measure_sources(
                sub, variance=variance, mask=mask, fwhm_pix=guess, config=config.photometry
            )
    return PreparedImage(image, sub, mask, variance, sky, float(fwhm), det, psf, timer.as_dict())


def _detect_fast(
    data: np.ndarray, variance: np.ndarray, mask: np.ndarray, fwhm: float, config: PipelineConfig
) -> tuple[Table, Any]:
    """DAOFIND's peaks, crowdsource's PSF fitted with all of them in the model; the
    bright isolated stars (their PSF-model positions and fluxes) as the detections."""
    peaks = detect_calibration_stars(
        data, variance=variance, mask=mask, fwhm_pix=fwhm, bad_bits=config.photometry.bad_bits,
        config=config.detection,
    )  # fmt: skip
    if not np.any(peaks["calib"]):
        raise RuntimeError("no bright isolated star found for the calibration")
    fit, psf = fit_psf_on_stars(
        data, column(peaks, "x"), column(peaks, "y"), variance=variance, mask=mask,
        fwhm_pix=fwhm, niter=config.detection.psf_niter, config=config.photometry,
    )  # fmt: skip
    det = fit[np.asarray(peaks["calib"])]
    det.meta["n_detected"] = len(peaks)
    return det, psf


def _build_mask(image: Image, data: np.ndarray, config: PipelineConfig) -> np.ndarray:
    """The image's mask, in two cosmic-ray passes for a raw image.

    An image with its own variance (a stack) is masked once, its noise setting the
    cosmic-ray threshold. A raw image is masked first with the noise measured from
    the image's Laplacian, then again with the per-pixel shot and read noise of a
    provisional variance (the median of the unmasked pixels as sky); a pixel is
    masked if either pass flags it. The two noise models catch different hits (the
    Laplacian's is one number for the chip, the shot noise follows the sky and the
    stars), and their union is what the science numbers were measured with.
    """
    first = build_mask(data, saturate=image.saturate, config=config.mask, variance=image.variance)
    if image.variance is not None or not image.gain > 0:
        return first
    good = first == 0
    sky = float(np.median(data[good])) if good.any() else 0.0
    provisional = make_variance(data, sky, gain=image.gain, readnoise=image.readnoise)
    return first | build_mask(
        data, saturate=image.saturate, config=config.mask, variance=provisional
    )


def prepared(
    image: Image | PreparedImage,
    config: PipelineConfig,
    timer: Timer,
    *,
    calibration_only: bool = False,
) -> PreparedImage:
    """``image`` prepared (once), its preparation timings added to ``timer``."""
    prep = (
        image
        if isinstance(image, PreparedImage)
        else prepare_image(image, config=config, calibration_only=calibration_only)
    )
    for k, v in prep.timings_s.items():
        timer.seconds[k] = timer.seconds.get(k, 0.0) + v
    return prep


def _pixscale_arcsec(wcs: WCS) -> float:
    return float(np.sqrt(abs(np.linalg.det(wcs.celestial.pixel_scale_matrix))) * 3600.0)


def image_stats(prep: PreparedImage, config: PipelineConfig) -> dict[str, Any]:
    """The :class:`~photdb.pipeline.results.ImageStats` fields of a prepared image."""
    det = prep.detections
    fwhm = prep.fwhm_pix
    if not np.isfinite(fwhm) and len(det):  # no bright isolated star: crowdsource's median
        fwhm = float(np.nanmedian(column(det, "fwhm_pix")))
    return {
        "shape": (int(prep.data.shape[0]), int(prep.data.shape[1])),
        "seeing_fwhm_arcsec": float(fwhm * _pixscale_arcsec(prep.image.wcs)),
        "sky_level": prep.sky.global_level,
        "sky_rms": prep.sky.global_rms,
        "n_detected": int(det.meta.get("n_detected", len(det))),
        "n_masked_pix": int(np.count_nonzero(prep.mask)),
        "provenance_id": config.provenance_id(),
        "version": photdb.__version__,
    }


def fit_quality(sel: SelectionConfig, *tables: Table) -> np.ndarray:
    """Rows good enough for a calibration fit on every table (matched row by row):
    crowdsource ``qf`` and ``fracflux`` above the selection's limits, no mask flag."""
    ok = np.ones(len(tables[0]), dtype=bool)
    for tab in tables:
        if "qf" in tab.colnames:
            ok &= np.nan_to_num(column(tab, "qf")) >= sel.fit_min_qf
        if "fracflux" in tab.colnames:
            ok &= np.nan_to_num(column(tab, "fracflux")) >= sel.fit_min_fracflux
        if sel.fit_require_unflagged and "flags" in tab.colnames:
            ok &= np.asarray(tab["flags"]) == 0
    return ok


def fit_reference(reference: Table, search: Table, sel: SelectionConfig) -> Table:
    """Reference mag/magerr for the calibration; NaN for stars kept out of the fits."""
    ok = fit_quality(sel, reference, search)
    return Table(
        {
            "mag": np.where(ok, column(reference, "mag"), np.nan),
            "magerr": column(reference, "magerr"),
        }
    )
