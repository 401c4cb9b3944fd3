"""The pipeline's only file I/O: read one chip, write a stacked reference.

:func:`read_chip` opens a FITS file once and returns an :class:`~photdb.image.Image`:
a raw chip (header values, primary-header cards inherited, an effective gain when
the header has none), or a stacked reference written by :func:`write_stack`
(its variance and mask read back from the ``.npz`` beside it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from photdb.background import estimate_effective_gain
from photdb.image import Image, image_from_header
from photdb.pipeline.config import PipelineConfig

__all__ = ["STACK_CARD", "read_chip", "write_stack"]

#: Header card marking an :class:`~photdb.image.Image` made by
#: :func:`~photdb.pipeline.build_stacked_reference`: its variance is used as given.
STACK_CARD = "PDBSTACK"

_NOT_INHERITED = ("SIMPLE", "BITPIX", "NAXIS", "EXTEND", "COMMENT", "HISTORY", "")
_WCS_PREFIXES = ("CD", "PC", "CRPIX", "CRVAL", "CTYPE", "CUNIT", "A_", "B_", "AP_", "BP_")


def read_chip(
    path: str | PathLike[str],
    hdu: int | str = 0,
    *,
    config: PipelineConfig = PipelineConfig(),
    inherit: bool = True,
) -> Image:
    """Read one HDU as an :class:`~photdb.image.Image`, opening the file once.

    Parameters
    ----------
    path, hdu
        FITS file and HDU (index or EXTNAME).
    config : PipelineConfig
        ``selection.gain_fallback`` and ``sky`` (for the effective gain).
    inherit : bool
        Copy primary-header cards missing from the HDU header (``INHERIT`` style,
        e.g. FILTER, EXPTIME, MAGZERO of a DECam MEF) into ``Image.header``.

    Returns
    -------
    photdb.image.Image
        A raw chip has no mask bits and no variance yet (the pipeline builds both);
        a stack (``PDBSTACK`` card) has its own.

    Notes
    -----
    With no GAIN/GAINA/GAINB the gain is ``selection.gain_fallback`` or, if None, an
    effective gain ``sky / sigma_sky²`` of the image itself
    (:func:`photdb.background.estimate_effective_gain`). A missing read noise is 0
    (the effective gain then carries all of the sky noise) and a missing SATURATE
    is infinite (no saturation mask).
    """
    path = Path(path)
    where = f"{path} [HDU {hdu}]"
    with fits.open(path) as hdul:
        h = hdul[hdu]
        header = h.header.copy()
        own = h.header.copy()  # the WCS comes from the extension's own cards
        data = None if h.data is None else np.array(h.data, dtype=np.float32)
        if inherit and hdul.index_of(hdu) != 0:
            for card in hdul[0].header.cards:
                if card.keyword not in header and card.keyword not in _NOT_INHERITED:
                    header[card.keyword] = (card.value, card.comment)
    if header.get(STACK_CARD, False):
        return _stack_image(path, hdu, data, header, where)
    gain = None
    if data is not None and not any(k in header for k in ("GAIN", "GAINA", "GAINB")):
        gain = config.selection.gain_fallback
        if gain is None:
            gain = estimate_effective_gain(data, config=config.sky)
    return image_from_header(data, header, gain=gain, wcs_header=own, where=where)


def _stack_image(path: Path, hdu: int | str, data, header: fits.Header, where: str) -> Image:
    if data is None or data.ndim != 2:
        raise ValueError(f"{where}: no 2-D image data")
    aux_path = path.with_suffix(".npz")
    try:
        aux = np.load(aux_path)
        key = str(hdu)
        mask, var = aux[f"mask_{key}"], aux[f"var_{key}"]
    except (OSError, KeyError) as exc:
        raise ValueError(
            f"{where}: stacked reference without its {aux_path.name} ({exc})"
        ) from None
    return Image(
        data,
        mask.astype(np.int32),
        var.astype(np.float32),
        WCS(header).celestial,
        header,
        float(header.get("GAIN", 1.0)),
        float(header.get("RDNOISE", 0.0)),
        np.inf,
    )


def write_stack(
    path: str | PathLike[str], stacks: Sequence[Image], *, primary: fits.Header | None
) -> Path:
    """Write stacked references (one per chip) as a FITS file plus a ``.npz``.

    The science HDUs (1, 2, ...) hold the stacks with their WCS and ``GAIN``; the
    ``.npz`` beside the file holds each HDU's variance (``var_<hdu>``) and mask
    (``mask_<hdu>``), which :func:`read_chip` reads back. The FITS file appears
    atomically (written under a temporary name, then renamed), after the ``.npz``.

    Parameters
    ----------
    path : path-like
        The ``.fits`` file to write.
    stacks : sequence of Image
        From :func:`~photdb.pipeline.build_stacked_reference`, one per chip.
    primary : astropy.io.fits.Header, optional
        The primary header to copy (the first member exposure's).
    """
    out = Path(path)
    hdus: list = [fits.PrimaryHDU(header=primary) if primary is not None else fits.PrimaryHDU()]
    aux: dict[str, np.ndarray] = {}
    for stack in stacks:
        header = stack.header.copy()
        for key in list(header):
            if key.startswith(_WCS_PREFIXES) and key != "PCOUNT":
                del header[key]
        header.update(stack.wcs.to_header(relax=True))
        header["GAIN"] = (float(stack.gain), "e-/ADU of the first input")
        hdus.append(fits.ImageHDU(stack.data.astype(np.float32), header=header))
        aux[f"var_{len(hdus) - 1}"] = np.asarray(stack.variance, np.float32)
        aux[f"mask_{len(hdus) - 1}"] = stack.mask.astype(np.int32)
    tmp = out.with_suffix(".tmp.fits")
    fits.HDUList(hdus).writeto(tmp, overwrite=True, checksum=True)
    np.savez_compressed(out.with_suffix(".npz"), **aux)
    os.replace(tmp, out)
    return out
