"""PSF photometry and forced photometry with crowdsource (Schlafly et al. 2018).

Conventions at this boundary
----------------------------
* Positions: photdb uses ``x`` = column, ``y`` = row (0-based, integer at pixel
  centres).  crowdsource's ``x`` is the numpy *first* index (row) and ``y`` the
  column; the wrappers swap them on the way in and out, including the position
  uncertainties ``dx``/``dy``.
* Weights: crowdsource's ``weight`` is 1/sigma (not inverse variance).  It is
  ``1/sqrt(variance)`` and 0 where ``mask & config.bad_bits`` or the variance is
  not positive and finite.  ``dq`` is passed as int64.
* Sky: the caller subtracts the photdb (Bijaoui) sky first; crowdsource's fitted
  sky model is off (``nskyx = nskyy = 0``).  crowdsource still removes a *residual*
  local sky, the median of (image - model) in 20-pix boxes (``measure_sources``) or
  100-pix boxes (``measure_forced``, unless ``forced_local_sky=False``); this is the
  unresolved-star light.  The ``sky`` column is that residual (ADU, relative to the
  photdb sky).
* Flux normalisation: the PSF is crowdsource's ``VariableMoffatPixelizedPSF`` with
  ``normalize=-1``: a Moffat (``moffat_beta``, unit integral over the infinite plane)
  plus a pixelised ``psf_pixsz`` x ``psf_pixsz`` residual.  ``flux`` is therefore
  the *total* flux of that model (ADU), not the flux inside a stamp: for stars with
  true Moffat beta=3 wings it is unbiased (measured 1.000 +- 0.003); real wings that
  differ from beta=3 beyond ~4 pix leave a constant aperture correction (-2.5 % for
  true beta=2.5), which the zero point / reference calibration absorbs.

The module is the whole boundary with crowdsource (~540 lines): the conventions
above hold for every function in it, so it is kept in one file.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any

import crowdsource.crowdsource_base as cs
import crowdsource.psf as psfmod
import numpy as np
from astropy.table import Table
from scipy import ndimage, optimize

from photdb.fitting import flux_to_mag, robust_sigma

__all__ = [
    "PhotometryConfig",
    "estimate_fwhm",
    "fit_psf_on_stars",
    "initial_psf",
    "measure_forced",
    "measure_sources",
    "render_model",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhotometryConfig:
    """Settings of the PSF-photometry stage (crowdsource).

    Attributes
    ----------
    threshold : float, default 5.0
        Detection threshold in sigma of the PSF-convolved significance image.
    moffat_beta : float, default 3.0
        Moffat beta of the PSF model (crowdsource's choice); sets the wings and so
        the total-flux normalisation.
    refit_psf : bool, default True
        Refit crowdsource's variable Moffat + pixelised PSF at each iteration.
    psf_order : int, default 1
        Polynomial order of the PSF's spatial variation (0 = constant); falls back to
        0 when there are too few PSF stars.
    psf_pixsz : int, default 9
        Side (pix) of the pixelised PSF residual stamp.
    psf_nkeep : int, default 200
        At most this many of the brightest clean stars are used to fit the PSF.
    psf_min_stars : int, default 5
        Keep the previous PSF if fewer clean stars are available.
    miniter, maxiter : int, default 4, 10
        Minimum / maximum number of crowdsource find-and-fit iterations.
    psfderiv : bool, default True
        Fit PSF derivatives (centroid shifts) along with the fluxes.
    blendthreshu : float, default 2.0
        crowdsource's deblending threshold in the first iterations.
    psfvalsharpcutfac, psfsharpsat : float, default 0.7, 0.7
        crowdsource's sharpness cut parameters (used only with its sharp mask bit).
    maxstars : int, default 320000
        Stop adding sources beyond this many (DECam production value).
    subregions : tuple of int, default (1, 1)
        crowdsource fit tiles ``(n_rows, n_cols)`` (its ntilex, ntiley); use (4, 2) for
        a full 4096x2048 DECam chip to bound memory.
    bad_bits : int, default 31
        Mask bits whose pixels get zero weight (all of ``MaskBits``).
    forced_niter : int, default 4
        Iterations of ``fit_im_force``.
    forced_recentroid : bool, default False
        If True, forced positions may move (psfderiv on, at most 3 pix); by default
        they are held fixed at the given (reference) positions, as the seed does.
    forced_local_sky : bool, default True
        Let ``fit_im_force`` remove the residual local sky (100-pix median of
        image - model), matching what ``fit_im`` does on the reference.
    forced_cache_psf : bool, default True
        Render each forced star's PSF stamps once instead of at every iteration
        (crowdsource re-renders them although positions and PSF are fixed; its own
        comment says "should really only be done once").  Results are identical
        (tested); about 2/3 of ``fit_im_force``'s time was that rendering.
    fwhm_default : float, default 4.0
        FWHM guess (pix) used when :func:`estimate_fwhm` finds no usable star.
    """

    threshold: float = 5.0
    moffat_beta: float = 3.0
    refit_psf: bool = True
    psf_order: int = 1
    psf_pixsz: int = 9
    psf_nkeep: int = 200
    psf_min_stars: int = 5
    miniter: int = 4
    maxiter: int = 10
    psfderiv: bool = True
    blendthreshu: float = 2.0
    psfvalsharpcutfac: float = 0.7
    psfsharpsat: float = 0.7
    maxstars: int = 320000
    subregions: tuple[int, int] = (1, 1)
    bad_bits: int = 31
    forced_niter: int = 4
    forced_recentroid: bool = False
    forced_local_sky: bool = True
    forced_cache_psf: bool = True
    fwhm_default: float = 4.0


@contextlib.contextmanager
def _quiet():
    """Silence crowdsource's prints and its deprecated-scipy-namespace warnings."""
    buf = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*scipy.ndimage")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="crowdsource")
        yield
    if buf.getvalue():
        log.debug("crowdsource: %s", buf.getvalue().strip())


@contextlib.contextmanager
def _gc_frozen():
    """Objects that exist before a crowdsource call are left out of its ``gc.collect()``.

    crowdsource calls ``gc.collect()`` at every iteration (and every fit tile); a full
    collection walks every object of the process (a big catalogue, a web of astropy
    objects), which cost ~9 % of ``fit_im_force``.  ``gc.freeze`` moves the existing
    objects to the permanent generation for the duration of the call; only the
    collector's work changes, never a number.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _CachedPSF:
    """A crowdsource PSF whose stamps are rendered once per (positions, size, deriv).

    ``fit_im_force`` asks the PSF for the same stamps at every iteration when the
    positions and the PSF are held fixed; this returns the first rendering again.
    The PSF is a pure function of those arguments, and crowdsource only reads the
    stamps, so the results are unchanged.
    """

    def __init__(self, psf: Any) -> None:
        self._psf = psf
        self._cache: dict[tuple, Any] = {}

    def __call__(self, x, y, stampsz=None, deriv=False):
        key = (stampsz, bool(deriv), np.asarray(x).tobytes(), np.asarray(y).tobytes())
        if key not in self._cache:
            self._cache[key] = self._psf(x, y, stampsz=stampsz, deriv=deriv)
        return self._cache[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._psf, name)


def _psf_fitfun(
    x, y, xcen, ycen, stamp, imstamp, modstamp, isig, *, order, pixsz, beta, min_stars,
    fwhm_guess=4.0, nkeep=200, plot=False, name=None,
):  # fmt: skip
    """Refit a VariableMoffatPixelizedPSF from crowdsource's stamps.

    A port of ``crowdsource.psf.fit_variable_moffat_psf`` (whose float ``nperpar``
    fails under Python 3) with a minimum star count and an order fallback.  Stamps
    and coordinates are in crowdsource (row, column) order.
    """
    shiftx = xcen + x - np.round(x)
    shifty = ycen + y - np.round(y)
    ok = psfmod.select_stamps(stamp, imstamp, isig, shiftx, shifty)
    if ok.sum() < min_stars:
        return None
    x, y, shiftx, shifty, stamp, modstamp, isig = (
        q[ok] for q in (x, y, shiftx, shifty, stamp, modstamp, isig)
    )
    if len(x) > nkeep:
        keep = np.argsort(-np.sum(stamp, axis=(1, 2)))[:nkeep]
        x, y, shiftx, shifty, stamp, modstamp, isig = (
            q[keep] for q in (x, y, shiftx, shifty, stamp, modstamp, isig)
        )
    if len(x) < 5 * (order + 1) * (order + 2) // 2:
        order = 0
    nper = (order + 1) * (order + 2) // 2
    stamp, isig = psfmod.shift_and_normalize_stamps(stamp, modstamp, isig, shiftx, shifty)
    isig = np.clip(isig, 0.0, 1e4)
    isig_nocen = isig.copy()
    if stamp.shape[0] > 50:
        psfmod.central_stamp(isig_nocen, censize=pixsz)[:, :, :] = 0.0

    def moffat_par(p):
        return [psfmod.fill_param_matrix(p[i * nper : (i + 1) * nper], order) for i in range(3)]

    def chimoff(p):
        fw, xy, yy = moffat_par(p[:-1])
        mod = psfmod.VariableMoffatPSF(fw, beta, xy=xy, yy=yy, normalize=-1)
        r = stamp - p[-1] * mod.render_model(x, y, stampsz=stamp.shape[-1])
        # float32 output makes leastsq use float32-sized finite-difference steps;
        # the PSF matrices are float32, so float64-sized steps would vanish.
        return psfmod.damper(r * isig_nocen, 3.0).reshape(-1).astype("f4")

    guess = np.zeros(3 * nper + 1)
    const = nper - order - 1
    guess[const] = fwhm_guess  # the Moffat + pixel-residual split is degenerate:
    # start from the measured FWHM so the Moffat carries the true wings
    guess[2 * nper + const] = 1.0  # yy
    guess[-1] = 1.0  # normalisation
    par = optimize.leastsq(chimoff, guess)[0]
    fw, xy, yy = moffat_par(par[:-1])
    moff = psfmod.VariableMoffatPSF(fw, beta, xy=xy, yy=yy, normalize=-1)
    resid = stamp - par[-1] * moff.render_model(x, y, stampsz=stamp.shape[-1])
    rc = psfmod.central_stamp(resid, censize=pixsz)
    ic = psfmod.central_stamp(isig, censize=pixsz)
    xs, ys = x / 1000.0, y / 1000.0

    def chipix(p, r, w):
        m = np.polynomial.polynomial.polyval2d(xs, ys, psfmod.fill_param_matrix(p, order))
        return psfmod.damper((r - m) * w, 3.0).astype("f4")

    res = np.zeros((nper, pixsz, pixsz), dtype="f4")
    for i in range(pixsz):
        for j in range(pixsz):
            res[:, i, j] = (
                optimize.leastsq(chipix, np.zeros(nper), args=(rc[:, i, j], ic[:, i, j]))[0]
                / par[-1]
            )
    return psfmod.VariableMoffatPixelizedPSF(
        psfmod.fill_param_matrix(res, order), fw, beta, xy=xy, yy=yy
    )


def initial_psf(fwhm_pix: float, *, config: PhotometryConfig = PhotometryConfig()) -> Any:
    """Constant Moffat crowdsource PSF of the given FWHM (pix), ready to be refit.

    Returns a ``crowdsource.psf.VariableMoffatPixelizedPSF`` (zero pixel residual,
    total-flux normalisation) with a ``fitfun`` attribute for ``refit_psf``.
    """
    n = config.psf_pixsz
    psf = psfmod.VariableMoffatPixelizedPSF(
        np.zeros((1, 1, n, n), dtype="f4"), [[float(fwhm_pix)]], config.moffat_beta
    )
    psf.fitfun = partial(
        _psf_fitfun,
        order=config.psf_order,
        pixsz=n,
        beta=config.moffat_beta,
        min_stars=config.psf_min_stars,
        fwhm_guess=float(fwhm_pix),
    )
    return psf


def estimate_fwhm(
    data: np.ndarray,
    *,
    variance: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    nsigma: float = 30.0,
    max_stars: int = 100,
    half: int = 7,
    beta: float = 3.0,
) -> float:
    """Median FWHM (pix) of bright isolated stars from circular Moffat fits.

    Parameters
    ----------
    data : ndarray
        Sky-subtracted image (ADU).
    variance : ndarray, optional
        Variance (ADU^2); default a global robust estimate.
    mask : ndarray, optional
        Non-zero pixels are avoided (stars whose stamp touches one are skipped).
    nsigma : float, optional
        Peak significance of the stars used.
    max_stars : int, optional
        Use at most this many of the brightest usable peaks.
    half : int, optional
        Stamp half-size (pix).
    beta : float, optional
        Moffat beta held fixed in the fits (match ``PhotometryConfig.moffat_beta``).

    Returns
    -------
    float
        FWHM in pixels, or NaN if no star could be fitted.
    """
    d = np.asarray(data, dtype=np.float64)
    if variance is None:
        sig = robust_sigma(d)
        noise = np.full(d.shape, max(sig, 1e-12))
    else:
        noise = np.sqrt(np.clip(variance, 1e-30, None))
    bad = np.zeros(d.shape, bool) if mask is None else np.asarray(mask) != 0
    sm = ndimage.uniform_filter(d, 3)
    peak = (sm == ndimage.maximum_filter(sm, size=2 * half + 1)) & (d > nsigma * noise)
    # not near the border nor a masked pixel
    peak &= ~ndimage.maximum_filter(bad, size=2 * half + 1)
    peak[:half, :] = peak[-half:, :] = peak[:, :half] = peak[:, -half:] = False
    iy, ix = np.nonzero(peak)
    if iy.size == 0:
        return float("nan")
    order = np.argsort(-d[iy, ix])[:max_stars]
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    fwhms = []
    for k in order:
        st = d[iy[k] - half : iy[k] + half + 1, ix[k] - half : ix[k] + half + 1]

        def resid(p, st=st):
            a, x0, y0, fw, b = p
            alpha2 = (fw / 2.0) ** 2 / (2.0 ** (1.0 / beta) - 1.0)
            r2 = (xx - x0) ** 2 + (yy - y0) ** 2
            return (a * (1.0 + r2 / alpha2) ** (-beta) + b - st).ravel()

        p0 = [st[half, half], 0.0, 0.0, 3.0, np.median(st)]
        with np.errstate(all="ignore"):
            p, ier = optimize.leastsq(resid, p0)
        if ier in (1, 2, 3, 4) and 0.7 < abs(p[3]) < 2 * half and max(abs(p[1]), abs(p[2])) < 1.5:
            fwhms.append(abs(p[3]))
    return float(np.median(fwhms)) if fwhms else float("nan")


def _weight(variance: np.ndarray, mask: np.ndarray | None, bad_bits: int) -> np.ndarray:
    v = np.asarray(variance, dtype=np.float64)
    good = np.isfinite(v) & (v > 0)
    if mask is not None:
        good &= (np.asarray(mask).astype(np.int64) & bad_bits) == 0
    w = np.zeros(v.shape, dtype=np.float32)
    w[good] = 1.0 / np.sqrt(v[good])
    return w


def _to_table(stars: np.ndarray, shape: tuple[int, int]) -> Table:
    """crowdsource structured array -> photdb Table (x = column, y = row)."""
    flux = stars["flux"].astype(np.float64)
    dflux = stars["dflux"].astype(np.float64)
    mag, magerr = flux_to_mag(flux, dflux)
    t = Table()
    t["x"] = np.asarray(stars["y"], dtype=np.float64)
    t["y"] = np.asarray(stars["x"], dtype=np.float64)
    t["flux"] = flux
    t["dflux"] = dflux
    t["mag_inst"] = mag
    t["magerr_inst"] = magerr
    t["fwhm_pix"] = stars["fwhm"].astype(np.float64)
    for name in ("qf", "rchi2", "fracflux", "fluxlbs", "dfluxlbs", "spread_model"):
        t[name] = stars[name].astype(np.float64)
    t["dx"] = stars["dy"].astype(np.float64)
    t["dy"] = stars["dx"].astype(np.float64)
    t["sky"] = stars["sky"].astype(np.float64)
    t["flags"] = stars["flags"].astype(np.int64) if "flags" in stars.dtype.names else 0
    units = {"x": "pix", "y": "pix", "dx": "pix", "dy": "pix", "fwhm_pix": "pix",
             "flux": "adu", "dflux": "adu", "fluxlbs": "adu", "dfluxlbs": "adu", "sky": "adu",
             "mag_inst": "mag", "magerr_inst": "mag"}  # fmt: skip
    for k, u in units.items():
        t[k].unit = u
    t.meta["image_shape"] = tuple(int(s) for s in shape)
    return t


def measure_sources(
    data: np.ndarray,
    *,
    variance: np.ndarray,
    mask: np.ndarray | None = None,
    fwhm_pix: float | None = None,
    psf: Any = None,
    config: PhotometryConfig = PhotometryConfig(),
) -> tuple[Table, Any]:
    """Find and PSF-fit all sources with ``crowdsource.fit_im``.

    Parameters
    ----------
    data : ndarray (ny, nx)
        *Sky-subtracted* image in ADU (e.g. ``img - estimate_sky(img)``).
    variance : ndarray (ny, nx)
        Per-pixel variance in ADU^2.
    mask : ndarray (ny, nx), optional
        :class:`photdb.image.MaskBits` mask; ``config.bad_bits`` pixels get zero weight
        and the bits at each source's pixel are returned in ``flags``.
    fwhm_pix : float, optional
        FWHM guess (pix) for the initial Moffat; estimated with :func:`estimate_fwhm`
        when omitted.  Ignored if ``psf`` is given.
    psf : crowdsource PSF, optional
        Starting PSF (e.g. from :func:`initial_psf`); refit if ``config.refit_psf``.
    config : PhotometryConfig, optional

    Returns
    -------
    catalog : astropy.table.Table
        One row per source: ``x, y`` (pix; x = column, y = row), ``flux, dflux`` (ADU,
        total PSF-model flux), ``mag_inst, magerr_inst`` (mag, -2.5 log10 flux; NaN if
        flux <= 0), ``fwhm_pix`` (crowdsource N_eff FWHM, pix), ``qf`` (unmasked PSF
        fraction), ``rchi2``, ``fracflux`` (fraction of the stamp flux from this
        source), ``fluxlbs, dfluxlbs`` (local-background flux, ADU), ``spread_model``,
        ``dx, dy`` (position uncertainties, pix), ``sky`` (residual local sky, ADU),
        ``flags`` (mask bits at the source pixel).
    psf : crowdsource PSF
        The fitted PSF of *this* image; pass it to :func:`measure_forced` on the same
        image (each search image needs its own PSF).
    """
    im = np.asarray(data, dtype=np.float32)
    weight = _weight(variance, mask, config.bad_bits)
    dq = np.zeros(im.shape, np.int64) if mask is None else np.asarray(mask).astype(np.int64)
    if psf is None:
        if fwhm_pix is None:
            fwhm_pix = estimate_fwhm(im, variance=variance, mask=mask)
            if not np.isfinite(fwhm_pix):
                fwhm_pix = config.fwhm_default
        psf = initial_psf(fwhm_pix, config=config)
    with _quiet(), _gc_frozen():
        stars, _model, _sky, psf = cs.fit_im(
            im, psf, weight=weight, dq=dq, psfderiv=config.psfderiv, nskyx=0, nskyy=0,
            refit_psf=config.refit_psf, miniter=config.miniter, maxiter=config.maxiter,
            maxstars=config.maxstars, ntilex=config.subregions[0],
            ntiley=config.subregions[1], threshold=config.threshold,
            blendthreshu=config.blendthreshu, psfvalsharpcutfac=config.psfvalsharpcutfac,
            psfsharpsat=config.psfsharpsat,
        )  # fmt: skip
    return _to_table(stars, im.shape), psf


def fit_psf_on_stars(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    variance: np.ndarray,
    mask: np.ndarray | None = None,
    fwhm_pix: float,
    niter: int = 1,
    config: PhotometryConfig = PhotometryConfig(),
) -> tuple[Table, Any]:
    """crowdsource's PSF fitted on known stars, without a full-image find-and-fit.

    ``fit_im_force`` at the given positions with the PSF refit at every iteration
    (``refit_psf``: the same variable Moffat + pixelised PSF and fitting function as
    :func:`measure_sources`), starting from a Moffat of ``fwhm_pix``.  The stars are
    not recentred (the PSF fit takes each star's measured centroid offset into
    account; crowdsource moves them all by the PSF model's mean centroid shift only).
    Only these stars are in the model (e.g. every peak of
    :func:`photdb.detection.detect_calibration_stars`; crowdsource picks its PSF stars
    among them); the residual local sky is not refit (the caller subtracted the sky).

    Parameters
    ----------
    data : ndarray (ny, nx)
        Sky-subtracted image (ADU).
    x, y : array_like
        Centroids (pix; x = column, y = row) of the stars.
    variance, mask : ndarray
        As in :func:`measure_sources`.
    fwhm_pix : float
        Initial FWHM (pix).
    niter : int, default 1
        ``fit_im_force`` iterations (PSF refits).
    config : PhotometryConfig, optional

    Returns
    -------
    catalog : astropy.table.Table
        :func:`measure_sources` columns for these stars, in input order, measured
        before the last PSF refit (with the initial Moffat when ``niter`` is 1).
    psf : crowdsource PSF
        The fitted PSF, for :func:`measure_forced` on the same image.
    """
    xs = np.array(x, dtype=np.float32, ndmin=1)
    ys = np.array(y, dtype=np.float32, ndmin=1)
    if xs.size == 0:
        raise ValueError("fit_psf_on_stars needs at least one star")
    im = np.asarray(data, dtype=np.float32)
    weight = _weight(variance, mask, config.bad_bits)
    dq = np.zeros(im.shape, np.int64) if mask is None else np.asarray(mask).astype(np.int64)
    psf = initial_psf(fwhm_pix, config=config)
    with _quiet():
        stars, _model, _sky, psf = cs.fit_im_force(
            im, ys.copy(), xs.copy(), psf, weight=weight, dq=dq, psfderiv=False, nskyx=0,
            nskyy=0, refit_psf=config.refit_psf, niter=max(niter, 1), refit_sky=False,
            startsky=np.zeros(im.shape, np.float32),
        )  # fmt: skip
    return _to_table(stars, im.shape), psf


def measure_forced(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    variance: np.ndarray,
    mask: np.ndarray | None = None,
    psf: Any,
    config: PhotometryConfig = PhotometryConfig(),
    return_model: bool = False,
) -> Table | tuple[Table, np.ndarray]:
    """Forced PSF photometry at fixed positions with ``crowdsource.fit_im_force``.

    Parameters
    ----------
    data : ndarray (ny, nx)
        Sky-subtracted image (ADU).
    x, y : array_like
        Positions on *this* image (pix; x = column, y = row), e.g. reference
        sources transformed through the WCS.  Held fixed unless
        ``config.forced_recentroid``.
    variance, mask : ndarray
        As in :func:`measure_sources`.
    psf : crowdsource PSF
        The PSF of this image (from :func:`measure_sources` on it).
    config : PhotometryConfig, optional
    return_model : bool, default False
        Also return the fit's model image.

    Returns
    -------
    astropy.table.Table
        Same columns as :func:`measure_sources`, one row per input position, in input
        order; plus ``x_shift, y_shift`` (pix), the last centroid offsets (0 when
        positions are held fixed).  Positions within 0.5 pix of the edge are clipped
        by crowdsource to 0.499 pix inside.
    model : ndarray (ny, nx), float32
        With ``return_model``: the fitted image, every star with its fitted flux in
        the stamp the fit used (crowdsource sizes stamps by brightness) plus the
        fit's sky; ``data - model`` is the fit's residual.
    """
    xs = np.array(x, dtype=np.float32, ndmin=1)
    ys = np.array(y, dtype=np.float32, ndmin=1)
    if xs.shape != ys.shape:
        raise ValueError("x and y must have the same shape")
    if xs.size == 0:
        raise ValueError("measure_forced needs at least one position")
    im = np.asarray(data, dtype=np.float32)
    weight = _weight(variance, mask, config.bad_bits)
    dq = np.zeros(im.shape, np.int64) if mask is None else np.asarray(mask).astype(np.int64)
    kw: dict[str, Any] = {}
    if not config.forced_local_sky:
        kw = {"refit_sky": False, "startsky": np.zeros(im.shape, np.float32)}
    if config.forced_cache_psf and not config.forced_recentroid:
        psf = _CachedPSF(psf)
    with _quiet(), _gc_frozen():
        # crowdsource order: first array = rows (our y)
        stars, model, _sky, _psf = cs.fit_im_force(
            im, ys.copy(), xs.copy(), psf, weight=weight, dq=dq,
            psfderiv=config.forced_recentroid, nskyx=0, nskyy=0, refit_psf=False,
            niter=config.forced_niter, **kw,
        )  # fmt: skip
    t = _to_table(stars, im.shape)
    t["x_shift"] = stars["delty"].astype(np.float64) if config.forced_recentroid else 0.0
    t["y_shift"] = stars["deltx"].astype(np.float64) if config.forced_recentroid else 0.0
    t["x_shift"].unit = t["y_shift"].unit = "pix"
    if return_model:
        return t, np.asarray(model, dtype=np.float32)
    return t


def render_model(
    shape: tuple[int, int], x: np.ndarray, y: np.ndarray, flux: np.ndarray, psf: Any
) -> np.ndarray:
    """Model image (ADU) of point sources at (x = column, y = row) with a crowdsource PSF.

    Useful for residual images (``data - sky - render_model(...)``) and injections.
    """
    xs = np.asarray(x, dtype=np.float32)
    ys = np.asarray(y, dtype=np.float32)
    f = np.asarray(flux, dtype=np.float32)
    with _quiet():
        return cs.build_model(ys, xs, f, shape[0], shape[1], psf=psf, stampsz=59)
