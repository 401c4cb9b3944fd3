"""Pixel rendering: PSF, stars, noise, saturation with bleed trails, cosmic rays.

Every effect the simulator puts on a chip, in the order a CCD would see them, is in
this one file (~470 lines) so that the order is read in one place.

Pixel convention (used throughout :mod:`photdb.sim`): numpy order ``image[row, column]``,
``x`` is the column and ``y`` the row, and the *centre* of the first pixel is ``(0, 0)``;
pixel ``(i, j)`` covers ``x`` in ``[j - 0.5, j + 0.5)``. FITS/WCS 1-based pixel coordinates are
these plus one.

The PSF is an elliptical Moffat profile normalised to unit integral over the infinite plane.
It is the *effective* PSF (optics and atmosphere already convolved with the pixel response),
so a pixel's value is the profile at the pixel centre. For FWHM >= 3 pixels (0.8 arcsec at
DECam's scale) the sum of those samples equals the integral to better than 1e-5 and their
centroid is the star position to better than 1e-4 pixel (at FWHM = 2 pixels, the smallest
accepted: 1e-4 and 1e-3), so the rendered flux and position are exact. Each star's square stamp
is cut where the flux beyond it is below both ``max_lost_frac`` of the star's flux and
``wing_tolerance`` of its own photon noise.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial import chebyshev

__all__ = [
    "add_cosmic_rays",
    "add_noise",
    "apply_saturation",
    "chebyshev_surface",
    "moffat_alpha",
    "moffat_psf",
    "psf_halfwidth",
    "render_chip",
    "render_stars",
    "stamp_halfwidths",
    "stamp_loss_fraction",
]

_MAX_BATCH_PIXELS = 2_000_000


def moffat_alpha(fwhm_pix: float, beta: float) -> float:
    """Return the Moffat core width ``alpha`` (pixels) for a FWHM in pixels."""
    return fwhm_pix / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))


def _axes(fwhm_pix: float, beta: float, ellipticity: float) -> tuple[float, float]:
    """Semi-axes (a, b) of the Moffat keeping the geometric-mean FWHM."""
    alpha = moffat_alpha(fwhm_pix, beta)
    q = 1.0 - ellipticity
    return alpha / np.sqrt(q), alpha * np.sqrt(q)


def _quadratic_form(
    fwhm_pix: float, beta: float, ellipticity: float, pa_deg: float
) -> tuple[float, float, float, float]:
    """Return (cxx, cxy, cyy, norm) with Q = cxx dx^2 + cxy dx dy + cyy dy^2."""
    if fwhm_pix < 2.0:
        raise ValueError(f"PSF FWHM {fwhm_pix:.2f} pix is undersampled (< 2 pixels)")
    if not 0.0 <= ellipticity < 1.0:
        raise ValueError("ellipticity must be in [0, 1)")
    a, b = _axes(fwhm_pix, beta, ellipticity)
    t = np.deg2rad(pa_deg)
    c, s = np.cos(t), np.sin(t)
    cxx = c * c / a**2 + s * s / b**2
    cyy = s * s / a**2 + c * c / b**2
    cxy = 2.0 * s * c * (1.0 / a**2 - 1.0 / b**2)
    norm = (beta - 1.0) / (np.pi * a * b)
    return cxx, cxy, cyy, norm


def _moffat_from_q(q: np.ndarray, beta: float, norm: float) -> np.ndarray:
    q += 1.0
    if beta == 3.0:
        out = q * q
        out *= q
        np.reciprocal(out, out=out)
    else:
        out = np.power(q, -beta, out=q)
    out *= norm
    return out


def moffat_psf(
    dx: np.ndarray,
    dy: np.ndarray,
    *,
    fwhm_pix: float,
    beta: float = 3.0,
    ellipticity: float = 0.0,
    pa_deg: float = 0.0,
) -> np.ndarray:
    """Evaluate the unit-integral elliptical Moffat PSF.

    Parameters
    ----------
    dx, dy : array_like
        Offsets (pixel centre minus star position) in pixels along x (columns) and y (rows).
    fwhm_pix : float
        FWHM (geometric mean of the major and minor axes) in pixels; must be >= 2.
    beta : float, optional
        Moffat index; default 3.
    ellipticity : float, optional
        ``1 - b/a``; default 0.
    pa_deg : float, optional
        Angle of the major axis from +x towards +y, degrees; default 0.

    Returns
    -------
    ndarray
        PSF value per pixel (fraction of the flux falling in a pixel centred there).
    """
    cxx, cxy, cyy, norm = _quadratic_form(fwhm_pix, beta, ellipticity, pa_deg)
    dx = np.asarray(dx, dtype=float)
    dy = np.asarray(dy, dtype=float)
    q = cxx * dx**2 + cxy * dx * dy + cyy * dy**2
    return _moffat_from_q(q, beta, norm)


def psf_halfwidth(
    max_lost_frac: float | np.ndarray,
    *,
    fwhm_pix: float,
    beta: float = 3.0,
    ellipticity: float = 0.0,
) -> np.ndarray:
    """Half-width (pixels) of a square stamp losing at most `max_lost_frac` of the flux.

    Uses the Moffat encircled flux outside an elliptical contour of major semi-axis ``R``,
    ``(1 + R**2 / a**2) ** (1 - beta)``, with ``R = halfwidth - 0.5`` (the stamp is centred on
    the nearest pixel), which bounds the flux outside the square.
    """
    a, _ = _axes(fwhm_pix, beta, ellipticity)
    frac = np.clip(np.asarray(max_lost_frac, dtype=float), 1e-12, 0.5)
    radius = a * np.sqrt(frac ** (1.0 / (1.0 - beta)) - 1.0)
    return np.ceil(radius + 0.5).astype(np.int64)


def stamp_halfwidths(
    max_lost_frac: float | np.ndarray,
    *,
    fwhm_pix: float,
    beta: float = 3.0,
    ellipticity: float = 0.0,
    max_halfwidth: int = 200,
) -> np.ndarray:
    """Stamp half-widths used by `render_stars`: `psf_halfwidth` rounded up to a multiple of 4.

    A star contributes to an ``(ny, nx)`` image iff its nearest pixel ``(rint(x), rint(y))``
    lies within this many pixels of the image.
    """
    half = psf_halfwidth(max_lost_frac, fwhm_pix=fwhm_pix, beta=beta, ellipticity=ellipticity)
    return np.minimum(4 * ((half + 3) // 4), max_halfwidth)


def render_stars(
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    *,
    shape: tuple[int, int],
    fwhm_pix: float,
    beta: float = 3.0,
    ellipticity: float = 0.0,
    pa_deg: float = 0.0,
    max_lost_frac: float | np.ndarray = 1e-4,
    max_halfwidth: int = 200,
) -> np.ndarray:
    """Render point sources on an empty (noiseless, sky-free) image.

    Parameters
    ----------
    x, y : array_like
        Star positions in pixels (0-based, ``x`` = column, centre of first pixel at 0).
    flux : array_like
        Total flux of each star (any unit, usually ADU); the stamp of a star sums to this
        up to the truncated wing (at most `max_lost_frac`) and the chip edges.
    shape : tuple of int
        ``(ny, nx)`` of the image.
    fwhm_pix, beta, ellipticity, pa_deg
        PSF parameters, see `moffat_psf`.
    max_lost_frac : float or array_like, optional
        Bound on the wing flux omitted per star (scalar or one per star); default 1e-4.
    max_halfwidth : int, optional
        Largest stamp half-width in pixels; default 200.

    Returns
    -------
    ndarray
        ``float64`` image of shape `shape`.

    Examples
    --------
    >>> img = render_stars([40.0], [50.0], [1000.0], shape=(100, 80), fwhm_pix=4.0)
    >>> round(float(img.sum()), 1), np.unravel_index(img.argmax(), img.shape)
    (999.9, (np.int64(50), np.int64(40)))
    """
    ny, nx = shape
    x = np.atleast_1d(np.asarray(x, dtype=float))
    y = np.atleast_1d(np.asarray(y, dtype=float))
    flux = np.atleast_1d(np.asarray(flux, dtype=float))
    x, y, flux = np.broadcast_arrays(x, y, flux)
    lost = np.broadcast_to(np.asarray(max_lost_frac, dtype=float), x.shape)
    cxx, cxy, cyy, norm = _quadratic_form(fwhm_pix, beta, ellipticity, pa_deg)
    half = stamp_halfwidths(
        lost, fwhm_pix=fwhm_pix, beta=beta, ellipticity=ellipticity, max_halfwidth=max_halfwidth
    )
    ix = np.rint(x).astype(np.int64)
    iy = np.rint(y).astype(np.int64)
    keep = (
        np.isfinite(x)
        & np.isfinite(y)
        & np.isfinite(flux)
        & (flux != 0)
        & (ix + half >= 0)
        & (ix - half <= nx - 1)
        & (iy + half >= 0)
        & (iy - half <= ny - 1)
    )
    if not keep.any():
        return np.zeros(shape)
    pad = 2 * int(half[keep].max())
    width = nx + 2 * pad
    size = (ny + 2 * pad) * width
    acc = np.zeros(size)
    for h in np.unique(half[keep]):
        sel = np.nonzero(keep & (half == h))[0]
        offs = np.arange(-h, h + 1)
        npix = offs.size**2
        step = max(1, _MAX_BATCH_PIXELS // npix)
        for start in range(0, sel.size, step):
            idx = sel[start : start + step]
            col = ix[idx, None] + offs
            row = iy[idx, None] + offs
            dx = col - x[idx, None]
            dy = row - y[idx, None]
            q = (cxx * dx * dx)[:, None, :] + (cyy * dy * dy)[:, :, None]
            if cxy != 0.0:
                q += cxy * dy[:, :, None] * dx[:, None, :]
            prof = _moffat_from_q(q, beta, norm)
            prof *= flux[idx, None, None]
            flat = (row + pad)[:, :, None] * width + (col + pad)[:, None, :]
            acc += np.bincount(flat.ravel(), weights=prof.ravel(), minlength=size)
    return acc.reshape(ny + 2 * pad, width)[pad : pad + ny, pad : pad + nx].copy()


def chebyshev_surface(
    x: np.ndarray, y: np.ndarray, coeffs: np.ndarray, *, shape: tuple[int, int]
) -> np.ndarray:
    """Evaluate ``sum c[i, j] T_i(u) T_j(v)`` with ``u, v`` spanning [-1, 1] over the chip.

    ``u = 2 x / (nx - 1) - 1`` and ``v = 2 y / (ny - 1) - 1`` (pixel-centre convention), so the
    first and last pixel centres map to -1 and +1.
    """
    ny, nx = shape
    u = 2.0 * np.asarray(x, dtype=float) / (nx - 1) - 1.0
    v = 2.0 * np.asarray(y, dtype=float) / (ny - 1) - 1.0
    return chebyshev.chebval2d(u, v, np.asarray(coeffs, dtype=float))


def add_noise(
    model: np.ndarray, *, gain: float, read_noise_e: float, rng: np.random.Generator
) -> np.ndarray:
    """Return an ADU image with Poisson noise (in electrons) and Gaussian read noise.

    Parameters
    ----------
    model : ndarray
        Expected counts (stars plus sky) in ADU; must be non-negative.
    gain : float
        e-/ADU.
    read_noise_e : float
        Read noise in electrons.
    rng : numpy.random.Generator
        Random generator.
    """
    electrons = rng.poisson(np.clip(model, 0.0, None) * gain).astype(float)
    electrons += rng.normal(0.0, read_noise_e, size=model.shape)
    return electrons / gain


def apply_saturation(image: np.ndarray, saturate_adu: float) -> np.ndarray:
    """Bleed charge above saturation along columns and clip at `saturate_adu`.

    For every run of pixels above the level in a column, the excess charge is removed from the
    run and spread half up and half down the column, filling pixels to the saturation level
    (charge leaving the chip is lost). Charge is thus conserved except at the column ends, and
    the returned image never exceeds `saturate_adu`.

    Returns
    -------
    ndarray
        A new image; the input is not modified.
    """
    out = np.array(image, dtype=float, copy=True)
    over_any = (out > saturate_adu).any(axis=0)
    for c in np.nonzero(over_any)[0]:
        col = out[:, c]
        over = np.concatenate(([0], (col > saturate_adu).astype(np.int8), [0]))
        edges = np.diff(over)
        for s, e in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0], strict=True):
            excess = float((col[s:e] - saturate_adu).sum())
            col[s:e] = saturate_adu
            for seg in (col[e:], col[:s][::-1]):
                if seg.size == 0:
                    continue
                cap = np.clip(saturate_adu - seg, 0.0, None)
                cum = np.cumsum(cap)
                k = int(np.searchsorted(cum, 0.5 * excess))
                seg[:k] = np.maximum(seg[:k], saturate_adu)
                if k < seg.size:
                    seg[k] += 0.5 * excess - (cum[k - 1] if k > 0 else 0.0)
        out[:, c] = col
    return np.minimum(out, saturate_adu)


def add_cosmic_rays(
    image: np.ndarray,
    n: int,
    *,
    rng: np.random.Generator,
    adu_range: tuple[float, float] = (300.0, 5000.0),
) -> list[tuple[int, int, int, float]]:
    """Add `n` sharp cosmic-ray hits of 1-3 pixels in place.

    Returns
    -------
    list of tuple
        ``(x, y, npix, adu)`` per hit: first pixel (column, row), number of pixels hit and the
        total charge added in ADU.
    """
    ny, nx = image.shape
    hits = []
    steps = np.array([(0, 1), (1, 0), (1, 1), (1, -1)])
    for _ in range(n):
        x0 = int(rng.integers(0, nx))
        y0 = int(rng.integers(0, ny))
        npix = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
        sx, sy = steps[rng.integers(0, len(steps))]
        total = 0.0
        for k in range(npix):
            xx, yy = x0 + k * sx, y0 + k * sy
            if 0 <= xx < nx and 0 <= yy < ny:
                adu = float(np.exp(rng.uniform(np.log(adu_range[0]), np.log(adu_range[1]))))
                image[yy, xx] += adu
                total += adu
        hits.append((x0, y0, npix, total))
    return hits


def _star_noise_adu(
    flux: np.ndarray, *, fwhm_pix: float, sky_adu: float, gain: float, read_noise_e: float
) -> np.ndarray:
    """Approximate PSF-photometry noise of each star in ADU."""
    n_eff = 4.0 * np.pi * (fwhm_pix / 2.3548) ** 2
    var = np.abs(flux) / gain + n_eff * (max(sky_adu, 0.0) / gain + (read_noise_e / gain) ** 2)
    return np.sqrt(var)


def stamp_loss_fraction(
    flux: np.ndarray,
    *,
    fwhm_pix: float,
    sky_adu: float,
    gain: float,
    read_noise_e: float,
    wing_tolerance: float = 0.05,
    max_lost_frac: float = 1e-3,
) -> np.ndarray:
    """Per-star bound on the omitted wing flux used by `render_chip`.

    ``min(max_lost_frac, wing_tolerance * sigma / flux)`` where ``sigma`` is the star's
    approximate photometric noise, so truncation biases are below 0.1% and below 5% of the
    noise of every star.
    """
    flux = np.asarray(flux, dtype=float)
    sig = _star_noise_adu(
        flux, fwhm_pix=fwhm_pix, sky_adu=sky_adu, gain=gain, read_noise_e=read_noise_e
    )
    with np.errstate(divide="ignore"):
        rel = np.where(flux > 0, wing_tolerance * sig / np.where(flux > 0, flux, 1.0), 1.0)
    return np.minimum(max_lost_frac, rel)


def render_chip(
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    *,
    shape: tuple[int, int],
    fwhm_pix: float,
    sky: float | np.ndarray = 0.0,
    gain: float = 4.0,
    read_noise_e: float = 7.0,
    rng: np.random.Generator | None = None,
    beta: float = 3.0,
    ellipticity: float = 0.0,
    pa_deg: float = 0.0,
    saturate_adu: float | None = None,
    wing_tolerance: float = 0.05,
    max_lost_frac: float = 1e-3,
) -> np.ndarray:
    """Render one chip: stars plus sky, photon and read noise, saturation and bleeding.

    Parameters
    ----------
    x, y : array_like
        Star positions in pixels (0-based; ``x`` = column; centre of the first pixel is 0).
    flux : array_like
        Total star fluxes in ADU.
    shape : tuple of int
        ``(ny, nx)``.
    fwhm_pix : float
        PSF FWHM in pixels (>= 2).
    sky : float or ndarray, optional
        Sky level in ADU per pixel, scalar or an image of `shape`; default 0.
    gain : float, optional
        e-/ADU; default 4.
    read_noise_e : float, optional
        Read noise in electrons; default 7.
    rng : numpy.random.Generator, optional
        Noise generator; ``None`` returns the noiseless expectation.
    beta, ellipticity, pa_deg : float, optional
        PSF shape, see `moffat_psf`.
    saturate_adu : float, optional
        If given, charge above it bleeds along columns and pixels are clipped to it.
    wing_tolerance, max_lost_frac : float, optional
        Stamp truncation criteria, see `stamp_loss_fraction`.

    Returns
    -------
    ndarray
        ``float32`` image in ADU.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> img = render_chip([50.2], [30.7], [1e5], shape=(64, 128), fwhm_pix=4.5, sky=500.0,
    ...                   rng=rng)
    >>> img.shape, img.dtype
    ((64, 128), dtype('float32'))
    """
    sky_arr = np.broadcast_to(np.asarray(sky, dtype=float), shape)
    lost = stamp_loss_fraction(
        np.asarray(flux, dtype=float),
        fwhm_pix=fwhm_pix,
        sky_adu=float(np.median(sky_arr)),
        gain=gain,
        read_noise_e=read_noise_e,
        wing_tolerance=wing_tolerance,
        max_lost_frac=max_lost_frac,
    )
    model = render_stars(
        x,
        y,
        flux,
        shape=shape,
        fwhm_pix=fwhm_pix,
        beta=beta,
        ellipticity=ellipticity,
        pa_deg=pa_deg,
        max_lost_frac=lost,
    )
    model += sky_arr
    img = model if rng is None else add_noise(model, gain=gain, read_noise_e=read_noise_e, rng=rng)
    if saturate_adu is not None:
        img = apply_saturation(img, saturate_adu)
    return img.astype(np.float32)
