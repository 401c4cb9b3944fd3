"""New sources: significant residuals of the forced fit that match no reference source.

After a search image is forced at the reference positions, a source that was not on
the reference (a transient, a nova, a star that brightened out of the noise) is left
in the residual image ``data - model``. This stage finds it there:

1. satellite trails are found first and masked: the residual, in units of its noise,
   is smoothed with the PSF's Gaussian, thresholded, and every connected region long
   and thin enough to be a streak (principal axes from its second moments) defines a
   straight line across the chip; pixels within a few PSF widths of it are masked;
2. crowdsource (:func:`photdb.photometry.measure_sources`, the image's PSF held
   fixed) finds and PSF-fits sources in the residual;
3. a candidate must be significant, away from masked pixels, trails and the chip
   edge, not on top of a reference source (that flux belongs to the reference
   source's own variability), and shaped like the PSF: its peak pixel must not
   exceed the PSF's by more than ``max_sharpness`` (a cosmic ray is sharper).

The survey keeps candidates per image; one seen on several images becomes a new
reference source (:mod:`photdb.survey.newsources`). For such sources, whose
reference flux may be zero or negative, :func:`flux_significance` compares a search
measurement with the reference in flux, where a magnitude does not exist.
No I/O, no SQL.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.table import Table
from scipy import ndimage
from scipy.spatial import cKDTree

from photdb.fitting import MAG_PER_FLUX_FRACTION
from photdb.image import MaskBits
from photdb.photometry import PhotometryConfig, measure_sources, render_model

__all__ = [
    "NewSourceConfig",
    "Trail",
    "find_new_sources",
    "find_trails",
    "flux_significance",
]


@dataclass(frozen=True)
class NewSourceConfig:
    """Settings of the new-source search in forced-fit residuals.

    Attributes
    ----------
    enabled : bool
        Search the residual of every search image; default True.
    nsigma : float
        Minimum PSF-flux signal-to-noise of a residual source; default 7.
    min_ref_dist_fwhm : float
        A candidate closer than this to a forced reference position (in PSF FWHM) is
        that source's own change, not a new source; default 0.75. Measured on the
        simulated fields of ``benchmarks/science_run.py``: at 0.5, in a field of 0.02
        stars per pixel, 7 of 14 added sources were no transient or variable
        (residuals 0.7–1″ beside constant stars); at 0.75 none of 5, with the same
        transients found on both fields; at 1, two transients blended with stars
        were lost.
    mask_margin_pix : float
        Minimum distance from masked pixels and the chip edge, pix; default 6.
    max_sharpness : float
        Largest ratio of a candidate's peak pixel to the PSF's peak for its flux; a
        cosmic ray is sharper; default 1.6.
    trail_threshold : float
        Threshold of the PSF-smoothed residual (in its own noise) for trail pixels;
        default 8 (lower thresholds join a streak to the residuals of crowded stars).
    trail_min_length_fwhm : float
        A streak at least this long (in PSF FWHM) ...; default 12.
    trail_min_elongation : float
        ... and this many times longer than wide is a trail; default 6.
    trail_halfwidth_fwhm : float
        Pixels within this many FWHM of a trail's line are masked; default 2.
    edge_band_pix : float
        A streak parallel to a chip edge and this close to it is the sky model's edge
        residual, not a trail; default 30.
    match_radius_fwhm : float
        Candidates on different images within this many FWHM are one source (used by
        the survey); default 1.
    min_images : int
        Search images a candidate must be seen on before it becomes a reference
        source (cosmic rays, trails and ghosts are seen once); default 2.
    min_brightening_sigma : float
        It must also be brighter than on the reference by this many σ on at least
        ``min_images`` images (a star the reference merely missed is not new); default 5.
    """

    enabled: bool = True
    nsigma: float = 7.0
    min_ref_dist_fwhm: float = 0.75
    mask_margin_pix: float = 6.0
    max_sharpness: float = 1.6
    trail_threshold: float = 8.0
    trail_min_length_fwhm: float = 12.0
    trail_min_elongation: float = 6.0
    trail_halfwidth_fwhm: float = 2.0
    edge_band_pix: float = 30.0
    match_radius_fwhm: float = 1.0
    min_images: int = 2
    min_brightening_sigma: float = 5.0


@dataclass(frozen=True)
class Trail:
    """A straight streak: a point on it, its direction and its length on the chip (pix)."""

    x: float
    y: float
    angle_deg: float
    length_pix: float

    def distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance (pix) of points from the trail's infinite line."""
        a = np.radians(self.angle_deg)
        return np.abs((np.asarray(x) - self.x) * np.sin(a) - (np.asarray(y) - self.y) * np.cos(a))


