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
from datetime import UTC, datetime
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import Angle
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.time import Time, TimeDelta
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales
from erfa import ErfaWarning

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
_FOV_TOLERANCE = 0.10  # relative WCS vs FOCALLEN/XPIXSZ pixel-scale disagreement that is reported


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


def _number(h: Mapping[str, object], *keys: str) -> float | None:
    for key in keys:
        value = h.get(key)
        if isinstance(value, bool) or value is None:
            continue
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            return number
    return None


_OLD_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{2})$")  # FITS pre-2000 DD/MM/YY, 19YY


def _start_time(h: Mapping[str, object], scale: str) -> tuple[Time, str]:
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
            return Time(date.replace(" ", "T"), format="isot", scale=scale), "DATE-OBS"
        except ValueError:
            pass
        try:
            return Time(date, format="iso", scale=scale), "DATE-OBS"
        except ValueError as exc:
            raise ValueError(f"unparsable DATE-OBS {h.get('DATE-OBS', date)!r}") from exc
    mjd = _number(h, "MJD-OBS", "MJD-BEG")
    if mjd is not None:
        return Time(mjd, format="mjd", scale=scale), "MJD-OBS"
    jd = _number(h, "JD-OBS", "JD")
    if jd is not None:
        return Time(jd, format="jd", scale=scale), "JD"
    raise ValueError("no observation time (DATE-OBS, MJD-OBS or JD)")


def _wcs(header: fits.Header, notes: list[str]) -> WCS | None:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wcs = WCS(header, naxis=2, fix=True)
        for w in caught:
            if not issubclass(w.category, FITSFixedWarning):
                notes.append(f"WCS: {' '.join(str(w.message).split())}")
    except Exception as exc:  # astropy raises many types for broken WCS headers
        notes.append(f"WCS unusable ({type(exc).__name__}: {' '.join(str(exc).split())})")
        return None
    if not wcs.has_celestial:
        return None
    return wcs.celestial


def _scales_from_optics(h: Mapping[str, object]) -> tuple[float, float] | None:
    """Pixel scale [deg/pix] from FOCALLEN [mm] and the binned pixel size [um].

    XPIXSZ/YPIXSZ already include binning (MaxIm DL, NINA and INDI write them
    so); PIXSIZE1/2 (INDI) are unbinned and are multiplied by X/YBINNING.
    """
    focal = _number(h, "FOCALLEN", "FOCAL")
    if not focal or focal <= 0:
        return None
    px = _number(h, "XPIXSZ")
    py = _number(h, "YPIXSZ")
    if px is None and (p1 := _number(h, "PIXSIZE1")) is not None:
        px = p1 * (_number(h, "XBINNING") or 1.0)
    if py is None and (p2 := _number(h, "PIXSIZE2")) is not None:
        py = p2 * (_number(h, "YBINNING") or 1.0)
    if px is None:
        return None
    py = px if py is None else py
    return tuple(206265.0 / focal * p / 1000.0 / 3600.0 for p in (px, py))  # type: ignore[return-value]


def _icrs(ra: Angle, dec: Angle) -> tuple[float, float]:
    return float(ra.wrap_at(360 * u.deg).deg), float(dec.deg)


def _pointing(h: Mapping[str, object]) -> tuple[tuple[float, float] | None, str | None]:
    ra, dec = _text(h, "OBJCTRA"), _text(h, "OBJCTDEC")
    if ra and dec:
        try:
            return _icrs(Angle(ra, u.hourangle), Angle(dec, u.deg)), "objectequ"
        except ValueError:
            pass
    for kra, kdec in (("RA", "DEC"), ("OBJRA", "OBJDEC"), ("TELRA", "TELDEC")):
        rv, dv = h.get(kra), h.get(kdec)
        if rv is None or dv is None:
            continue
        try:
            if isinstance(rv, str) and re.search(r"[:hms ]", rv.strip()):
                ang_ra = Angle(rv.strip(), u.hourangle)
            else:
                ang_ra = Angle(float(rv), u.deg)  # type: ignore[arg-type]
            ang_dec = Angle(dv.strip() if isinstance(dv, str) else float(dv), u.deg)  # type: ignore[arg-type]
            return _icrs(ang_ra, ang_dec), "radec"
        except (TypeError, ValueError):
            continue
    return None, None


