"""An image with its mask, variance and WCS (from a header, no I/O); bad-pixel masks; variance.

Pixel convention used throughout photdb: ``data[row, col]``; a source position is
``(x, y) = (column, row)``, 0-based, integer values at pixel centres (so FITS
``CRPIX`` - 1 and astropy ``WCS.pixel_to_world(x, y)`` agree).

Mask bits (:class:`MaskBits`)::

    SATURATED  = 1   pixel >= SATURATE (or grown from one by ``saturate_grow_pix``)
    BLEED      = 2   along a column within ``bleed_grow_pix`` of a saturated pixel
    BAD_COLUMN = 4   column whose median is a robust outlier vs its neighbours, or constant
    COSMIC_RAY = 8   sharper than any PSF (Laplacian / sharpness test, L.A.Cosmic-like)
    EDGE       = 16  within ``edge_pix`` of the border, or non-finite (no data)
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

from photdb.fitting import mad_std, robust_sigma

__all__ = ["Image", "MaskBits", "MaskConfig", "build_mask", "image_from_header", "make_variance"]


class MaskBits(enum.IntFlag):
    """Bit values of the photdb pixel mask."""

    SATURATED = 1
    BLEED = 2
    BAD_COLUMN = 4
    COSMIC_RAY = 8
    EDGE = 16


@dataclass(frozen=True, eq=False)
class Image:
    """One CCD image and what is needed to measure it.

    Attributes
    ----------
    data : ndarray (ny, nx), float32
        Pixel values in ADU (bias-subtracted, sky *not* subtracted).
    mask : ndarray (ny, nx), int32
        :class:`MaskBits` flags given with the image (e.g. a stack's); 0 is a good
        pixel. :func:`photdb.pipeline.prepare_image` adds saturation, bleed trails,
        bad columns, cosmic rays and the edge.
    variance : ndarray (ny, nx), float32, or None
        Per-pixel variance in ADU^2 when the image brings its own (a stack); None
        for a raw image, whose variance is made from gain, read noise and the sky.
    wcs : astropy.wcs.WCS
        Celestial WCS (0-based pixel convention as in astropy).
    header : astropy.io.fits.Header
        The HDU header.
    gain : float
        e-/ADU.
    readnoise : float
        Read noise in electrons.
    saturate : float
        Saturation level in ADU (``inf`` if unknown).
    """

    data: np.ndarray
    mask: np.ndarray
    variance: np.ndarray | None
    wcs: WCS
    header: fits.Header
    gain: float
    readnoise: float
    saturate: float

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of the data array."""
        return self.data.shape


@dataclass(frozen=True)
class MaskConfig:
    """Settings of :func:`build_mask`.

    Attributes
    ----------
    saturate_grow_pix : int, default 1
        Saturated pixels are grown by this many pixels in every direction (pix).
    bleed_grow_pix : int, default 5
        Saturated pixels are grown along their column (the CCD read-out direction)
        by this many pixels and flagged BLEED (pix).
    bad_column_nsigma : float, default 10.0
        A column is bad if the row-median of its difference to the mean of columns
        c - 2 and c + 2 exceeds this many robust sigma (MAD across columns) ...
    bad_column_min_offset : float, default 1.0
        ... and by more than this many per-pixel noise sigma (guards smooth images).
    cr_nsigma : float, default 6.0
        Cosmic-ray candidates: ``I - mean(4 neighbours)`` above this many noise sigma.
    cr_sharpness : float, default 0.65
        Candidates are flagged if ``(I - mean4) / (I - local sky) >`` this
        (dimensionless; 1 for a single-pixel hit, <= 0.34 for a FWHM >= 2.5 pix star).
    cr_grow_nsigma : float, default 3.0
        Neighbours of a flagged pixel more than this many sigma above the local sky
        are flagged too.
    cr_box : int, default 7
        Box (pix) for the local sky (median) around a candidate.
    edge_pix : int, default 5
        Pixels within this distance of the border are flagged EDGE (pix).
    """

    saturate_grow_pix: int = 1
    bleed_grow_pix: int = 5
    bad_column_nsigma: float = 10.0
    bad_column_min_offset: float = 1.0
    cr_nsigma: float = 6.0
    cr_sharpness: float = 0.65
    cr_grow_nsigma: float = 3.0
    cr_box: int = 7
    edge_pix: int = 5


def make_variance(
    data: np.ndarray,
    sky: np.ndarray | float,
    *,
    gain: float,
    readnoise: float,
    include_source: bool = True,
) -> np.ndarray:
    """Per-pixel variance (ADU^2) from Poisson statistics and read noise.

    ``var = (sky + max(data - sky, 0) * include_source) / gain + (readnoise / gain)^2``

    Parameters
    ----------
    data : ndarray
        Image in ADU, bias-subtracted, sky *not* subtracted.
    sky : ndarray or float
        Sky level in ADU (e.g. ``Background.level``); floors the Poisson term.
    gain : float
        e-/ADU.
    readnoise : float
        Read noise in electrons.
    include_source : bool, optional
        Add the source photons' Poisson noise (default).  Without it the variance is
        that of the sky alone, as in the DECam community-pipeline weight maps.

    Returns
    -------
    ndarray, float32
    """
    if not gain > 0:
        raise ValueError(f"gain must be positive, got {gain}")
    d = np.asarray(data, dtype=np.float32)
    s = np.clip(np.asarray(sky, dtype=np.float32), 0, None)
    signal = s + np.clip(d - s, 0, None) if include_source else s + 0 * d
    return (signal / gain + (readnoise / gain) ** 2).astype(np.float32)


def _bad_columns(data: np.ndarray, good: np.ndarray, config: MaskConfig) -> np.ndarray:
    """Columns offset from their neighbours (c +- 2) along their whole length, or constant."""
    d = np.where(good, data, np.nan)
    ny, nx = d.shape
    if nx < 5:
        return np.zeros(nx, dtype=bool)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        colstd = np.nanstd(d, axis=0)
        dd = np.diff(d, axis=0)
        pixnoise = mad_std(dd, ignore_nan=True) / np.sqrt(2.0)
    floor = config.bad_column_min_offset * (pixnoise if np.isfinite(pixnoise) else 0.0)
    bad = np.zeros(nx, dtype=bool)
    for _ in range(2):  # second pass: bad columns no longer serve as neighbours
        ref = np.where(bad[None, :], np.nan, d)
        p = np.pad(ref, ((0, 0), (2, 2)), mode="reflect")
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            # row-median of the pixel-by-pixel difference to the columns 2 away:
            # smooth structure (stars, nebulae, cluster light) cancels, an offset not
            nb = np.nanmean(np.stack([p[:, :-4], p[:, 4:]]), axis=0)
            resid = np.nanmedian(d - nb, axis=0)
        finite = np.isfinite(resid)
        if not finite.any():
            return bad
        mad = robust_sigma(resid[finite])
        new = finite & (np.abs(resid) > max(config.bad_column_nsigma * mad, floor))
        new |= np.isfinite(colstd) & (colstd == 0) & (ny > 1)
        if bad.any() or not new.any():
            return new
        # keep only primaries (|resid| >= that of columns c +- 2): a bad column's
        # neighbours at c +- 2 show half its offset with the opposite sign
        a = np.pad(np.abs(np.where(finite, resid, 0.0)), 2)
        bad = new & (a[2:-2] >= a[:-4]) & (a[2:-2] >= a[4:])
    return bad


def _cosmic_rays(
    data: np.ndarray, usable: np.ndarray, noise: np.ndarray | float, config: MaskConfig
) -> np.ndarray:
    """Flag pixels sharper than any PSF (single-pass L.A.Cosmic-like test)."""
    p = np.pad(data, 1, mode="edge")
    mean4 = 0.25 * (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:])
    lap = data - mean4
    # noise of I - mean4 for independent pixels is sqrt(1 + 1/4) sigma
    cand = usable & (lap > config.cr_nsigma * 1.118 * noise)
    iy, ix = np.nonzero(cand)
    cr = np.zeros(data.shape, dtype=bool)
    if iy.size == 0:
        return cr
    h = config.cr_box // 2
    pb = np.pad(data, h, mode="reflect")
    off = np.arange(-h, h + 1)
    boxes = pb[(iy + h)[:, None, None] + off[None, :, None], (ix + h)[:, None, None] + off]
    local = np.median(boxes.reshape(iy.size, -1), axis=1)
    sharp = lap[iy, ix] / np.maximum(data[iy, ix] - local, 1e-12)
    hit = sharp > config.cr_sharpness
    cr[iy[hit], ix[hit]] = True
    if hit.any():
        # grow into neighbours that are significantly above their local sky
        lsky = np.full(data.shape, np.inf, dtype=np.float32)
        grown = ndimage.binary_dilation(cr, structure=np.ones((3, 3), bool)) & ~cr & usable
        gy, gx = np.nonzero(grown)
        if gy.size:
            b2 = pb[(gy + h)[:, None, None] + off[None, :, None], (gx + h)[:, None, None] + off]
            lsky[gy, gx] = np.median(b2.reshape(gy.size, -1), axis=1)
            nz = noise[gy, gx] if np.ndim(noise) else noise
            cr[gy, gx] = data[gy, gx] - lsky[gy, gx] > config.cr_grow_nsigma * nz
    return cr


