"""Tiny star renderer for the image-stage tests (independent of ``photdb.sim``).

Stars are pixel-integrated circular Moffat profiles (``oversample`` sub-pixels per
axis), normalised to unit *total* flux over the infinite plane, so ``flux`` is the
true total flux in ADU.  Positions follow the photdb convention: ``x`` is the
column index, ``y`` the row index, integer values at pixel centres.
"""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS


def moffat_stamp(
    dx: float, dy: float, *, fwhm: float, beta: float = 3.0, half: int = 25, oversample: int = 5
) -> np.ndarray:
    """Unit-total-flux pixel-integrated Moffat stamp of shape (2 half + 1,) * 2.

    ``dx``/``dy`` are the sub-pixel offsets of the centre from the central pixel.
    """
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    n = 2 * half + 1
    sub = (np.arange(n * oversample) + 0.5) / oversample - 0.5 - half
    yy, xx = np.meshgrid(sub - dy, sub - dx, indexing="ij")
    prof = (beta - 1.0) / (np.pi * alpha**2) * (1.0 + (xx**2 + yy**2) / alpha**2) ** (-beta)
    return prof.reshape(n, oversample, n, oversample).mean(axis=(1, 3))


def render_stars(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    *,
    fwhm: float,
    beta: float = 3.0,
    half: int = 25,
) -> np.ndarray:
    """Noise-free image (float64) of Moffat stars at (x=column, y=row)."""
    pad = 2 * half
    img = np.zeros((shape[0] + 2 * pad, shape[1] + 2 * pad))
    for xi, yi, fi in zip(np.asarray(x), np.asarray(y), np.asarray(flux), strict=True):
        cx, cy = int(np.round(xi)), int(np.round(yi))
        if not (-half <= cx < shape[1] + half and -half <= cy < shape[0] + half):
            continue
        st = moffat_stamp(xi - cx, yi - cy, fwhm=fwhm, beta=beta, half=half)
        img[cy + half : cy + half + 2 * half + 1, cx + half : cx + half + 2 * half + 1] += fi * st
    return img[pad:-pad, pad:-pad]


def noisy_image(
    truth: np.ndarray, *, sky: float, gain: float, readnoise: float, rng: np.random.Generator
) -> np.ndarray:
    """Poisson (in electrons) + Gaussian read noise realisation, in ADU, float32."""
    electrons = rng.poisson(np.clip(truth + sky, 0, None) * gain).astype(float)
    electrons += rng.normal(0.0, readnoise, truth.shape)
    return (electrons / gain).astype(np.float32)


def wcs_header(shape):
    """A DECam-like TAN header (0.263"/pix, bulge field) for a ``(ny, nx)`` image."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [271.5, -28.9]
    w.wcs.crpix = [shape[1] / 2, shape[0] / 2]
    w.wcs.cdelt = [-0.263 / 3600, 0.263 / 3600]
    return w.to_header()
