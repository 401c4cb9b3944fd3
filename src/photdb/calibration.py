"""Photometric calibration of a search catalogue against its reference.

Following the pipeline notebook: the search image's forced photometry is put on
the reference image's system by a zero point plus a 4th-order 2-D Chebyshev
surface in Δmag(x, y) (the notebook saw ~10 % variations across a chip); the
search uncertainties get a 0.01 mag floor and are then expanded by the factor
that brings χ²/ν of the search-vs-reference comparison to 1.

Sign convention throughout: ``dmag = mag_ref - mag_search`` and the correction
is *added* to the search magnitudes. No I/O happens here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from astropy.table import Column, Table
from numpy.polynomial import chebyshev as C
from scipy.optimize import brentq

__all__ = [
    "CalibrationConfig",
    "CalibrationResult",
    "ChebyshevSurface",
    "ErrorScale",
    "apply_error_floor",
    "calibrate_search_catalog",
    "fit_delta_mag_surface",
    "fit_zero_point",
    "rescale_errors",
]

MAD_TO_SIGMA = 1.482602218505602


@dataclass(frozen=True)
class CalibrationConfig:
    """Settings of the photometric calibration stage.

    Attributes
    ----------
    chebyshev_order : int
        Order of the 2-D Chebyshev Δmag(x, y) surface. Default 4 (notebook).
    total_degree : bool
        False (default): full tensor product T_i(x) T_j(y), ``i, j <= order``
        (25 terms at order 4), the convention of numpy's
        ``chebvander2d(x, y, [4, 4])``; it represents separable patterns such as
        vignetting ``f(x) g(y)`` (a smooth 8 % radial pattern is fitted to
        < 0.1 %, against ~1 % with total degree). True: only terms with
        ``i + j <= order`` (15 terms), for sparse catalogues.
    clip_sigma : float
        Rejection threshold in robust sigmas (1.4826 MAD of the error-normalised
        residuals) for the zero point and the surface fit. Default 3.0.
    max_iter : int
        Maximum fit-and-clip iterations. Default 10.
    min_stars : int
        Fewer usable stars raise ``ValueError``. Default 50.
    fit_mag_range : tuple of float or None
        ``(bright, faint)`` reference-magnitude limits of the stars used for the
        fits (exclude saturated and faint stars). Default None (no cut).
    max_fit_magerr : float
        Largest search and reference uncertainty, mag, of a star used for the
        fits. Default 0.05.
    error_floor_mag : float
        Uncertainty floor on search magnitudes, mag. Default 0.01 (notebook).
    floor_mode : {"max", "quadrature"}
        How the floor is applied: ``max(err, floor)`` (default, the notebook's
        "uncertainty floor") or ``sqrt(err² + floor²)``.
    allow_shrink : bool
        Allow the χ²/ν factor below 1. Default False (never shrink errors).
    """

    chebyshev_order: int = 4
    total_degree: bool = False
    clip_sigma: float = 3.0
    max_iter: int = 10
    min_stars: int = 50
    fit_mag_range: tuple[float, float] | None = None
    max_fit_magerr: float = 0.05
    error_floor_mag: float = 0.01
    floor_mode: Literal["max", "quadrature"] = "max"
    allow_shrink: bool = False


def _robust_sigma(values: np.ndarray) -> float:
    return float(MAD_TO_SIGMA * np.median(np.abs(values - np.median(values))))


def fit_zero_point(
    mag_inst: np.ndarray,
    mag_ref: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    clip_sigma: float = 3.0,
    max_iter: int = 10,
) -> tuple[float, float, int]:
    """Robust zero point ``zp`` such that ``mag_inst + zp ≈ mag_ref``.

    Differences further than ``clip_sigma`` robust sigmas (1.4826 MAD) from their
    median are rejected iteratively; the zero point is then the median of the
    survivors, or their weighted mean when ``weights`` (e.g. 1/σ²) are given.

    Returns
    -------
    zp : float
        Zero point, mag.
    scatter : float
        Robust standard deviation (1.4826 MAD) of the surviving differences.
    n : int
        Number of surviving stars.
    """
    d = np.asarray(mag_ref, float) - np.asarray(mag_inst, float)
    w = np.ones_like(d) if weights is None else np.asarray(weights, float)
    good = np.isfinite(d) & np.isfinite(w) & (w > 0)
    if not good.any():
        raise ValueError("no finite magnitude pairs for the zero point")
    keep = good.copy()
    for _ in range(max_iter):
        med = np.median(d[keep])
        sig = _robust_sigma(d[keep])
        new = good & (np.abs(d - med) <= clip_sigma * max(sig, 1e-6))
        if np.array_equal(new, keep):
            break
        keep = new
    if weights is None:
        zp = float(np.median(d[keep]))
    else:
        zp = float(np.sum(w[keep] * d[keep]) / np.sum(w[keep]))
    return zp, _robust_sigma(d[keep]), int(keep.sum())


def _terms(order: int, total_degree: bool) -> np.ndarray:
    """Boolean (order+1, order+1) mask of the Chebyshev terms used."""
    i, j = np.indices((order + 1, order + 1))
    return (i + j <= order) if total_degree else np.ones_like(i, dtype=bool)


@dataclass(frozen=True, eq=False)
class ChebyshevSurface:
    """A 2-D Chebyshev series over an image, ``Σ c[i, j] T_i(x') T_j(y')``.

    Attributes
    ----------
    coeffs : numpy.ndarray
        ``(order + 1, order + 1)`` coefficients, mag; ``coeffs[i, j]`` multiplies
        ``T_i`` in x and ``T_j`` in y (zero for unused terms).
    shape : tuple of int
        ``(ny, nx)`` of the image: pixel centres ``x`` in ``[0, nx - 1]`` map
        linearly so the pixel *edges* ``-0.5`` and ``nx - 0.5`` go to -1 and +1.
    """

    coeffs: np.ndarray
    shape: tuple[int, int]

    @property
    def order(self) -> int:
        """Order of the series."""
        return self.coeffs.shape[0] - 1

    def scaled(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map pixel coordinates to the [-1, 1] Chebyshev domain."""
        ny, nx = self.shape
        xs = (2.0 * np.asarray(x, float) + 1.0) / nx - 1.0
        ys = (2.0 * np.asarray(y, float) + 1.0) / ny - 1.0
        return xs, ys

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Evaluate at pixel positions (0-based, x = column, y = row)."""
        xs, ys = self.scaled(x, y)
        return C.chebval2d(xs, ys, self.coeffs)

    def to_list(self) -> list[list[float]]:
        """Coefficients as nested lists (for JSON)."""
        return self.coeffs.tolist()


def fit_delta_mag_surface(
    x: np.ndarray,
    y: np.ndarray,
    dmag: np.ndarray,
    dmag_err: np.ndarray,
    *,
    shape: tuple[int, int],
    config: CalibrationConfig = CalibrationConfig(),
) -> tuple[ChebyshevSurface, np.ndarray]:
    """Weighted, robustly clipped Chebyshev fit of Δmag(x, y).

    Parameters
    ----------
    x, y : numpy.ndarray
        Pixel positions, 0-based (x = column, y = row).
    dmag : numpy.ndarray
        ``mag_ref - mag_search``, mag.
    dmag_err : numpy.ndarray
        Uncertainty of ``dmag``, mag (weights are ``1 / dmag_err²``; the
        caller should already include any floor).
    shape : tuple of int
        ``(ny, nx)`` of the image.
    config : CalibrationConfig
        Order, term set, clipping.

    Returns
    -------
    surface : ChebyshevSurface
    used : numpy.ndarray of bool
        Stars kept in the final fit.

    Notes
    -----
    The first mask keeps stars within ``clip_sigma`` robust sigmas of the
    median Δmag (so variables never enter the first fit). Each iteration then
    fits, computes normalised residuals ``r / err`` for *all* stars, and keeps
    those within ``clip_sigma`` x 1.4826 MAD of their median (stars may return),
    until the mask is stable.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    dmag, err = np.asarray(dmag, float), np.asarray(dmag_err, float)
    good = np.isfinite(x) & np.isfinite(y) & np.isfinite(dmag) & np.isfinite(err) & (err > 0)
    if good.sum() < config.min_stars:
        raise ValueError(f"{int(good.sum())} usable stars < min_stars={config.min_stars}")
    order = config.chebyshev_order
    tmask = _terms(order, config.total_degree)
    proto = ChebyshevSurface(np.zeros((order + 1, order + 1)), tuple(shape))
    xs, ys = proto.scaled(x[good], y[good])
    vander = C.chebvander2d(xs, ys, [order, order])[:, tmask.ravel()]
    d, e = dmag[good], err[good]
    norm = (d - np.median(d)) / e
    keep = np.abs(norm - np.median(norm)) <= config.clip_sigma * max(_robust_sigma(norm), 1e-12)
    for _ in range(config.max_iter):
        if keep.sum() < max(config.min_stars, vander.shape[1]):
            raise ValueError("too few stars survive clipping for the surface fit")
        a = vander[keep] / e[keep, None]
        sol, *_ = np.linalg.lstsq(a, d[keep] / e[keep], rcond=None)
        norm = (d - vander @ sol) / e
        sig = _robust_sigma(norm[keep])
        new = np.abs(norm - np.median(norm[keep])) <= config.clip_sigma * max(sig, 1e-12)
        if np.array_equal(new, keep):
            break
        keep = new
    coeffs = np.zeros((order + 1, order + 1))
    coeffs[tmask] = sol
    used = np.zeros(dmag.shape, dtype=bool)
    used[np.flatnonzero(good)[keep]] = True
    return ChebyshevSurface(coeffs, (int(shape[0]), int(shape[1]))), used