def find_trails(
    residual: np.ndarray,
    *,
    variance: np.ndarray,
    mask: np.ndarray,
    fwhm_pix: float,
    config: NewSourceConfig = NewSourceConfig(),
) -> tuple[list[Trail], np.ndarray]:
    """Find satellite trails in a residual image and the pixels they cover.

    Parameters
    ----------
    residual : ndarray
        Image minus the forced-fit model (ADU).
    variance : ndarray
        Per-pixel variance (ADU²).
    mask : ndarray
        Pixel mask (non-zero: bad); bad pixels count as zero signal.
    fwhm_pix : float
        PSF FWHM, pix.
    config : NewSourceConfig

    Returns
    -------
    trails : list of Trail
    covered : ndarray of bool
        Pixels within ``trail_halfwidth_fwhm`` of a trail's line.
    """
    sig = max(fwhm_pix, 2.0) / 2.3548
    good = (mask == 0) & (variance > 0) & np.isfinite(residual)
    edge = int(np.ceil(2 * fwhm_pix))  # the forced fit's edge residuals are not streaks
    good[:edge], good[-edge:], good[:, :edge], good[:, -edge:] = False, False, False, False
    chi = np.where(good, residual / np.sqrt(np.where(good, variance, 1.0)), 0.0)
    # smoothing with a unit-L2 Gaussian keeps pure noise at unit variance
    smooth = ndimage.gaussian_filter(chi, sig) * (2.0 * np.sqrt(np.pi) * sig)
    labels, n = ndimage.label(smooth > config.trail_threshold)
    trails: list[Trail] = []
    covered = np.zeros(residual.shape, bool)
    if n == 0:
        return trails, covered
    min_len = config.trail_min_length_fwhm * fwhm_pix
    yy, xx = np.nonzero(labels)
    lab = labels[yy, xx]
    order = np.argsort(lab, kind="stable")
    bounds = np.searchsorted(lab[order], np.arange(1, n + 2))
    for k in range(n):
        idx = order[bounds[k] : bounds[k + 1]]
        if idx.size < min_len:  # a streak has at least ~1 pixel per pixel of length
            continue
        px, py = xx[idx].astype(float), yy[idx].astype(float)
        cov = np.cov(np.vstack([px, py]))
        evals, evecs = np.linalg.eigh(cov)
        length = 2.0 * np.sqrt(3.0 * max(evals[1], 0.0))  # uniform segment: L^2 / 12
        width = 2.0 * np.sqrt(3.0 * max(evals[0], 1e-6))
        if length < min_len or length < config.trail_min_elongation * max(width, fwhm_pix):
            continue
        vx, vy = evecs[:, 1]
        if _along_edge(px.mean(), py.mean(), vx, vy, residual.shape, config.edge_band_pix):
            continue  # the sky model's last tiles, not a streak
        trail = Trail(float(px.mean()), float(py.mean()),
                      float(np.degrees(np.arctan2(vy, vx))), float(length))  # fmt: skip
        trails.append(trail)
    if trails:
        gy, gx = np.mgrid[0 : residual.shape[0], 0 : residual.shape[1]]
        for t in trails:
            covered |= t.distance(gx, gy) <= config.trail_halfwidth_fwhm * fwhm_pix
    return trails, covered


def _along_edge(x: float, y: float, vx: float, vy: float, shape, band: float) -> bool:
    """A line within ``band`` pix of a chip edge and parallel to it (within ~6 deg)."""
    ny, nx = shape
    horizontal = abs(vy) < 0.1 and min(y, ny - 1 - y) < band
    vertical = abs(vx) < 0.1 and min(x, nx - 1 - x) < band
    return bool(horizontal or vertical)


