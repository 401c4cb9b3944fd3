"""Shared maths of the stages: robust widths, clipped fits, Chebyshev surfaces, magnitudes.

Every stage that fits a smooth surface to image positions (the sky through its
tiles, the Δmag calibration, the flux pedestal, the reference flattening) uses
:class:`ChebyshevSurface` and :func:`fit_clipped_lstsq`; every robust width is
astropy's :func:`~astropy.stats.mad_std`; every flux becomes a magnitude through
:func:`flux_to_mag`. No I/O.

Examples
--------
>>> import numpy as np
>>> surface = ChebyshevSurface(np.array([[1.0, 0.5], [0.0, 0.0]]), (10, 20))
>>> float(surface(np.array([9.5]), np.array([4.5]))[0])  # at the centre row T_1(y') = 0
1.0
>>> mag, err = flux_to_mag(np.array([100.0, -1.0]), np.array([1.0, 1.0]))
>>> mag.round(3).tolist(), np.isnan(err[1])
([-5.0, nan], True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.stats import mad_std
from numpy.polynomial import chebyshev as C

__all__ = [
    "MAD_TO_SIGMA",
    "MAG_PER_FLUX_FRACTION",
    "ChebyshevSurface",
    "chebyshev_terms",
    "fit_clipped_lstsq",
    "flux_to_mag",
    "mad_std",
    "robust_sigma",
]

#: ``sigma / MAD`` of a Gaussian (the factor astropy's ``mad_std`` applies), for the few
#: robust widths that are not a MAD about the median (e.g. ``median(|z|)`` about zero).
MAD_TO_SIGMA = 1.482602218505602

#: ``2.5 / ln 10``: a fractional flux error of 1 is this many magnitudes.
MAG_PER_FLUX_FRACTION = 2.5 / np.log(10.0)


def robust_sigma(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation about the median (astropy ``mad_std``)."""
    return float(mad_std(np.asarray(values, float)))