def apply_error_floor(
    err: np.ndarray, *, floor: float = 0.01, mode: Literal["max", "quadrature"] = "max"
) -> np.ndarray:
    """Apply an uncertainty floor: ``max(err, floor)`` or ``sqrt(err² + floor²)``."""
    err = np.asarray(err, float)
    if mode == "max":
        return np.maximum(err, floor)  # NaN stays NaN
    if mode == "quadrature":
        return np.hypot(err, floor)
    raise ValueError(f"unknown floor mode {mode!r}")


@dataclass(frozen=True)
class ErrorScale:
    """Result of :func:`rescale_errors`.

    Attributes
    ----------
    factor : float
        Multiplier of the (floored) search uncertainties.
    chi2nu_before : float
        χ²/ν with floored but unscaled search errors.
    chi2nu_after : float
        χ²/ν after scaling (1 unless clamped at 1 or no solution exists).
    n : int
        Number of comparison stars.
    dof : int
        Degrees of freedom ``n - dof_params``.
    """

    factor: float
    chi2nu_before: float
    chi2nu_after: float
    n: int
    dof: int


def rescale_errors(
    resid: np.ndarray,
    err: np.ndarray,
    *,
    ref_err: np.ndarray | None = None,
    floor: float = 0.01,
    floor_mode: Literal["max", "quadrature"] = "max",
    dof_params: int = 0,
    allow_shrink: bool = False,
) -> ErrorScale:
    """Factor on the search errors that makes χ²/ν of the comparison equal 1.

    Parameters
    ----------
    resid : numpy.ndarray
        ``mag_ref - mag_search_corrected`` for the comparison stars, mag.
    err : numpy.ndarray
        Search uncertainties, mag, *before* the floor.
    ref_err : numpy.ndarray, optional
        Reference uncertainties, mag (not floored, not scaled).
    floor, floor_mode
        The floor applied first, see :func:`apply_error_floor`.
    dof_params : int
        Fitted parameters to subtract from the number of stars (zero point and
        surface terms).
    allow_shrink : bool
        If False (default) the factor is never below 1.

    Returns
    -------
    ErrorScale

    Notes
    -----
    ``χ²(k) = Σ r² / (k² σ_s² + σ_ref²)`` with ``σ_s`` the floored search error;
    only the search error is scaled, since the reference defines the system.
    ``χ²(k)/ν = 1`` is solved with Brent's method (χ² decreases monotonically
    with k); without reference errors this is ``k = sqrt(χ²/ν)``. If even
    ``k → 0`` gives χ²/ν < 1, the reference errors alone over-explain the
    scatter and k is set to 1 (or, with ``allow_shrink``, to a tiny value).
    Residuals of a sigma-clipped fit are slightly truncated, so χ²/ν of the
    clipped set underestimates the true variance by ~1.4 % at 3σ clipping.
    """
    r = np.asarray(resid, float)
    s = apply_error_floor(err, floor=floor, mode=floor_mode)
    sr = np.zeros_like(s) if ref_err is None else np.nan_to_num(np.asarray(ref_err, float))
    good = np.isfinite(r) & np.isfinite(s)
    r, s, sr = r[good], s[good], sr[good]
    n = int(r.size)
    dof = n - int(dof_params)
    if dof <= 0:
        raise ValueError("no degrees of freedom for the error rescaling")

    def chi2nu(k: float) -> float:
        return float(np.sum(r**2 / (k**2 * s**2 + sr**2)) / dof)

    before = chi2nu(1.0)
    if np.all(sr == 0):
        k = float(np.sqrt(before))
    else:
        lo = 1e-6
        if chi2nu(lo) <= 1.0:
            k = lo
        else:
            hi = max(2.0, np.sqrt(before) * 2.0)
            while chi2nu(hi) > 1.0:
                hi *= 2.0
            k = float(brentq(lambda kk: chi2nu(kk) - 1.0, lo, hi, xtol=1e-10))
    if not allow_shrink:
        k = max(k, 1.0)
    return ErrorScale(factor=k, chi2nu_before=before, chi2nu_after=chi2nu(k), n=n, dof=dof)