def find_new_sources(
    data: np.ndarray,
    forced: Table,
    *,
    variance: np.ndarray,
    mask: np.ndarray,
    psf: Any,
    fwhm_pix: float,
    photometry: PhotometryConfig = PhotometryConfig(),
    config: NewSourceConfig = NewSourceConfig(),
    model: np.ndarray | None = None,
) -> tuple[Table, list[Trail]]:
    """Sources in the residual of a forced fit that match no forced position.

    Parameters
    ----------
    data : ndarray
        Sky-subtracted image (ADU).
    forced : astropy.table.Table
        The forced fit: ``x, y`` (pix) and ``flux`` (ADU) of every reference source
        on the image.
    variance, mask : ndarray
        As for the forced fit.
    psf : crowdsource PSF
        The image's PSF.
    fwhm_pix : float
        Its FWHM, pix.
    photometry : PhotometryConfig
        Settings of the residual fit (the PSF is held fixed).
    config : NewSourceConfig
    model : ndarray, optional
        The forced fit's own model image (:func:`photdb.photometry.measure_forced`
        with ``return_model``); without it the model is rendered from ``forced``
        with 59-pixel stamps for every star, which costs as much again as the
        forced fit's stamps.

    Returns
    -------
    candidates : astropy.table.Table
        ``x, y`` (pix), ``flux, dflux`` (ADU), ``snr``, ``sharpness`` (peak pixel /
        PSF peak), ``rchi2``, ``ref_dist_pix`` (to the nearest forced position); only
        the candidates that pass every test.
    trails : list of Trail
        Trails found (and masked).
    """
    fx = np.asarray(forced["x"], float)
    fy = np.asarray(forced["y"], float)
    ff = np.nan_to_num(np.asarray(forced["flux"], float))
    shape = data.shape
    if model is None:
        model = render_model(shape, fx, fy, ff, psf)
    elif model.shape != shape:
        raise ValueError(f"model shape {model.shape} is not the image's {shape}")
    residual = np.asarray(data, float) - model
    trails, covered = find_trails(
        residual, variance=variance, mask=mask, fwhm_pix=fwhm_pix, config=config
    )
    mask2 = np.asarray(mask).astype(np.int64) | np.where(covered, int(MaskBits.BAD_COLUMN), 0)
    # one find-and-fit pass, positions at the peaks (no PSF derivatives): 5-10x faster
    phot = dataclasses.replace(photometry, refit_psf=False, miniter=1, maxiter=1, psfderiv=False)
    det, _ = measure_sources(
        residual.astype(np.float32), variance=variance, mask=mask2, psf=psf, config=phot
    )
    out = _empty()
    if len(det) == 0:
        return out, trails
    x, y = np.asarray(det["x"], float), np.asarray(det["y"], float)
    flux, dflux = np.asarray(det["flux"], float), np.asarray(det["dflux"], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(dflux > 0, flux / dflux, 0.0)
    margin = config.mask_margin_pix
    bad = ndimage.distance_transform_edt(mask2 == 0) <= margin
    ix = np.clip(np.rint(x).astype(int), 0, shape[1] - 1)
    iy = np.clip(np.rint(y).astype(int), 0, shape[0] - 1)
    ok = (snr >= config.nsigma) & np.isfinite(x) & np.isfinite(y)
    ok &= (x >= margin) & (x <= shape[1] - 1 - margin) & (y >= margin)
    ok &= y <= shape[0] - 1 - margin
    ok &= ~bad[iy, ix]
    if len(fx):
        dref, _ = cKDTree(np.c_[fx, fy]).query(np.c_[x, y])
    else:
        dref = np.full(len(x), np.inf)
    ok &= dref >= config.min_ref_dist_fwhm * fwhm_pix
    sharp = np.full(len(x), np.inf)
    sharp[ok] = _sharpness(residual, x[ok], y[ok], flux[ok], psf, shape)
    ok &= sharp <= config.max_sharpness
    out = Table({"x": x[ok], "y": y[ok], "flux": flux[ok], "dflux": dflux[ok], "snr": snr[ok],
                 "sharpness": sharp[ok], "rchi2": np.asarray(det["rchi2"], float)[ok],
                 "ref_dist_pix": dref[ok]})  # fmt: skip
    return out, trails


def _empty() -> Table:
    names = ("x", "y", "flux", "dflux", "snr", "sharpness", "rchi2", "ref_dist_pix")
    return Table({n: np.zeros(0) for n in names})


def _sharpness(residual, x, y, flux, psf, shape) -> np.ndarray:
    """Peak pixel within 1 pix of each source over the PSF's peak pixel for its flux."""
    out = np.full(len(x), np.inf)
    if len(x) == 0:
        return out
    unit = render_model(shape, np.rint(x), np.rint(y), np.ones(len(x)), psf)
    peak_psf = unit[np.clip(np.rint(y).astype(int), 0, shape[0] - 1),
                    np.clip(np.rint(x).astype(int), 0, shape[1] - 1)]  # fmt: skip
    peak = ndimage.maximum_filter(residual, size=3)
    ix = np.clip(np.rint(x).astype(int), 0, shape[1] - 1)
    iy = np.clip(np.rint(y).astype(int), 0, shape[0] - 1)
    good = (flux > 0) & (peak_psf > 0)
    out[good] = peak[iy[good], ix[good]] / (flux[good] * peak_psf[good])
    return out


def flux_significance(
    flux: np.ndarray,
    dflux: np.ndarray,
    ref_flux: np.ndarray,
    ref_dflux: np.ndarray,
    *,
    floor_mag: float = 0.0,
) -> np.ndarray:
    """Signed significance of a change measured in flux: positive when fainter.

    ``(ref_flux - flux) / sqrt(dflux² + ref_dflux² + (floor · flux)²)`` with the
    floor converted from magnitudes; fluxes on one scale (e.g. calibrated,
    ``10**(-0.4 mag)``). Works where a magnitude does not exist (flux <= 0). NaN
    where an input is not finite.
    """
    f, df = np.asarray(flux, float), np.asarray(dflux, float)
    fr, dfr = np.asarray(ref_flux, float), np.asarray(ref_dflux, float)
    floor = floor_mag / MAG_PER_FLUX_FRACTION * np.abs(f)
    var = df**2 + dfr**2 + floor**2
    with np.errstate(divide="ignore", invalid="ignore"):
        sig = np.where(var > 0, (fr - f) / np.sqrt(var), np.nan)
    return np.where(np.isfinite(sig), sig, np.nan)
