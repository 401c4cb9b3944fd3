"""Uncertainties of calibrated search magnitudes: floor, χ²/ν factor, and its magnitude trend.

The notebook's recipe: a 0.01 mag floor on the search uncertainties (crowdsource
quotes sub-0.01 mag errors it cannot be trusted to), then one factor that brings
χ²/ν of the search-vs-reference comparison to 1. That factor is measured on the
calibration stars, which are bright and floor-dominated; in a crowded field the
faint stars' errors are underestimated by more (blends, sky), so one factor leaves
their significances too large and a fixed Nσ cut lets them through: the "number of
variables was overwhelming" that forced the notebook's 15σ.
:func:`fit_magnitude_error_scale` measures the remaining trend with magnitude on
all forced stars (robustly, so variables do not count) and gives a per-magnitude
factor; :func:`fit_blend_error` adds, in quadrature, an error proportional to how
much of a star's footprint belongs to its neighbours. No I/O happens here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import brentq

from photdb.fitting import MAD_TO_SIGMA

__all__ = [
    "ErrorScale",
    "MagErrorScale",
    "apply_error_floor",
    "blend_contamination",
    "fit_blend_error",
    "fit_magnitude_error_scale",
    "rescale_errors",
]


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
class MagErrorScale:
    """Per-magnitude error factor from :func:`fit_magnitude_error_scale`.

    Attributes
    ----------
    mag : tuple of float
        Median reference magnitude of each bin, increasing.
    factor : tuple of float
        Factor (>= 1) on the search uncertainties at those magnitudes.
    n : tuple of int
        Stars in each bin.
    """

    mag: tuple[float, ...]
    factor: tuple[float, ...]
    n: tuple[int, ...]

    def __call__(self, mag: np.ndarray) -> np.ndarray:
        """Factor at reference magnitudes ``mag``: linear between bins, constant
        beyond the ends, 1 where ``mag`` is not finite."""
        mag = np.asarray(mag, float)
        if not self.mag:
            return np.ones_like(mag)
        out = np.interp(np.nan_to_num(mag, nan=self.mag[0]), self.mag, self.factor)
        return np.where(np.isfinite(mag), out, 1.0)

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return {"mag": list(self.mag), "factor": list(self.factor), "n": list(self.n)}


def _bins(mag: np.ndarray, width: float, min_stars: int) -> list[np.ndarray]:
    """Index groups of sorted magnitudes, each >= ``width`` mag wide and >= ``min_stars``."""
    order = np.argsort(mag)
    m = mag[order]
    groups, start = [], 0
    while start < m.size:
        stop = max(start + min_stars, int(np.searchsorted(m, m[start] + width)))
        if m.size - stop < min_stars:  # too few left for a bin of their own
            stop = m.size
        groups.append(order[start:stop])
        start = stop
    return groups


def _clipped_width(z: np.ndarray, clip: float, max_iter: int = 20) -> float:
    """``1.4826 median(|z|)`` over ``|z| < clip * width``, iterated to convergence."""
    z = np.abs(z)
    w = MAD_TO_SIGMA * float(np.median(z))
    for _ in range(max_iter):
        new = MAD_TO_SIGMA * float(np.median(z[z < clip * w])) if np.any(z < clip * w) else w
        if abs(new - w) <= 1e-9 * max(w, 1e-30):
            break
        w = new
    return w


def _unit_width(width, lo: float, step: float, top: float) -> float:
    """Smallest argument >= ``lo`` where the decreasing ``width`` reaches 1 (``lo`` if
    ``width(lo) <= 1``): bracket by doubling from ``step`` up to ``top``, then Brent."""
    if width(lo) <= 1.0:
        return lo
    hi = step
    while width(hi) > 1.0 and hi < top:
        hi *= 2.0
    return float(brentq(lambda v: width(v) - 1.0, lo, hi, xtol=1e-7))


def fit_magnitude_error_scale(
    mag_ref: np.ndarray,
    resid: np.ndarray,
    err: np.ndarray,
    ref_err: np.ndarray,
    *,
    bin_width_mag: float = 1.0,
    min_stars: int = 100,
    clip: float = 4.0,
) -> MagErrorScale:
    """Factor on the search errors, per reference magnitude, that makes the residuals' width 1.

    In each bin of reference magnitude the factor ``k`` solves ``w(k) = 1``, where
    ``w`` is the width of the normalised residuals ``z = r / sqrt(k² σ² + σ_ref²)``
    about zero: ``1.4826 median(|z|)`` over ``|z| < clip w``, iterated. That is a
    robust χ²/ν = 1: variables beyond the clip do not count (without the clip, 5 %
    of large variables would bias the width by +7 %), and a bias of the bin's
    residuals counts as error. Bins where the errors already suffice get 1.

    Parameters
    ----------
    mag_ref : numpy.ndarray
        Reference magnitudes (binning variable).
    resid : numpy.ndarray
        ``mag_ref - mag_search_corrected``, mag.
    err : numpy.ndarray
        Search uncertainties as they stand (floored, χ²/ν-scaled), mag.
    ref_err : numpy.ndarray
        Reference uncertainties, mag.
    bin_width_mag : float
        Smallest bin width, mag. Default 1.0.
    min_stars : int
        Smallest number of stars per bin; fewer stars in all gives no bins (factor
        1 everywhere). Default 100.
    clip : float
        Normalised residuals beyond ``clip`` times the current width are left out of
        the width (variables). Default 4.

    Returns
    -------
    MagErrorScale

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> m = rng.uniform(16, 22, 4000)
    >>> err = np.full(m.size, 0.02)
    >>> true = np.where(m > 20, 0.04, 0.02)  # faint errors underestimated 2x
    >>> scale = fit_magnitude_error_scale(m, rng.normal(0, true), err, np.zeros(m.size))
    >>> f_bright, f_faint = scale(np.array([17.0, 21.5]))
    >>> round(float(f_bright), 2), bool(1.8 < f_faint < 2.2)
    (1.0, True)
    """
    m, r = np.asarray(mag_ref, float), np.asarray(resid, float)
    s, sr = np.asarray(err, float), np.nan_to_num(np.asarray(ref_err, float))
    good = np.isfinite(m) & np.isfinite(r) & np.isfinite(s) & (s > 0)
    m, r, s, sr = m[good], r[good], s[good], sr[good]
    if m.size < min_stars:
        return MagErrorScale((), (), ())
    mags, factors, counts = [], [], []
    for g in _bins(m, bin_width_mag, min_stars):
        rg, sg, srg = np.abs(r[g]), s[g], sr[g]

        def width(k: float, rg=rg, sg=sg, srg=srg) -> float:
            return _clipped_width(rg / np.sqrt(k**2 * sg**2 + srg**2), clip)

        k = _unit_width(width, 1.0, 2.0, 1e4)
        mags.append(float(np.median(m[g])))
        factors.append(k)
        counts.append(int(g.size))
    return MagErrorScale(tuple(mags), tuple(factors), tuple(counts))


def blend_contamination(fracflux: np.ndarray, *, min_fracflux: float = 0.01) -> np.ndarray:
    """Neighbour-to-own flux ratio in a star's PSF footprint, ``1 / fracflux - 1``.

    crowdsource's ``fracflux`` is the fraction of the (PSF-weighted) flux in the
    footprint that is the star's own; NaN counts as unblended (0).
    """
    ff = np.nan_to_num(np.asarray(fracflux, float), nan=1.0)
    return np.maximum(1.0 / np.clip(ff, min_fracflux, 1.0) - 1.0, 0.0)


def fit_blend_error(
    resid: np.ndarray,
    err: np.ndarray,
    ref_err: np.ndarray,
    contamination: np.ndarray,
    *,
    min_contamination: float = 1.0,
    min_stars: int = 50,
    clip: float = 4.0,
) -> float:
    """Error per unit of blending, ``ε`` (mag), so blended stars' residuals have width 1.

    Forced photometry of a star that shares its footprint with brighter
    neighbours inherits the errors of the neighbours' model (PSF mismatch,
    seeing-dependent blending), which its quoted flux error ignores: in the
    simulated bulge fields the false 6-15σ "variables" are almost all such stars,
    often the same star on several epochs. The model adds ``ε c`` in quadrature,
    ``c`` the contamination (:func:`blend_contamination`); ``ε >= 0`` solves
    clipped robust width 1 (as in :func:`fit_magnitude_error_scale`) over the stars
    with ``c >= min_contamination`` (default 1: half the footprint's flux or more
    is someone else's).

    Returns
    -------
    float
        ``ε`` in mag; 0 when the blended stars' errors suffice or there are fewer
        than ``min_stars`` of them.

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> c = rng.uniform(0, 9, 5000)
    >>> r = rng.normal(0, np.hypot(0.02, 0.01 * c))
    >>> round(fit_blend_error(r, np.full(5000, 0.02), np.zeros(5000), c), 3)
    0.01
    """
    r, s = np.asarray(resid, float), np.asarray(err, float)
    sr, c = np.nan_to_num(np.asarray(ref_err, float)), np.asarray(contamination, float)
    sel = np.isfinite(r) & np.isfinite(s) & (s > 0) & np.isfinite(c) & (c >= min_contamination)
    if sel.sum() < min_stars:
        return 0.0
    r, s, sr, c = np.abs(r[sel]), s[sel], sr[sel], c[sel]

    def width(eps: float) -> float:
        return _clipped_width(r / np.sqrt(s**2 + sr**2 + (eps * c) ** 2), clip)

    return _unit_width(width, 0.0, 0.01, 10.0)
