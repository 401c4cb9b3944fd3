"""Bad input, made on purpose: FITS headers and files, for the corpus test.

Each writer makes one small file; :func:`patch_card` replaces a header card's
80 bytes, so that values astropy would refuse to write (NaN, non-ASCII) can be
put in a file as other software writes them.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from astropy.io import fits

from photdb.archive.tests.fitsfactory import _wcs_cards


def frame(path: Path, cards: list[tuple], *, seed: int = 0, wcs: bool = True) -> Path:
    """A small image with DATE-OBS, EXPTIME and a WCS unless ``cards`` override them."""
    base = [("DATE-OBS", "2021-10-22T20:13:42"), ("EXPTIME", 30.0), ("IMAGETYP", "Light Frame"),
            ("FILTER", "V"), ("TELESCOP", "Alica")]  # fmt: skip
    if wcs:
        base += _wcs_cards(259.9463, 76.6988, 0.00026, 16, 12)
    keys = {c[0] for c in cards}
    hdr = fits.Header(
        [c for c in base if c[0] not in keys] + [c for c in cards if c[1] is not None]
    )
    data = np.random.default_rng(seed).integers(0, 1000, (12, 16)).astype(np.int16)
    fits.PrimaryHDU(data, hdr).writeto(path, overwrite=True)
    return path


def patch_card(path: Path, key: str, card: bytes) -> Path:
    """Replace the card of ``key`` in the primary header by ``card`` (padded to 80 bytes)."""
    raw = bytearray(path.read_bytes())
    header_end = raw.find(b"END" + b" " * 77)
    for i in range(0, header_end, 80):
        if raw[i : i + 8].decode("ascii", "replace").strip() == key:
            raw[i : i + 80] = card.ljust(80)[:80]
            path.write_bytes(bytes(raw))
            return path
    raise KeyError(key)


def corrupt_tiles(path: Path) -> Path:
    """A RICE tile-compressed image without checksums, some tile bytes scrambled."""
    data = np.random.default_rng(5).integers(0, 1000, (200, 100)).astype(np.int16)
    hdus = fits.HDUList(
        [
            fits.PrimaryHDU(header=fits.Header([("DATE-OBS", "2021-10-22T20:13:42")])),
            fits.CompImageHDU(data, compression_type="RICE_1", tile_shape=(20, 100)),
        ]
    )
    hdus.writeto(path, overwrite=True)
    raw = bytearray(path.read_bytes())
    with fits.open(path) as h:
        info = h[1].fileinfo()
    mid = info["datLoc"] + info["datSpan"] // 2
    for k in range(mid, mid + 40):
        raw[k] ^= 0x5A
    path.write_bytes(bytes(raw))
    return path


def bomb(path: Path, unpacked_mb: int) -> Path:
    """A valid FITS image of ``unpacked_mb`` MB of zeros, gzipped to a few kB."""
    side = int(np.sqrt(unpacked_mb * 2**20 / 2))
    hdr = fits.Header(
        [
            ("SIMPLE", True),
            ("BITPIX", 16),
            ("NAXIS", 2),
            ("NAXIS1", side),
            ("NAXIS2", side),
            ("DATE-OBS", "2021-10-22T20:13:42"),
        ]  # fmt: skip
    )
    head = hdr.tostring().encode()
    body = side * side * 2
    pad = (-body) % 2880
    with gzip.open(path, "wb", compresslevel=1) as gz:
        gz.write(head)
        zero = bytes(1 << 20)
        left = body + pad
        while left:
            gz.write(zero[: min(left, len(zero))])
            left -= min(left, len(zero))
    return path