def flux_to_mag(
    flux: np.ndarray, dflux: np.ndarray | None = None, *, zero_point: float | np.ndarray = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Magnitudes ``-2.5 log10(flux) + zero_point`` and their errors.

    Non-positive or non-finite fluxes give NaN (never a made-up magnitude).

    Parameters
    ----------
    flux, dflux : numpy.ndarray
        Fluxes and their 1σ errors (any unit; ``dflux`` None gives NaN errors).
    zero_point : float or numpy.ndarray
        Added to every magnitude.

    Returns
    -------
    mag, magerr : numpy.ndarray
        ``magerr = 2.5 / ln 10 * dflux / flux``.
    """
    flux = np.asarray(flux, float)
    pos = np.isfinite(flux) & (flux > 0)
    safe = np.where(pos, flux, 1.0)
    mag = np.where(pos, -2.5 * np.log10(safe) + zero_point, np.nan)
    if dflux is None:
        return mag, np.full(flux.shape, np.nan)
    err = np.where(pos, MAG_PER_FLUX_FRACTION * np.asarray(dflux, float) / safe, np.nan)
    return mag, err


def chebyshev_terms(order: int, total_degree: bool = False) -> np.ndarray:
    """Boolean ``(order + 1, order + 1)`` mask of the 2-D Chebyshev terms used.

    The full tensor product (``total_degree=False``) or only ``i + j <= order``.
    """
    i, j = np.indices((order + 1, order + 1))
    return (i + j <= order) if total_degree else np.ones_like(i, dtype=bool)


@dataclass(frozen=True, eq=False)
class ChebyshevSurface:
    """A 2-D Chebyshev series over an image, ``Σ c[i, j] T_i(x') T_j(y')``.

    Attributes
    ----------
    coeffs : numpy.ndarray
        ``(nx_order + 1, ny_order + 1)`` coefficients; ``coeffs[i, j]`` multiplies
        ``T_i`` in x and ``T_j`` in y (zero for unused terms). Square for the
        calibration surfaces, rectangular where x and y need different orders (the
        sky through few tiles).
    shape : tuple of int
        ``(ny, nx)`` of the image: pixel centres ``x`` in ``[0, nx - 1]`` map
        linearly so the pixel *edges* ``-0.5`` and ``nx - 0.5`` go to -1 and +1.
    """

    coeffs: np.ndarray
    shape: tuple[int, int]

    @property
    def order(self) -> int:
        """Highest order of the series in either axis."""
        return max(self.coeffs.shape) - 1

    @property
    def degrees(self) -> tuple[int, int]:
        """``(x order, y order)``."""
        return self.coeffs.shape[0] - 1, self.coeffs.shape[1] - 1

    def scaled(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map pixel coordinates to the [-1, 1] Chebyshev domain."""
        ny, nx = self.shape
        xs = (2.0 * np.asarray(x, float) + 1.0) / nx - 1.0
        ys = (2.0 * np.asarray(y, float) + 1.0) / ny - 1.0
        return xs, ys

    def vander(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Design matrix ``T_i(x') T_j(y')`` at pixel positions, columns in
        ``coeffs.ravel()`` order (all terms)."""
        xs, ys = self.scaled(x, y)
        return C.chebvander2d(xs, ys, list(self.degrees))

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Evaluate at pixel positions (0-based, x = column, y = row)."""
        xs, ys = self.scaled(x, y)
        return C.chebval2d(xs, ys, self.coeffs)

    def grid(self) -> np.ndarray:
        """Evaluate on every pixel of the image, ``(ny, nx)`` (separable: fast)."""
        ny, nx = self.shape
        xs, ys = self.scaled(np.arange(nx), np.arange(ny))
        dx, dy = self.degrees
        return C.chebvander(ys, dy) @ self.coeffs.T @ C.chebvander(xs, dx).T

    def to_list(self) -> list[list[float]]:
        """Coefficients as nested lists (for JSON)."""
        return self.coeffs.tolist()


def fit_clipped_lstsq(
    design: np.ndarray,
    y: np.ndarray,
    sigma: np.ndarray,
    keep: np.ndarray,
    *,
    clip_sigma: float = 3.0,
    max_iter: int = 10,
    min_rows: int = 1,
    what: str = "the fit",
    centre: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted linear least squares with iterative clipping of the normalised residuals.

    Each iteration fits ``design @ p ≈ y`` with weights ``1 / sigma²`` over the rows in
    ``keep``, then keeps the rows (all rows, so a rejected one may return) whose
    ``(y - design @ p) / sigma`` is within ``clip_sigma`` x 1.4826 MAD of the kept
    rows' median, until the set is stable or ``max_iter`` fits were done. With
    ``centre=False`` the residuals are clipped about zero instead, at ``clip_sigma``
    x 1.4826 ``median(|r|)`` (the sky surface's rule: a skewed set of tile values
    is not re-centred). A perfect fit (zero scatter) ends the iterations.

    Returns
    -------
    params : numpy.ndarray
    keep : numpy.ndarray of bool
        Rows used in the final fit.

    Raises
    ------
    ValueError
        Fewer than ``min_rows`` rows left ("too few stars survive clipping for ...").
    """
    for _ in range(max_iter):
        if keep.sum() < min_rows:
            raise ValueError(f"too few stars survive clipping for {what}")
        sol, *_ = np.linalg.lstsq(design[keep] / sigma[keep, None], y[keep] / sigma[keep],
                                  rcond=None)  # fmt: skip
        norm = (y - design @ sol) / sigma
        if centre:
            sig = robust_sigma(norm[keep])
            new = np.abs(norm - np.median(norm[keep])) <= clip_sigma * sig
        else:
            sig = MAD_TO_SIGMA * float(np.median(np.abs(norm[keep])))
            new = np.abs(norm) < clip_sigma * sig
        if not sig > 0:
            break
        if np.array_equal(new, keep):
            break
        keep = new
    return sol, keep