@dataclass(frozen=True)
class CalibrationResult:
    """JSON-friendly summary of :func:`calibrate_search_catalog`.

    Attributes
    ----------
    zp : float
        Zero point added to instrumental magnitudes, mag.
    zp_scatter : float
        Robust scatter of ``mag_ref - (mag_inst)`` about ``zp``, mag.
    cheb_coeffs : list of list of float
        Chebyshev coefficients of the Δmag surface (see :class:`ChebyshevSurface`).
    shape : tuple of int
        ``(ny, nx)`` defining the surface domain.
    chi2nu_before : float
        χ²/ν of the comparison with floored, unscaled errors.
    error_factor : float
        Factor applied to the floored search errors.
    n_fit : int
        Stars used in the surface fit after clipping.
    residual_rms_mag : float
        RMS of ``mag_ref - mag`` over the fit stars after correction, mag.
    error_floor_mag : float
        Floor used, mag.
    """

    zp: float
    zp_scatter: float
    cheb_coeffs: list[list[float]]
    shape: tuple[int, int]
    chi2nu_before: float
    error_factor: float
    n_fit: int
    residual_rms_mag: float
    error_floor_mag: float

    def to_dict(self) -> dict:
        """Plain dict (``json.dumps``-able)."""
        return asdict(self)

    def surface(self) -> ChebyshevSurface:
        """Rebuild the correction surface."""
        return ChebyshevSurface(np.array(self.cheb_coeffs, float), tuple(self.shape))


