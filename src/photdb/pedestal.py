"""Additive flux error of forced photometry: a smooth pedestal surface c(x, y).

A sky misestimate of δ ADU/pixel shifts every forced PSF flux by ``δ N_eff`` (the
PSF's effective area): a constant in *flux*, so a magnitude error that grows
towards faint stars. In a crowded field the Bijaoui sky of the search image and of
the reference are both off by a fraction of the sky noise, and by an amount that
changes across the chip with crowding and seeing. A Δmag(x, y) surface cannot
absorb that; worse, the numerous faint stars pull the Chebyshev fit towards their
own bias and the bright stars inherit the opposite.

:func:`fit_flux_pedestal` separates the two effects in flux space, where they are
linear::

    f_search = g(x, y) * f_ref + c(x, y)

with ``g`` a Chebyshev series of the calibration's order (the multiplicative
response and transparency, which the Δmag surface later fits again) and ``c`` a
low-order Chebyshev series in ADU (the pedestal). Bright stars constrain ``g``,
faint stars ``c``. Only ``c`` is removed from the search fluxes. No I/O happens
here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from photdb.fitting import ChebyshevSurface, fit_clipped_lstsq, robust_sigma

__all__ = ["PedestalFit", "fit_flux_pedestal"]


@dataclass(frozen=True, eq=False)
class PedestalFit:
    """Result of :func:`fit_flux_pedestal`.

    Attributes
    ----------
    surface : ChebyshevSurface
        The pedestal ``c(x, y)`` in flux units (ADU); call it at pixel positions.
    gain : ChebyshevSurface
        The multiplicative part ``g(x, y)`` (search flux per reference flux).
    n_used : int
        Stars kept by the clipping in the final fit.
    """

    surface: ChebyshevSurface
    gain: ChebyshevSurface
    n_used: int

    @property
    def mean_adu(self) -> float:
        """Mean of the pedestal over the chip, ADU (the Chebyshev ``c[0, 0]`` term
        is not the mean for orders >= 2; this samples a 32 x 32 grid)."""
        ny, nx = self.surface.shape
        yy, xx = np.mgrid[0 : ny - 1 : 32j, 0 : nx - 1 : 32j]
        return float(np.mean(self.surface(xx, yy)))


def fit_flux_pedestal(
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    flux_ref: np.ndarray,
    flux_ref_err: np.ndarray | None = None,
    *,
    shape: tuple[int, int],
    order: int = 2,
    gain_order: int = 4,
    floor_frac: float = 0.01,
    clip_sigma: float = 3.0,
    max_iter: int = 10,
    min_stars: int = 50,
) -> PedestalFit:
    """Fit ``flux = g(x, y) flux_ref + c(x, y)`` with clipped weighted least squares.

    Parameters
    ----------
    x, y : numpy.ndarray
        Pixel positions, 0-based (x = column, y = row).
    flux, flux_err : numpy.ndarray
        Forced search fluxes and their uncertainties, ADU.
    flux_ref : numpy.ndarray
        Reference fluxes on the search image's scale (e.g. ``10**(-0.4 (m_ref - zp))``).
    flux_ref_err : numpy.ndarray, optional
        Their uncertainties, same unit.
    shape : tuple of int
        ``(ny, nx)`` of the search image.
    order : int
        Order of the pedestal surface (full tensor product; 0 is one constant).
        Default 2.
    gain_order : int
        Order of the multiplicative surface. Default 4 (the Δmag surface's order).
    floor_frac : float
        Fractional floor added in quadrature to the flux uncertainty (0.01 is the
        notebook's 0.01 mag floor). Default 0.01.
    clip_sigma : float
        Rejection threshold in robust sigmas of the normalised residuals. Default 3.
    max_iter : int
        Maximum fit-and-clip iterations. Default 10.
    min_stars : int
        Fewer usable stars raise ``ValueError``. Default 50.

    Returns
    -------
    PedestalFit

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> x, y = rng.uniform(0, 200, 800), rng.uniform(0, 100, 800)
    >>> fref = 10 ** rng.uniform(2, 5, 800)
    >>> ped = 20 + 0.2 * x
    >>> fit = fit_flux_pedestal(x, y, 1.05 * fref + ped, np.sqrt(fref + 100), fref,
    ...                         shape=(100, 200), floor_frac=0.0)
    >>> bool(abs(fit.surface(100.0, 50.0) - 40.0) < 2.0)
    True
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    f, df, fr = (np.asarray(v, float) for v in (flux, flux_err, flux_ref))
    dfr = np.zeros_like(fr) if flux_ref_err is None else np.asarray(flux_ref_err, float)
    good = np.isfinite(x) & np.isfinite(y) & np.isfinite(f) & np.isfinite(fr) & (fr > 0)
    good &= np.isfinite(df) & (df > 0) & np.isfinite(dfr)
    if good.sum() < min_stars:
        raise ValueError(f"{int(good.sum())} usable stars < min_stars={min_stars}")
    shape = (int(shape[0]), int(shape[1]))
    gain = ChebyshevSurface(np.zeros((gain_order + 1, gain_order + 1)), shape)
    ped = ChebyshevSurface(np.zeros((order + 1, order + 1)), shape)
    xg, yg, fg, frg = x[good], y[good], f[good], fr[good]
    vg, vp = gain.vander(xg, yg), ped.vander(xg, yg)
    design = np.hstack([vg * frg[:, None], vp])
    n_par = design.shape[1]
    scale = np.median(fg / frg)  # first guess of g, for the error model
    sigma = np.sqrt(df[good] ** 2 + (floor_frac * frg * scale) ** 2 + (scale * dfr[good]) ** 2)
    norm = (fg - scale * frg) / sigma
    med = np.median(norm)
    keep = np.abs(norm - med) <= max(5.0, clip_sigma) * max(robust_sigma(norm), 1e-12)
    sol, keep = fit_clipped_lstsq(
        design, fg, sigma, keep, clip_sigma=clip_sigma, max_iter=max_iter,
        min_rows=max(min_stars, 2 * n_par), what="the pedestal fit",
    )  # fmt: skip
    ng = vg.shape[1]
    gain_c = sol[:ng].reshape(gain_order + 1, gain_order + 1)
    ped_c = sol[ng:].reshape(order + 1, order + 1)
    return PedestalFit(
        surface=ChebyshevSurface(ped_c, shape),
        gain=ChebyshevSurface(gain_c, shape),
        n_used=int(keep.sum()),
    )