def parse_header(
    header: fits.Header,
    *,
    primary: fits.Header | None = None,
    path: str | Path,
    hdu: int = 0,
    maps: HeaderMaps | None = None,
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

    Raises
    ------
    HeaderError
        No usable observation time, or an unparsable one.
    """
    maps = maps or _default_maps()
    path = Path(path)
    h = merge_headers(header, primary)
    notes: list[str] = []
    timesys = (_text(h, "TIMESYS") or "UTC").upper()
    scale = _SCALES.get(timesys)
    if scale is None:
        raise HeaderError(path, hdu, f"unsupported TIMESYS {timesys!r}")
    try:
        with warnings.catch_warnings():  # dates outside the leap-second table are fine here
            warnings.simplefilter("ignore", ErfaWarning)
            start, _ = _start_time(h, scale)
            start_utc = start.utc
            exptime = _number(h, "EXPTIME", "EXPOSURE", "EXPTIM", "ITIME")
            if exptime is None:
                notes.append("no EXPTIME/EXPOSURE: mjd is the start time")
            mid = start_utc + TimeDelta((exptime or 0.0) / 2.0, format="sec")
            dateobs = start_utc.to_datetime(timezone=UTC)
            mjd = float(mid.utc.mjd)
    except Exception as exc:
        raise HeaderError(path, hdu, str(exc)) from exc

    telescope = _text(h, "TELESCOP")
    instrument = _text(h, "INSTRUME")
    filter_raw = _text(h, "BAND", "FILTER", "FILTER1", "FILTNAME")
    band = normalise_band(filter_raw, instrument=instrument, maps=maps)
    if filter_raw is not None and band is None:
        band = " ".join(filter_raw.split())[:8]
        notes.append(f"unknown filter {filter_raw!r} kept as {band!r} (add it to filters.toml)")

    naxis1 = _number(h, "ZNAXIS1", "NAXIS1") if "ZNAXIS1" in h else _number(h, "NAXIS1")
    naxis2 = _number(h, "ZNAXIS2", "NAXIS2") if "ZNAXIS2" in h else _number(h, "NAXIS2")
    wcs = _wcs(header, notes)
    optics = _scales_from_optics(h)
    scales = None
    coordequ, src = None, None
    if wcs is not None:
        try:
            scales = tuple(float(s) for s in proj_plane_pixel_scales(wcs))
            cx = ((naxis1 or 1.0) - 1.0) / 2.0
            cy = ((naxis2 or 1.0) - 1.0) / 2.0
            sky = wcs.pixel_to_world(cx, cy)
            icrs = sky.icrs
            coordequ, src = _icrs(icrs.ra, icrs.dec), "wcs"
            if not all(np.isfinite(coordequ)):
                coordequ, src = None, None
        except Exception as exc:
            notes.append(f"WCS centre unusable ({type(exc).__name__}: {exc})")
            coordequ, src = None, None
    if scales is not None and optics is not None:
        ratio = scales[0] / optics[0]
        if abs(ratio - 1.0) > _FOV_TOLERANCE:
            notes.append(
                f'WCS pixel scale {scales[0] * 3600:.3f}" differs from '
                f'FOCALLEN/XPIXSZ {optics[0] * 3600:.3f}" by {100 * (ratio - 1):+.0f}%'
            )
    scales = scales or optics
    fov = None
    if scales is not None and naxis1 and naxis2:
        fov = (math.radians(naxis1 * scales[0]), math.radians(naxis2 * scales[1]))
    if coordequ is None:
        coordequ, src = _pointing(h)
    if coordequ is None:
        notes.append("no WCS and no pointing coordinates: coordequ left empty")

    return ObservationRecord(
        dateobs=dateobs,
        mjd=mjd,
        timesys=timesys[:8],
        accumtime=exptime,
        telescope=telescope,
        instrument=instrument,
        observatory=_text(h, "OBSERVAT", "SITENAME"),
        mode=normalise_mode(_text(h, "IMAGETYP", "OBSTYPE", "FRAMETYP", "FRAME"), maps=maps),
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