def _col(table: Table, name: str) -> np.ndarray:
    col = table[name]
    return np.array(getattr(col, "value", col), dtype=float)


def calibrate_search_catalog(
    table: Table,
    ref_table: Table,
    *,
    shape: tuple[int, int],
    config: CalibrationConfig = CalibrationConfig(),
) -> tuple[Table, CalibrationResult]:
    """Calibrate a forced-photometry search catalogue onto its reference.

    Parameters
    ----------
    table : astropy.table.Table
        Search catalogue with ``x``, ``y`` (pix), ``mag_inst``, ``magerr_inst``,
        ``flux``, ``dflux``.
    ref_table : astropy.table.Table
        Reference ``mag``, ``magerr``, matched row by row to ``table``.
    shape : tuple of int
        ``(ny, nx)`` of the search image.
    config : CalibrationConfig
        Stage settings.

    Returns
    -------
    out : astropy.table.Table
        Copy of ``table`` plus ``mag`` (corrected), ``magerr_raw`` (the input
        uncertainty), ``magerr`` (floored, then multiplied by the χ²/ν factor),
        ``dmag_corr`` (zp + surface applied, mag) and ``calib_used`` (star in the
        final fit). Rows with ``flux <= 0`` get NaN magnitudes and errors.
    result : CalibrationResult

    Notes
    -----
    Steps: zero point from the fit stars (:func:`fit_zero_point`); Δmag surface
    of the residuals with weights from ``σ_comp² = σ_search,floored² + σ_ref²``
    (:func:`fit_delta_mag_surface`); correction applied to all rows; χ²/ν factor
    from the clipped fit stars with ``1 + n_terms`` fitted parameters
    (:func:`rescale_errors`).
    """
    if len(table) != len(ref_table):
        raise ValueError("table and ref_table must be matched row by row")
    cfg = config
    x, y = _col(table, "x"), _col(table, "y")
    flux = _col(table, "flux")
    positive = np.isfinite(flux) & (flux > 0)
    mag_inst = np.where(positive, _col(table, "mag_inst"), np.nan)
    err_inst = np.where(positive, _col(table, "magerr_inst"), np.nan)
    mref, eref = _col(ref_table, "mag"), _col(ref_table, "magerr")

    sel = positive & np.isfinite(mag_inst) & np.isfinite(mref) & np.isfinite(err_inst)
    sel &= np.isfinite(eref) & (err_inst <= cfg.max_fit_magerr) & (eref <= cfg.max_fit_magerr)
    if cfg.fit_mag_range is not None:
        sel &= (mref >= cfg.fit_mag_range[0]) & (mref <= cfg.fit_mag_range[1])
    if sel.sum() < cfg.min_stars:
        raise ValueError(f"{int(sel.sum())} calibration stars < min_stars={cfg.min_stars}")

    zp, zp_scatter, _ = fit_zero_point(
        mag_inst[sel], mref[sel], clip_sigma=cfg.clip_sigma, max_iter=cfg.max_iter
    )
    floored = apply_error_floor(err_inst, floor=cfg.error_floor_mag, mode=cfg.floor_mode)
    comp_err = np.hypot(floored, eref)
    idx = np.flatnonzero(sel)
    surface, used_sub = fit_delta_mag_surface(
        x[idx],
        y[idx],
        mref[idx] - (mag_inst[idx] + zp),
        comp_err[idx],
        shape=shape,
        config=cfg,
    )
    used = np.zeros(len(table), dtype=bool)
    used[idx[used_sub]] = True

    corr = np.where(positive, zp + surface(x, y), np.nan)
    mag = mag_inst + corr
    n_terms = int(_terms(cfg.chebyshev_order, cfg.total_degree).sum())
    resid = mref[used] - mag[used]
    scale = rescale_errors(
        resid,
        err_inst[used],
        ref_err=eref[used],
        floor=cfg.error_floor_mag,
        floor_mode=cfg.floor_mode,
        dof_params=n_terms + 1,
        allow_shrink=cfg.allow_shrink,
    )
    out = table.copy()
    out["mag"] = Column(mag, unit="mag", description="calibrated to the reference")
    out["magerr_raw"] = Column(err_inst, unit="mag", description="input uncertainty")
    out["magerr"] = Column(floored * scale.factor, unit="mag", description="floored, rescaled")
    out["dmag_corr"] = Column(corr, unit="mag", description="zero point + surface added")
    out["calib_used"] = Column(used, description="used in the final surface fit")
    result = CalibrationResult(
        zp=zp,
        zp_scatter=zp_scatter,
        cheb_coeffs=surface.to_list(),
        shape=(int(shape[0]), int(shape[1])),
        chi2nu_before=scale.chi2nu_before,
        error_factor=scale.factor,
        n_fit=int(used.sum()),
        residual_rms_mag=float(np.sqrt(np.mean(resid**2))),
        error_floor_mag=cfg.error_floor_mag,
    )
    return out, result
