"""Find FITS files and read one into an :class:`ExposureRecord` (no database).

A file is read in full once: its SHA-256 (the archive's identity of a file) is
taken over the bytes on disk, CHECKSUM/DATASUM are verified where present,
every HDU's data must lie inside the file, and every tile of a tile-compressed
image is decompressed, so a truncated or corrupt file is refused rather than
half-ingested, with or without checksums. A ``.gz`` file, or one compressed
image, that would unpack to more than the ``max_unpacked_mb`` setting is
skipped as a possible decompression bomb, before it takes the memory.

Header cards with non-ASCII bytes (not FITS, but written by some software)
are not left as the '?' astropy reads: a string value is kept whole, decoded
as UTF-8 (else Latin-1), with a warning; a card that cannot be kept whole
refuses the file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from astropy.io import fits

from photdb.archive.headers import (
    HeaderError,
    HeaderMaps,
    ObservationRecord,
    header_to_json,
    parse_header,
)
from photdb.archive.walk import FITS_SUFFIXES, FitsWalk, find_fits, printable, walk_fits

__all__ = [
    "FITS_SUFFIXES",
    "ExposureError",
    "ExposureRecord",
    "FitsWalk",
    "ImageRecord",
    "find_fits",
    "printable",
    "read_exposure",
    "walk_fits",
]

_CHUNK = 1 << 20
_MAX_NAME, _MAX_PATH = 255, 1024  # observations.filename and path_to_fits


class ExposureError(ValueError):
    """A file that cannot be archived; the message is one line naming the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = printable(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")


@dataclass(frozen=True)
class ImageRecord:
    """One image HDU: its ``observations`` row plus its ``galimages`` columns.

    Attributes
    ----------
    observation : ObservationRecord
        The parsed header.
    header_json : dict
        The header for ``metadata_obs_json.data`` (see ``header_to_json``).
    hdu : int
        HDU index in the file (0 = primary).
    """

    observation: ObservationRecord
    header_json: dict[str, object]
    hdu: int
    extname: str | None
    ccdnum: int | None
    naxis1: int
    naxis2: int


@dataclass(frozen=True)
class ExposureRecord:
    """One FITS file, ready for ``galexposures``; ``mjd`` etc. from its first image."""

    sha256: str
    filename: str
    path: str
    mjd: float
    band: str | None
    exptime: float | None
    telescope: str | None
    instrument: str | None
    observatory: str | None
    images: tuple[ImageRecord, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        """Every image's warnings, prefixed with its HDU."""
        return tuple(f"HDU {im.hdu}: {w}" for im in self.images for w in im.observation.warnings)


def _sha256_and_stream(path: Path, limit: int) -> tuple[str, BinaryIO | None]:
    """SHA-256 of the file; for gzip files also the whole decompressed stream (<= limit)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    if not path.name.lower().endswith(".gz"):
        return digest.hexdigest(), None
    out = io.BytesIO()
    try:  # gzip tells a cut stream apart from a complete one; astropy does not
        with gzip.open(path, "rb") as gz:
            while chunk := gz.read(_CHUNK):
                if out.tell() + len(chunk) > limit:
                    raise ExposureError(path, _bomb(limit))
                out.write(chunk)
    except (EOFError, OSError, zlib.error) as exc:
        raise ExposureError(path, f"corrupt or truncated gzip stream ({exc})") from exc
    out.seek(0)
    return digest.hexdigest(), out


def _bomb(limit: int) -> str:
    return (
        f"unpacks to more than {limit / 2**20:.0f} MB (setting PHOTDB_MAX_UNPACKED_MB); "
        "skipped as a possible decompression bomb"
    )


def _is_image(hdu: fits.hdu.base._BaseHDU) -> bool:
    if isinstance(hdu, fits.GroupsHDU) or not isinstance(
        hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU
    ):
        return False
    shape = [hdu.header.get(f"NAXIS{i}", 0) for i in (1, 2)]
    return hdu.header.get("NAXIS", 0) >= 2 and all(isinstance(n, int) and n > 0 for n in shape)


def _check_complete(path: Path, hdul: fits.HDUList, size: int) -> None:
    last = hdul[-1].fileinfo()
    if size - (last["datLoc"] + last["datSpan"]) >= 2880:
        raise ExposureError(path, f"corrupt file: unreadable bytes after HDU {len(hdul) - 1}")
    for index, hdu in enumerate(hdul):
        info = hdu.fileinfo()
        end = info["datLoc"] + info["datSpan"]
        if end <= size:
            continue
        unpadded = info["datSpan"] if isinstance(hdu, fits.CompImageHDU) else hdu.size
        if info["datLoc"] + unpadded > size:
            raise ExposureError(
                path, f"truncated file: HDU {index} needs {end} bytes, the file has {size}"
            )


def _decompress_all(path: Path, index: int, hdu: fits.CompImageHDU, limit: int) -> None:
    """Decompress every tile (corruption shows even without checksums), in bounded memory."""
    shape = hdu.shape
    itemsize = abs(int(hdu.header.get("BITPIX", 8))) // 8
    total = int(np.prod(shape, dtype=np.int64)) * itemsize
    if total > limit:
        raise ExposureError(path, f"HDU {index} {_bomb(limit)}")
    if not shape or total == 0:
        return
    rows = max(1, (64 << 20) // max(1, total // shape[0]))
    try:
        for start in range(0, shape[0], rows):
            hdu.section[start : start + rows]
    except Exception as exc:  # cfitsio, zlib and astropy raise many types
        raise ExposureError(
            path, f"corrupt compressed image in HDU {index} ({type(exc).__name__}: {exc})"
        ) from exc


def _problems(caught: list[warnings.WarningMessage]) -> list[str]:
    bad = []
    for w in caught:
        text = " ".join(str(w.message).split())
        if "verification failed" in text:
            bad.append(f"bad checksum: {text}")
        elif "truncated" in text:
            bad.append(f"truncated file: {text}")
        elif "Error validating header" in text or "extra bytes after the last HDU" in text:
            bad.append(f"truncated or corrupt file: {text}")
    return bad


def _string_value(field_: bytes) -> bytes | None:
    """The bytes of a FITS string value ('...' with '' for a quote), or None."""
    text = field_.lstrip(b" ")
    if not text.startswith(b"'"):
        return None
    out, i = bytearray(), 1
    while i < len(text):
        if text[i : i + 1] == b"'":
            if text[i + 1 : i + 2] == b"'":
                out += b"'"
                i += 2
                continue
            return bytes(out).rstrip(b" ")
        out += text[i : i + 1]
        i += 1
    return None


def _non_ascii(path: Path, raw: bytes, hdu: int) -> tuple[dict[str, str], list[str]]:
    """String values of cards with non-ASCII bytes, decoded whole, and one note each."""
    values, notes = {}, []
    for i in range(0, len(raw) - 79, 80):
        card = raw[i : i + 80]
        if card.isascii():
            continue
        key = card[:8].decode("ascii", "replace").strip()
        if not card[:8].isascii():
            raise ExposureError(path, f"HDU {hdu}: a keyword with non-ASCII bytes ({key!r})")
        if key in ("COMMENT", "HISTORY", "") or card[8:10] != b"= ":
            notes.append(f"non-ASCII bytes in a {key or 'blank'} card (not stored)")
            continue
        value = _string_value(card[10:])
        if value is None or key == "CONTINUE":
            raise ExposureError(path, f"HDU {hdu}: {key} has non-ASCII bytes outside a string")
        if value.isascii():
            continue  # the non-ASCII bytes are in the comment, which is not stored
        try:
            text, enc = value.decode("utf-8"), "UTF-8"
        except UnicodeDecodeError:
            text, enc = value.decode("latin-1"), "Latin-1"
        values[key] = text
        notes.append(f"non-ASCII bytes in {key} (FITS headers are ASCII): kept as {text!r} ({enc})")
    return values, notes


def read_exposure(
    path: str | Path, *, maps: HeaderMaps | None = None, max_unpacked_mb: float = 1024
) -> ExposureRecord:
    """Read, verify and parse one FITS file.

    Parameters
    ----------
    path : str or Path
        A FITS file (plain, ``.gz`` or tile-compressed ``.fz``).
    maps : HeaderMaps, optional
        Filter and mode maps for :func:`~photdb.archive.headers.parse_header`.
    max_unpacked_mb : float
        Largest size a ``.gz`` file, or one compressed image, may unpack to [MB].

    Returns
    -------
    ExposureRecord
        With one :class:`ImageRecord` per image HDU (a primary HDU with a
        2-D image, every ``ImageHDU`` and ``CompImageHDU``).

    Raises
    ------
    ExposureError
        Unreadable, truncated, corrupt or checksum-failing file, a possible
        decompression bomb, a name too long to store, or no image HDU.
    HeaderError
        An image header without a usable observation time.
    """
    path = Path(path)
    if len(path.name) > _MAX_NAME or len(str(path.parent.resolve())) > _MAX_PATH:
        raise ExposureError(path, f"name or folder too long to store ({_MAX_NAME}/{_MAX_PATH})")
    limit = int(max_unpacked_mb * 2**20)
    sha256, stream = _sha256_and_stream(path, limit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fh = stream if stream is not None else open(path, "rb")  # noqa: SIM115
        try:
            size = len(stream.getvalue()) if isinstance(stream, io.BytesIO) else path.stat().st_size
            with fits.open(fh, checksum=True, memmap=False, lazy_load_hdus=False) as hdul:
                problems = _problems(caught)
                if problems:
                    raise ExposureError(path, problems[0])
                _check_complete(path, hdul, size)
                repaired = any("non-ASCII" in str(w.message) for w in caught)
                images = _read_images(path, hdul, maps, fh if repaired else None, limit)
        except (ExposureError, HeaderError):
            raise
        except Exception as exc:  # astropy raises OSError, TypeError, ValueError, ...
            what = "truncated file" if "too small" in str(exc) else "not a readable FITS file"
            raise ExposureError(path, f"{what} ({exc})") from exc
        finally:
            fh.close()
    if not images:
        raise ExposureError(path, "no image HDU")
    first = images[0].observation
    return ExposureRecord(
        sha256=sha256,
        filename=path.name,
        path=str(path.parent.resolve()),
        mjd=first.mjd,
        band=first.band,
        exptime=first.accumtime,
        telescope=first.telescope,
        instrument=first.instrument,
        observatory=first.observatory,
        images=tuple(images),
    )


def _raw_header(fh: BinaryIO, hdu: fits.hdu.base._BaseHDU) -> bytes:
    info = hdu.fileinfo()
    fh.seek(info["hdrLoc"])
    return fh.read(info["datLoc"] - info["hdrLoc"])


def _read_images(
    path: Path, hdul: fits.HDUList, maps: HeaderMaps | None, raw: BinaryIO | None, limit: int
) -> list[ImageRecord]:
    fixes = [
        _non_ascii(path, _raw_header(raw, h), i) if raw else ({}, []) for i, h in enumerate(hdul)
    ]
    primary = hdul[0].header
    images = []
    for index, hdu in enumerate(hdul):
        if not _is_image(hdu):
            continue
        if isinstance(hdu, fits.CompImageHDU):
            _decompress_all(path, index, hdu, limit)
        header = hdu.header
        base = None if index == 0 else primary
        values = dict(fixes[index][0])
        if index:  # the primary's repaired cards, where the extension does not set them
            values.update({k: v for k, v in fixes[0][0].items() if k not in header})
        obs = parse_header(
            header, primary=base, path=path.resolve(), hdu=index, maps=maps, overrides=values
        )
        notes = fixes[index][1] + (fixes[0][1] if index else [])
        if notes:
            obs = replace(obs, warnings=(*obs.warnings, *notes))
        extname = values.get("EXTNAME", header.get("EXTNAME"))
        ccdnum = header.get("CCDNUM")
        extname = str(extname).strip() if extname else None
        if extname is not None and len(extname) > 68:
            raise ExposureError(path, f"HDU {index}: EXTNAME longer than 68 characters")
        images.append(
            ImageRecord(
                observation=obs,
                header_json={**header_to_json(header, base), **values},
                hdu=index,
                extname=extname,
                ccdnum=int(ccdnum) if isinstance(ccdnum, int) else None,
                naxis1=int(header["NAXIS1"]),
                naxis2=int(header["NAXIS2"]),
            )
        )
    return images