def build_mask(
    data: np.ndarray,
    *,
    saturate: float = np.inf,
    config: MaskConfig = MaskConfig(),
    variance: np.ndarray | None = None,
) -> np.ndarray:
    """Build the :class:`MaskBits` mask of an image.

    Parameters
    ----------
    data : ndarray (ny, nx)
        Image in ADU (sky not subtracted).
    saturate : float, optional
        Saturation level in ADU; ``inf`` disables SATURATED/BLEED.
    config : MaskConfig, optional
        Thresholds and grow radii.
    variance : ndarray, optional
        Per-pixel variance (ADU^2) for the cosmic-ray significance; if omitted a
        global robust noise (MAD of the 4-neighbour Laplacian) is used.

    Returns
    -------
    ndarray (ny, nx), int32
    """
    d = np.asarray(data, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"data must be 2-D, got shape {d.shape}")
    mask = np.zeros(d.shape, dtype=np.int32)
    finite = np.isfinite(d)
    d = np.where(finite, d, 0.0).astype(np.float32)

    sat = finite & (d >= saturate)
    if sat.any():
        g = config.saturate_grow_pix
        if g > 0:
            sat = ndimage.maximum_filter(sat, size=2 * g + 1)
        mask[sat] |= MaskBits.SATURATED
        b = config.bleed_grow_pix
        if b > 0:
            bleed = ndimage.maximum_filter1d(sat.view(np.uint8), size=2 * b + 1, axis=0) > 0
            mask[bleed & ~sat] |= MaskBits.BLEED

    badcol = _bad_columns(d, finite & ~sat, config)
    mask[:, badcol] |= MaskBits.BAD_COLUMN

    e = config.edge_pix
    edge = ~finite
    if e > 0:
        edge[:e, :] = edge[-e:, :] = True
        edge[:, :e] = edge[:, -e:] = True
    mask[edge] |= MaskBits.EDGE

    if variance is not None:
        noise = np.sqrt(np.clip(np.asarray(variance, dtype=np.float32), 0, None))
    else:
        p = np.pad(d, 1, mode="edge")
        lap = d - 0.25 * (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:])
        sample = lap[finite][:: max(1, lap.size // 200_000)]
        noise = robust_sigma(sample) / 1.118
    usable = finite & (mask == 0)
    mask[_cosmic_rays(d, usable, noise, config)] |= MaskBits.COSMIC_RAY
    return mask


def _header_float(header: fits.Header, *keys: str) -> float | None:
    for key in keys:
        v = header.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v):
            return float(v)
    return None


def _header_pair(header: fits.Header, single: str, a: str, b: str) -> float | None:
    v = _header_float(header, single)
    if v is not None:
        return v
    va, vb = _header_float(header, a), _header_float(header, b)
    vals = [q for q in (va, vb) if q is not None]
    return float(np.mean(vals)) if vals else None


def image_from_header(
    data: np.ndarray,
    header: fits.Header,
    *,
    gain: float | None = None,
    readnoise: float | None = None,
    wcs_header: fits.Header | None = None,
    where: str = "image",
) -> Image:
    """An :class:`Image` from pixel data and its header (no mask bits, no variance yet).

    Gain is ``GAIN`` or the mean of ``GAINA``/``GAINB``; read noise ``RDNOISE`` or the
    mean of ``RDNOISEA``/``RDNOISEB`` (0 when absent); saturation ``SATURATE`` or
    ``SATURATA`` (infinite when absent). The mask is all zeros and the variance
    None: :func:`photdb.pipeline.prepare_image` builds both once, from the data.

    Parameters
    ----------
    data : ndarray (ny, nx)
        Pixel values, ADU.
    header : astropy.io.fits.Header
        With a celestial WCS.
    gain, readnoise : float, optional
        Override / supply values missing from the header (e-/ADU, e-).
    wcs_header : astropy.io.fits.Header, optional
        The header to read the WCS from, when not ``header`` (e.g. an extension's own
        header, before cards inherited from the primary were added to ``header``).
    where : str
        How to name the image in error messages (e.g. ``"file.fits [HDU 1]"``).

    Raises
    ------
    ValueError
        No 2-D data, no usable celestial WCS, or no positive gain.
    """
    if data is None or np.ndim(data) != 2:
        raise ValueError(f"{where}: no 2-D image data")
    try:
        wcs = WCS(header if wcs_header is None else wcs_header)
        ok = wcs.has_celestial and wcs.celestial.pixel_n_dim == 2
    except Exception as exc:  # astropy raises several types on broken WCS
        raise ValueError(f"{where}: cannot parse WCS: {exc}") from exc
    if not ok:
        raise ValueError(f"{where}: header has no usable celestial WCS")
    g = gain if gain is not None else _header_pair(header, "GAIN", "GAINA", "GAINB")
    if g is None or not g > 0:
        raise ValueError(f"{where}: no usable GAIN/GAINA/GAINB; pass gain=")
    rn = readnoise
    if rn is None:
        rn = _header_pair(header, "RDNOISE", "RDNOISEA", "RDNOISEB")
    sat = _header_float(header, "SATURATE", "SATURATA")
    arr = np.asarray(data, dtype=np.float32)
    return Image(
        arr,
        np.zeros(arr.shape, dtype=np.int32),
        None,
        wcs.celestial,
        header,
        float(g),
        0.0 if rn is None else float(rn),
        np.inf if sat is None else sat,
    )
