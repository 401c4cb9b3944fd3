"""Cut-outs around a measurement, read from the image's FITS file, as PNG stamps.

So that a person can vet a candidate by eye: the reference image and a search
image around the same star, each scaled with a z-scale interval (as DS9 does) and
enlarged without smoothing. Only the few pixels needed are read (``section``, also
for tile-compressed files).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.visualization import ZScaleInterval

__all__ = ["StampError", "cutout", "stamp_png"]


class StampError(Exception):
    """The file or the pixels of a stamp cannot be had (message for the user)."""


def cutout(path: str | Path, hdu: int, x: float, y: float, size: int) -> np.ndarray:
    """``size`` x ``size`` pixels centred on 0-based (x, y) of HDU ``hdu``; NaN off the chip."""
    path = Path(path)
    if not path.is_file():
        raise StampError(f"the image file {path.name} is not on this server any more")
    half = size // 2
    xc, yc = int(round(x)), int(round(y))
    out = np.full((size, size), np.nan, np.float32)
    try:
        with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
            h = hdul[hdu]
            ny, nx = h.shape[-2:]
            x0, x1 = max(xc - half, 0), min(xc - half + size, nx)
            y0, y1 = max(yc - half, 0), min(yc - half + size, ny)
            if x0 >= x1 or y0 >= y1:
                return out
            data = np.asarray(h.section[y0:y1, x0:x1], np.float32)
    except (OSError, IndexError, ValueError, TypeError) as exc:
        raise StampError(f"cannot read {path.name} [HDU {hdu}]: {exc}") from None
    out[y0 - (yc - half) : y1 - (yc - half), x0 - (xc - half) : x1 - (xc - half)] = data
    return out


def stamp_png(pixels: np.ndarray, *, zoom: int = 3) -> bytes:
    """A grey PNG of ``pixels`` (z-scale, north up as stored: row 0 at the bottom),
    enlarged ``zoom`` times without smoothing, with a mark at the centre."""
    from PIL import Image

    good = np.isfinite(pixels)
    img = np.zeros(pixels.shape, np.uint8)
    if good.sum() > 4:
        lo, hi = ZScaleInterval().get_limits(pixels[good])
        if not hi > lo:
            hi = lo + 1.0
        scaled = np.clip((np.where(good, pixels, lo) - lo) / (hi - lo), 0, 1)
        img = (255 * scaled).astype(np.uint8)
    img = np.flipud(img)  # FITS row 0 is the bottom
    rgb = np.repeat(np.kron(img, np.ones((zoom, zoom), np.uint8))[..., None], 3, axis=2)
    n = rgb.shape[0]
    c, gap, arm = n // 2, 3 * zoom, 4 * zoom
    for a, b in ((c - gap - arm, c - gap), (c + gap, c + gap + arm)):  # a cross-hair with a hole
        rgb[c - 1 : c + 1, max(a, 0) : b] = (230, 60, 40)
        rgb[max(a, 0) : b, c - 1 : c + 1] = (230, 60, 40)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue()
