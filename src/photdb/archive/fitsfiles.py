"""Find FITS files and read one into an :class:`ExposureRecord` (no database).

A file is read in full once: its SHA-256 (the archive's identity of a file) is
taken over the bytes on disk, CHECKSUM/DATASUM are verified where present, and
every HDU's data must lie inside the file, so a truncated or corrupt file is
refused rather than half-ingested.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from astropy.io import fits

from photdb.archive.headers import (
    HeaderError,
    HeaderMaps,
    ObservationRecord,
    header_to_json,
    parse_header,
)

__all__ = [
    "FITS_SUFFIXES",
    "ExposureError",
    "ExposureRecord",
    "ImageRecord",
    "find_fits",
    "read_exposure",
]

#: File name endings taken as FITS (compared case-insensitively).
FITS_SUFFIXES = (".fit", ".fits", ".fts", ".fz", ".fits.gz", ".fit.gz", ".fts.gz")
_CHUNK = 1 << 20


class ExposureError(ValueError):
    """A file that cannot be archived; the message is one line naming the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
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


def _is_fits_name(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in FITS_SUFFIXES)


def find_fits(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """FITS files among ``paths``, directories walked recursively, sorted, unique.

    Files named explicitly are kept whatever their suffix; inside directories
    only names ending in :data:`FITS_SUFFIXES` (any case) are taken.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found.update(f for f in p.rglob("*") if f.is_file() and _is_fits_name(f))
        elif p.is_file():
            found.add(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return sorted(found)


def _sha256_and_stream(path: Path) -> tuple[str, BinaryIO | None]:
    """SHA-256 of the file; for gzip files also the whole decompressed stream."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    if not path.name.lower().endswith(".gz"):
        return digest.hexdigest(), None
    try:  # gzip tells a cut stream apart from a complete one; astropy does not
        with gzip.open(path, "rb") as gz:
            data = gz.read()
    except (EOFError, OSError, zlib.error) as exc:
        raise ExposureError(path, f"corrupt or truncated gzip stream ({exc})") from exc
    return digest.hexdigest(), io.BytesIO(data)


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


def read_exposure(path: str | Path, *, maps: HeaderMaps | None = None) -> ExposureRecord:
    """Read, verify and parse one FITS file.

    Parameters
    ----------
    path : str or Path
        A FITS file (plain, ``.gz`` or tile-compressed ``.fz``).
    maps : HeaderMaps, optional
        Filter and mode maps for :func:`~photdb.archive.headers.parse_header`.

    Returns
    -------
    ExposureRecord
        With one :class:`ImageRecord` per image HDU (a primary HDU with a
        2-D image, every ``ImageHDU`` and ``CompImageHDU``).

    Raises
    ------
    ExposureError
        Unreadable, truncated, corrupt or checksum-failing file, or no image HDU.
    HeaderError
        An image header without a usable observation time.
    """
    path = Path(path)
    sha256, stream = _sha256_and_stream(path)
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
                images = _read_images(path, hdul, maps)
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


def _read_images(path: Path, hdul: fits.HDUList, maps: HeaderMaps | None) -> list[ImageRecord]:
    primary = hdul[0].header
    images = []
    for index, hdu in enumerate(hdul):
        if not _is_image(hdu):
            continue
        header = hdu.header
        base = None if index == 0 else primary
        obs = parse_header(header, primary=base, path=path.resolve(), hdu=index, maps=maps)
        extname = header.get("EXTNAME")
        ccdnum = header.get("CCDNUM")
        images.append(
            ImageRecord(
                observation=obs,
                header_json=header_to_json(header, base),
                hdu=index,
                extname=str(extname).strip()[:16] if extname else None,
                ccdnum=int(ccdnum) if isinstance(ccdnum, int) else None,
                naxis1=int(header["NAXIS1"]),
                naxis2=int(header["NAXIS2"]),
            )
        )
    return images
