"""Where an image points and how much sky it covers, from its header (pure: no I/O).

Nothing is invented: a WCS whose keywords are not finite numbers is not used
(wcslib would silently read ``CRVAL1 = NaN`` as 0), a pointing outside
0 <= RA < 360 deg (24 h) or -90 <= Dec <= 90 deg is not used, and every value
left out is named in a note, the reason the column stays NULL.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping

import astropy.units as u
import numpy as np
from astropy.coordinates import Angle
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

__all__ = ["finite_number", "image_pointing", "number"]

_FOV_TOLERANCE = 0.10  # relative WCS vs FOCALLEN/XPIXSZ pixel-scale disagreement that is reported
_WCS_NUMBERS = re.compile(r"^(CRVAL|CRPIX|CDELT|CROTA)\d$|^(CD|PC)\d_\d$")


def finite_number(value: object) -> float | None:
    """``value`` as a finite float, or None (bool, text, NaN and inf are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def number(h: Mapping[str, object], *keys: str, notes: list[str] | None = None) -> float | None:
    """The first of ``keys`` holding a finite number; the others are noted, never guessed."""
    for key in keys:
        value = h.get(key)
        if value is None or isinstance(value, fits.card.Undefined):
            continue
        out = finite_number(value)
        if out is None and isinstance(value, str):
            try:
                out = float(value)
            except ValueError:
                out = None
            out = out if out is not None and math.isfinite(out) else None
        if out is not None:
            return out
        if notes is not None:
            notes.append(f"{key} = {value!r} is not a finite number: ignored")
    return None


def _bad_wcs_keywords(header: fits.Header, h: Mapping[str, object]) -> list[str]:
    bad = []
    for key in header.keys():
        if _WCS_NUMBERS.match(key) and finite_number(h.get(key)) is None:
            bad.append(f"{key} = {h.get(key)!r}")
    return bad


def _wcs(header: fits.Header, h: Mapping[str, object], notes: list[str]) -> WCS | None:
    bad = _bad_wcs_keywords(header, h)
    if bad:
        notes.append(f"WCS not used: {', '.join(bad)} is not a finite number")
        return None
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


def _scales_from_optics(h: Mapping[str, object], notes: list[str]) -> tuple[float, float] | None:
    """Pixel scale [deg/pix] from FOCALLEN [mm] and the binned pixel size [um].

    XPIXSZ/YPIXSZ already include binning (MaxIm DL, NINA and INDI write them
    so); PIXSIZE1/2 (INDI) are unbinned and are multiplied by X/YBINNING.
    """
    focal = number(h, "FOCALLEN", "FOCAL", notes=notes)
    if focal is None:
        return None
    px = number(h, "XPIXSZ", notes=notes)
    py = number(h, "YPIXSZ", notes=notes)
    if px is None and (p1 := number(h, "PIXSIZE1", notes=notes)) is not None:
        px = p1 * (number(h, "XBINNING") or 1.0)
    if py is None and (p2 := number(h, "PIXSIZE2", notes=notes)) is not None:
        py = p2 * (number(h, "YBINNING") or 1.0)
    if px is None:
        return None
    py = px if py is None else py
    if focal <= 0 or px <= 0 or py <= 0:
        notes.append(f"FOCALLEN {focal} / pixel size {px} x {py} um: not positive, no pixel scale")
        return None
    return tuple(206265.0 / focal * p / 1000.0 / 3600.0 for p in (px, py))  # type: ignore[return-value]


def _in_range(ra_deg: float, dec_deg: float) -> bool:
    return 0.0 <= ra_deg <= 360.0 and -90.0 <= dec_deg <= 90.0


def _icrs(ra: Angle, dec: Angle) -> tuple[float, float]:
    return float(ra.wrap_at(360 * u.deg).deg), float(dec.deg)


def _angle(value: object, *, hours: bool) -> Angle:
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if hours and re.search(r"[:hms ]", text):
            return Angle(text, u.hourangle)
        try:
            return Angle(float(text), u.deg)
        except ValueError:
            return Angle(text, u.deg)
    number_ = finite_number(value)
    if number_ is None:
        raise ValueError("not a number")
    return Angle(number_, u.deg)


def _pointing(
    h: Mapping[str, object], notes: list[str]
) -> tuple[tuple[float, float] | None, str | None]:
    pairs = (("OBJCTRA", "OBJCTDEC", "objectequ"), ("RA", "DEC", "radec"),
             ("OBJRA", "OBJDEC", "radec"), ("TELRA", "TELDEC", "radec"))  # fmt: skip
    for kra, kdec, src in pairs:
        rv, dv = h.get(kra), h.get(kdec)
        if rv is None or dv is None or (isinstance(rv, str) and not rv.strip()):
            continue
        try:
            ra = Angle(str(rv).strip(), u.hourangle) if kra == "OBJCTRA" else _angle(rv, hours=True)
            dec = _angle(dv, hours=False)
        except (TypeError, ValueError):
            notes.append(f"{kra}/{kdec} = {rv!r}, {dv!r}: unreadable, not used")
            continue
        ra_deg, dec_deg = float(ra.deg), float(dec.deg)
        if not (math.isfinite(ra_deg) and math.isfinite(dec_deg)) or not _in_range(ra_deg, dec_deg):
            notes.append(
                f"{kra}/{kdec} = {rv!r}, {dv!r}: outside 0-360 deg / -90..+90 deg, not used"
            )
            continue
        return _icrs(ra, dec), src
    return None, None


def image_pointing(
    header: fits.Header, h: Mapping[str, object], notes: list[str]
) -> tuple[tuple[float, float] | None, str | None, tuple[float, float] | None]:
    """Centre (ra, dec) [deg], its source ('wcs', 'objectequ', 'radec') and the FOV [rad].

    Parameters
    ----------
    header : astropy.io.fits.Header
        The image HDU's own header (its WCS is used).
    h : mapping
        The merged keyword -> value mapping (primary overlaid by the extension).
    notes : list of str
        Receives one line per value that was not used, and why.
    """
    naxis1 = number(h, "ZNAXIS1", "NAXIS1") if "ZNAXIS1" in h else number(h, "NAXIS1")
    naxis2 = number(h, "ZNAXIS2", "NAXIS2") if "ZNAXIS2" in h else number(h, "NAXIS2")
    wcs = _wcs(header, h, notes)
    optics = _scales_from_optics(h, notes)
    scales = None
    coordequ, src = None, None
    if wcs is not None:
        try:
            scales = tuple(float(s) for s in proj_plane_pixel_scales(wcs))
            cx = ((naxis1 or 1.0) - 1.0) / 2.0
            cy = ((naxis2 or 1.0) - 1.0) / 2.0
            icrs = wcs.pixel_to_world(cx, cy).icrs
            coordequ, src = _icrs(icrs.ra, icrs.dec), "wcs"
            if not all(np.isfinite(coordequ)):
                notes.append("WCS centre is not finite: not used")
                coordequ, src = None, None
        except Exception as exc:
            notes.append(f"WCS centre unusable ({type(exc).__name__}: {exc})")
            coordequ, src = None, None
        if scales is not None and not all(math.isfinite(s) and s > 0 for s in scales):
            notes.append(f"WCS pixel scale {scales} is not positive and finite: not used")
            scales = None
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
        coordequ, src = _pointing(h, notes)
    if coordequ is None:
        notes.append("no usable WCS or pointing coordinates: coordequ left empty")
    return coordequ, src, fov
