"""Turn a FITS header into the archive's ``observations`` row (pure: no I/O).

The column meanings follow the archive document: ``dateobs`` is the start of
the exposure, ``fov`` the angular size in radians, ``coordequ`` the pointing in
degrees with its source in ``coordequsrc`` ('wcs', 'objectequ' or 'radec').
photdb adds ``mjd``, the mid-exposure MJD in the UTC scale.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.time import Time, TimeDelta
from erfa import ErfaWarning

from photdb.archive.obstime import pg_datetime, plausible, range_text
from photdb.archive.sky import image_pointing, number
from photdb.bands import (
    HeaderMaps,
    _default_maps,
    load_maps,
    normalise_band,
    normalise_mode,
)

__all__ = [
    "HeaderError",
    "HeaderMaps",
    "ObservationRecord",
    "load_maps",
    "header_to_json",
    "merge_headers",
    "normalise_band",
    "normalise_mode",
    "parse_header",
]

#: TIMESYS values that astropy converts; GPS is TAI - 19 s.
_SCALES = {
    "UTC": "utc",
    "UT": "utc",
    "TT": "tt",
    "TDT": "tt",
    "ET": "tt",
    "TAI": "tai",
    "TDB": "tdb",
    "TCG": "tcg",
    "TCB": "tcb",
    "UT1": "ut1",
    "GPS": "gps",
}
#: Longest string a column takes from a header: what one FITS card can hold.
MAX_TEXT = 68
#: Exposure times from this on cannot be stored (numeric(12,4)) nor be real [s].
MAX_EXPTIME = 1e8


class HeaderError(ValueError):
    """A header the archive cannot use; the message names file, HDU and problem."""

    def __init__(self, path: str | Path, hdu: int, problem: str) -> None:
        self.path = str(path)
        self.hdu = hdu
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path} [HDU {hdu}]: {self.problem}")


@dataclass(frozen=True)
class ObservationRecord:
    """One image's ``observations`` row (plus its warnings), from its header.

    Attributes
    ----------
    dateobs : datetime
        Start of exposure, timezone-aware UTC.
    mjd : float
        Mid-exposure MJD, UTC scale.
    accumtime : float or None
        Exposure time [s].
    fov : tuple of float or None
        Angular size (x, y) [rad].
    coordequ : tuple of float or None
        ICRS (ra, dec) [deg] of the image centre or pointing.
    warnings : tuple of str
        Things worth telling the user that are not errors.
    """

    dateobs: datetime
    mjd: float
    timesys: str
    accumtime: float | None
    telescope: str | None
    instrument: str | None
    observatory: str | None
    mode: str | None
    band: str | None
    filter_raw: str | None
    fov: tuple[float, float] | None
    coordequ: tuple[float, float] | None
    coordequsrc: str | None
    filename: str
    path_to_fits: str
    hdu: int
    type: str = "image"
    warnings: tuple[str, ...] = ()


_COMMENTARY = frozenset({"", "COMMENT", "HISTORY"})
#: Kept out of the JSON: they checksum the HDU bytes, not the observation.
_DROP_JSON = frozenset({"CHECKSUM", "DATASUM", "ZHECKSUM", "ZDATASUM"})


def _card_values(header: fits.Header | None) -> dict[str, object]:
    """Keyword -> value, commentary cards dropped, first occurrence wins."""
    out: dict[str, object] = {}
    if header is None:
        return out
    with warnings.catch_warnings():  # astropy fixes non-standard cards and says so
        warnings.simplefilter("ignore", VerifyWarning)
        for card in header.cards:
            key = card.keyword
            if key in _COMMENTARY or key in out:
                continue
            try:
                out[key] = card.value
            except Exception:  # a card astropy cannot parse: fall back to its text
                out[key] = card.image[10:].strip() or None
    return out


def merge_headers(header: fits.Header, primary: fits.Header | None) -> dict[str, object]:
    """Keyword -> value of ``primary`` overlaid by ``header`` (the extension wins)."""
    merged = _card_values(primary)
    merged.update(_card_values(header))
    return merged


def _json_value(value: object) -> object:
    if value is None or isinstance(value, fits.card.Undefined):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, complex | np.complexfloating):
        return [_json_value(value.real), _json_value(value.imag)]
    return str(value).replace("\x00", "")


def header_to_json(header: fits.Header, primary: fits.Header | None = None) -> dict[str, object]:
    """The header as a JSON-ready dict for ``metadata_obs_json.data``.

    COMMENT, HISTORY and blank cards are dropped, as in the archive document,
    and so are CHECKSUM/DATASUM (and their Z variants), which describe the HDU
    bytes rather than the observation. Values keep their FITS types (bool,
    int, float, str); NaN/inf and undefined values become null; a repeated
    keyword keeps its first value. For an extension, pass the ``primary``
    header: the two are merged and the extension's cards win.

    Examples
    --------
    >>> from astropy.io import fits
    >>> header_to_json(fits.Header([("EXPTIME", 30.0), ("HISTORY", "x")]))
    {'EXPTIME': 30.0}
    """
    merged = merge_headers(header, primary)
    return {k: _json_value(v) for k, v in merged.items() if k not in _DROP_JSON}


def _text(h: Mapping[str, object], *keys: str) -> str | None:
    for key in keys:
        value = h.get(key)
        if value is None or isinstance(value, fits.card.Undefined):
            continue
        text = str(value).strip()
        if text:
            return text
    return None


_OLD_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{2})$")  # FITS pre-2000 DD/MM/YY, 19YY


def _parse_date(date: str, scale: str) -> Time:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ErfaWarning)
        try:
            t = Time(date.replace(" ", "T"), format="isot", scale=scale)
        except ValueError:
            t = Time(date, format="iso", scale=scale)
        t.utc  # noqa: B018  (conversions warn about impossible clocks)
    for w in caught:
        if "after end of day" in str(w.message):
            raise ValueError(f"DATE-OBS {date!r}: second 60 on a day without a leap second")
    return t


def _start_time(h: Mapping[str, object], scale: str, notes: list[str]) -> tuple[Time, str]:
    """Exposure start as an astropy Time in ``scale`` and the keyword used."""
    date = _text(h, "DATE-OBS", "DATE-BEG")
    if date is not None:
        date = date.rstrip("Zz")
        old = _OLD_DATE.match(date)
        if old:
            day, month, year = (int(g) for g in old.groups())
            date = f"{1900 + year:04d}-{month:02d}-{day:02d}"
        if "T" not in date and " " not in date.strip():
            clock = _text(h, "TIME-OBS", "UT", "UTSTART", "UT-START", "TIME-BEG")
            if clock is not None:
                date = f"{date}T{clock}"
        try:
            return _parse_date(date, scale), "DATE-OBS"
        except ValueError as exc:
            if "second 60" in str(exc):
                raise
            raise ValueError(f"unparsable DATE-OBS {h.get('DATE-OBS', date)!r}") from exc
    mjd = number(h, "MJD-OBS", "MJD-BEG", notes=notes)
    if mjd is not None:
        return Time(mjd, format="mjd", scale=scale), "MJD-OBS"
    jd = number(h, "JD-OBS", "JD", notes=notes)
    if jd is not None:
        return Time(jd, format="jd", scale=scale), "JD"
    raise ValueError("no observation time (DATE-OBS, MJD-OBS or JD)")


def _exptime(h: Mapping[str, object], notes: list[str]) -> float | None:
    for key in ("EXPTIME", "EXPOSURE", "EXPTIM", "ITIME"):
        if key not in h or h[key] is None or isinstance(h[key], fits.card.Undefined):
            continue
        value = number(h, key, notes=notes)
        if value is None:
            return None
        if not 0.0 <= value < MAX_EXPTIME:
            notes.append(
                f"{key} = {value!r} s is impossible (not in 0..{MAX_EXPTIME:.0e} s): "
                "accumtime left empty, mjd is the start time"
            )
            return None
        return value
    notes.append("no EXPTIME/EXPOSURE: mjd is the start time")
    return None


def _observation_time(
    h: Mapping[str, object], scale: str, notes: list[str]
) -> tuple[datetime, float, float | None]:
    """dateobs (start, for timestamptz), mid-exposure UTC MJD, exposure time [s]."""
    with warnings.catch_warnings():  # dates outside the leap-second table are fine here
        warnings.simplefilter("ignore", ErfaWarning)
        start, key = _start_time(h, scale, notes)
        start_utc = start.utc
        if not plausible(start_utc.mjd):
            raise ValueError(
                f"{key} {h.get(key, start_utc.isot)!r} is not a plausible observation time "
                f"({range_text()})"
            )
        exptime = _exptime(h, notes)
        mid = start_utc + TimeDelta((exptime or 0.0) / 2.0, format="sec")
        dateobs, leap = pg_datetime(start_utc)
        mjd = float(mid.utc.mjd)
    if leap:
        notes.append(
            f"{key} {start_utc.isot} is inside a leap second: dateobs holds "
            f"{dateobs.isoformat()} (PostgreSQL has no leap seconds), mjd is exact"
        )
    return dateobs, mjd, exptime


def _fits_string(h: Mapping[str, object], what: str, *keys: str) -> str | None:
    """A header string for a column, whole; longer than one FITS card can hold is refused."""
    text = _text(h, *keys)
    if text is not None and len(text) > MAX_TEXT:
        raise ValueError(f"{what} ({'/'.join(keys)}) is {len(text)} characters, over {MAX_TEXT}")
    return text


def parse_header(
    header: fits.Header,
    *,
    primary: fits.Header | None = None,
    path: str | Path,
    hdu: int = 0,
    maps: HeaderMaps | None = None,
    overrides: Mapping[str, object] | None = None,
) -> ObservationRecord:
    """Parse one image header into an :class:`ObservationRecord`.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The image HDU's header (its WCS is used).
    primary : astropy.io.fits.Header, optional
        The primary header of a multi-extension file; its keywords fill in
        what the extension lacks (the extension wins).
    path : str or Path
        The file, for ``filename``/``path_to_fits`` and error messages.
    hdu : int
        HDU index, for error messages.
    maps : HeaderMaps, optional
        Filter and mode maps; default the shipped ``filters.toml``.
    overrides : mapping, optional
        Keyword values that replace the header's (the true text of cards
        astropy read with '?' for non-ASCII bytes).

    Raises
    ------
    HeaderError
        No usable observation time, an unparsable or implausible one, or a
        string too long for its column. Impossible positions and exposure
        times are not errors: the column stays empty and a warning says why.
    """
    maps = maps or _default_maps()
    path = Path(path)
    h = merge_headers(header, primary)
    h.update(overrides or {})
    notes: list[str] = []
    timesys = (_text(h, "TIMESYS") or "UTC").upper()
    scale = _SCALES.get(timesys)
    if scale is None:
        raise HeaderError(path, hdu, f"unsupported TIMESYS {timesys!r}")
    try:
        dateobs, mjd, exptime = _observation_time(h, scale, notes)
        telescope = _fits_string(h, "telescope", "TELESCOP")
        instrument = _fits_string(h, "instrument", "INSTRUME")
        observatory = _fits_string(h, "observatory", "OBSERVAT", "SITENAME")
        filter_raw = _fits_string(h, "filter", "BAND", "FILTER", "FILTER1", "FILTNAME")
        mode = normalise_mode(
            _fits_string(h, "image type", "IMAGETYP", "OBSTYPE", "FRAMETYP", "FRAME"), maps=maps
        )
    except Exception as exc:
        raise HeaderError(path, hdu, str(exc)) from exc

    band = normalise_band(filter_raw, instrument=instrument, maps=maps)
    if filter_raw is not None and band is None:
        band = " ".join(filter_raw.split())
        notes.append(f"unknown filter {filter_raw!r} kept as {band!r} (add it to filters.toml)")
    coordequ, src, fov = image_pointing(header, h, notes)

    return ObservationRecord(
        dateobs=dateobs,
        mjd=mjd,
        timesys=timesys[:8],
        accumtime=exptime,
        telescope=telescope,
        instrument=instrument,
        observatory=observatory,
        mode=mode,
        band=band,
        filter_raw=filter_raw,
        fov=fov,
        coordequ=coordequ,
        coordequsrc=src,
        filename=path.name,
        path_to_fits=str(path.parent),
        hdu=hdu,
        warnings=tuple(notes),
    )
