"""One light-curve table for both halves of photdb.

The archive's uploaded points (``lightcurves``) and the pipeline's measurements
(``galsources``) are returned in the same astropy Table shape,
:data:`LIGHTCURVE_COLUMNS`, so every consumer (the CLI, plots, exports) works on
either. Times are the stored MJD (UTC, mid-exposure); JD and ISO are derived with
astropy, never in SQL. A ``time`` column holds the same instants as an astropy
:class:`~astropy.time.Time` (UTC). Bands are labelled by their family and system
(``g_decam`` -> "g (DECam)", :func:`band_label`) with one colour per family
(:func:`band_colour`), the same in the matplotlib plot and the web page. No I/O.

Examples
--------
>>> t = lightcurve_table({"source": ["archive"], "mjd": [59509.84], "band": ["V"],
...                       "mag": [10.24], "mag_err": [0.01]})
>>> str(t["band"][0]), round(float(t["jd"][0]), 2), bool(t["mag_diff"].mask[0])
('V', 2459510.34, True)
>>> t["time"].scale, band_label("g_decam"), band_label("R"), magnitude_system("r_decam")
('utc', 'g (DECam)', 'R (Cousins)', 'AB')
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Table, vstack
from astropy.time import Time

from photdb.bands import band_family

__all__ = [
    "LIGHTCURVE_COLUMNS",
    "LIGHTCURVE_UCDS",
    "band_colour",
    "band_label",
    "lightcurve_table",
    "lightcurve_title",
    "magnitude_system",
    "stack_lightcurves",
]

#: name -> (numpy dtype, unit, description), in table order (after ``time``).
LIGHTCURVE_COLUMNS: dict[str, tuple[Any, Any, str]] = {
    "source": (str, None, "archive (uploaded photometry) or pipeline (galsources)"),
    "object_id": (np.int64, None, "objects.id, when the point belongs to a known object"),
    "mjd": (np.float64, u.day, "MJD, UTC, mid-exposure"),
    "jd": (np.float64, u.day, "JD, UTC (astropy, from mjd)"),
    "iso": (str, None, "ISO 8601 time, UTC (astropy, from mjd)"),
    "band": (str, None, "canonical band (photosys.band / galexposures.filter)"),
    "mag": (np.float64, u.mag, "magnitude"),
    "mag_err": (np.float64, u.mag, "magnitude error (pipeline: floored and rescaled)"),
    "mag_err_raw": (np.float64, u.mag, "pipeline: the fit's own error, before the floor"),
    "mag_diff": (np.float64, u.mag, "archive: differential magnitude"),
    "mag_diff_err": (np.float64, u.mag, "archive: its error"),
    "quality": (np.int64, None, "archive: quality flag"),
    "filename": (str, None, "the observation's file"),
    "progid": (str, None, "archive: data source (datasources.progid)"),
    "comp_stars": (str, None, "archive: comparison stars, comma-separated"),
    "is_reference": (bool, None, "pipeline: the exposure is a reference"),
    "galsource_id": (np.int64, None, "pipeline: galsources.id"),
    "galimage_id": (np.int64, None, "pipeline: galimages.id (the chip)"),
    "ref_id": (np.int64, None, "pipeline: the reference source (none on reference rows)"),
    "reference_image": (np.int64, None, "pipeline: galimages.id of the reference image"),
    "zero_point": (np.float64, u.mag, "pipeline: the image's zero point"),
    "error_factor": (np.float64, None, "pipeline: the image's chi2/nu error factor"),
    "flags": (np.int64, None, "pipeline: galsources.flags"),
    "ra": (np.float64, u.deg, "pipeline: position of the measurement"),
    "dec": (np.float64, u.deg, "pipeline: position of the measurement"),
}
#: UCD1+ of every column (VOTable exports, the web service).
LIGHTCURVE_UCDS: dict[str, str] = {
    "time": "time.epoch",
    "source": "meta.dataset",
    "object_id": "meta.id",
    "mjd": "time.epoch;obs",
    "jd": "time.epoch",
    "iso": "time.epoch",
    "band": "instr.bandpass",
    "mag": "phot.mag",
    "mag_err": "stat.error;phot.mag",
    "mag_err_raw": "stat.error;phot.mag",
    "mag_diff": "phot.mag;arith.diff",
    "mag_diff_err": "stat.error;phot.mag;arith.diff",
    "quality": "meta.code.qual",
    "filename": "meta.id;meta.file",
    "progid": "meta.id;meta.dataset",
    "comp_stars": "meta.id.cross",
    "is_reference": "meta.code",
    "galsource_id": "meta.id",
    "galimage_id": "meta.id;obs.image",
    "ref_id": "meta.id.parent",
    "reference_image": "meta.id;obs.image",
    "zero_point": "phot.mag;arith.zp",
    "error_factor": "stat.fit.chi2;arith.factor",
    "flags": "meta.code",
    "ra": "pos.eq.ra",
    "dec": "pos.eq.dec",
}
_FILL = {str: "", np.int64: 0, np.float64: np.nan, bool: False}

#: band suffix -> the system it is named by in labels
_SYSTEMS = {"decam": "DECam", "sdss": "SDSS"}
#: plain band names -> their system
_PLAIN = {"U": "Johnson", "B": "Johnson", "V": "Johnson", "R": "Cousins", "I": "Cousins",
          "clear": "unfiltered", "L": "luminance"}  # fmt: skip
#: system -> magnitude system of its calibrated magnitudes
_MAGSYS = {"DECam": "AB", "SDSS": "AB", "Johnson": "Vega", "Cousins": "Vega"}
#: band family -> colour (blue to red through the spectrum; same in the plot and the web)
_COLOURS = {
    "u": "#6a3d9a", "U": "#6a3d9a", "B": "#1f4e9c", "g": "#1b9e4b", "V": "#4d9221",
    "VR": "#b8860b", "r": "#d7301f", "R": "#d7301f", "i": "#8c2d04", "I": "#8c2d04",
    "z": "#525252", "Y": "#252525", "clear": "#737373", "L": "#737373", "Ha": "#e7298a",
}  # fmt: skip
_SPARE = ("#1f78b4", "#ff7f00", "#33a02c", "#e31a1c", "#cab2d6", "#b15928")


def _split_band(band: str) -> tuple[str, str | None]:
    family = band_family(band) or ""
    suffix = band[len(family) + 1 :] if "_" in band else ""
    if suffix:
        return family, _SYSTEMS.get(suffix.lower(), suffix)
    return family, _PLAIN.get(band)


def band_label(band: str | None) -> str:
    """A band as people name it: its family and system, "g (DECam)", "R (Cousins)"."""
    if not band:
        return "unknown band"
    family, system = _split_band(str(band))
    return f"{family} ({system})" if system else family


def magnitude_system(band: str | None) -> str | None:
    """'AB' or 'Vega' for the bands photdb knows the system of, else None."""
    if not band:
        return None
    return _MAGSYS.get(_split_band(str(band))[1] or "")


def band_colour(band: str | None) -> str:
    """One colour per band family (hex), the same in every plot photdb draws."""
    family = band_family(band) or ""
    if family in _COLOURS:
        return _COLOURS[family]
    return _SPARE[sum(map(ord, family)) % len(_SPARE)]


def lightcurve_title(table: Table) -> str:
    """A useful title: the object's name (or an IAU-style position name), its bands and span.

    Uses ``meta['object_name']``, ``meta['ra']``/``meta['dec']`` (deg) when set.
    """
    meta = table.meta
    name = meta.get("object_name") or ""
    ra, dec = meta.get("ra"), meta.get("dec")
    where = ""
    if ra is not None and dec is not None and np.isfinite(ra) and np.isfinite(dec):
        from astropy.coordinates import Angle  # a SkyCoord costs milliseconds per page

        hms = (
            Angle(float(ra), u.deg)
            .wrap_at(360 * u.deg)
            .to_string(u.hourangle, sep="", precision=1, pad=True)
        )
        dms = Angle(float(dec), u.deg).to_string(u.deg, sep="", precision=1, pad=True,
                                                 alwayssign=True)  # fmt: skip
        jname = f"J{hms}{dms}"
        name = name or jname
        where = f"RA {float(ra):.5f}°, Dec {float(dec):+.5f}°"
    name = name or "light curve"
    bands = ", ".join(band_label(b) for b in sorted(set(_strings(table["band"])) - {""}))
    parts = [p for p in (where, bands, f"{len(table)} points") if p]
    return f"{name} — " + "; ".join(parts)


def _strings(column) -> list[str]:
    return [str(v) for v in np.ma.filled(np.ma.asarray(column).astype(str), "")]


def _missing(value: Any) -> bool:
    """None, NaN and infinities are missing values (masked, never a made-up number)."""
    if value is None or value is np.ma.masked:
        return True
    if isinstance(value, float | np.floating):
        return not np.isfinite(value)
    return False


def _array(name: str, values: Sequence[Any] | None, n: int) -> np.ndarray:
    """One column's values as an array of its dtype; a masked array only where some are
    missing (None, NaN, infinities, masked: never a made-up number)."""
    dtype = LIGHTCURVE_COLUMNS[name][0]
    if values is None and n:  # a column this source does not have: all masked
        return np.ma.MaskedArray(np.full(n, _FILL[dtype], dtype=dtype), mask=np.ones(n, bool))
    vals = [] if values is None else list(values)
    if dtype is np.float64:  # numpy reads None and masked as NaN: missing = not finite
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "converting a masked element"
            data = np.array(vals, dtype=dtype)
        mask = ~np.isfinite(data)
        return np.ma.MaskedArray(np.where(mask, np.nan, data), mask=mask) if mask.any() else data
    mask = np.fromiter((_missing(v) for v in vals), bool, len(vals))
    if mask.any():
        vals = [_FILL[dtype] if m else v for v, m in zip(vals, mask, strict=True)]
        return np.ma.MaskedArray(np.array(vals, dtype=dtype), mask=mask)
    return np.array(vals, dtype=dtype)


def lightcurve_table(
    columns: Mapping[str, Sequence[Any]], *, meta: Mapping[str, Any] | None = None
) -> Table:
    """A light curve in the standard shape, from whatever columns are known.

    Parameters
    ----------
    columns : mapping of str to sequence
        Any of :data:`LIGHTCURVE_COLUMNS` (``mjd`` required unless empty); None
        values and missing columns are masked. ``jd`` and ``iso`` are derived from
        ``mjd`` with astropy.
    meta : mapping, optional
        Added to the table's meta (``time_scale = 'utc'`` is always set).

    Returns
    -------
    astropy.table.Table
        ``time`` (an astropy Time, UTC, format mjd) then every column of
        :data:`LIGHTCURVE_COLUMNS`, in order, with units, descriptions and UCDs
        (``column.meta['ucd']``); rows in the given order.
    """
    unknown = set(columns) - set(LIGHTCURVE_COLUMNS)
    if unknown:
        raise ValueError(f"not light-curve columns: {sorted(unknown)}")
    n = len(columns["mjd"]) if "mjd" in columns else 0
    mjd = np.asarray(columns.get("mjd", []), dtype=float)
    times = Time(mjd, format="mjd", scale="utc")
    derived = {"jd": times.jd.tolist(), "iso": list(times.isot) if n else []}
    names = list(LIGHTCURVE_COLUMNS)
    arrays = [_array(k, derived[k] if k in derived else columns.get(k), n) for k in names]
    # one Table build from plain arrays, units and descriptions passed in: building
    # Column objects first and setting their attributes costs ~3x more (web pages)
    t = Table(
        [times, *arrays],
        names=["time", *names],
        units={k: v[1] for k, v in LIGHTCURVE_COLUMNS.items() if v[1] is not None},
        descriptions={"time": "time of the point (UTC, mid-exposure)"}
        | {k: v[2] for k, v in LIGHTCURVE_COLUMNS.items()},
        copy=False,
    )
    for name in names:
        t[name].meta["ucd"] = LIGHTCURVE_UCDS[name]
    t.meta["time_scale"] = "utc"
    t.meta["time_note"] = "mjd/jd/iso in UTC, mid-exposure, derived with astropy"
    t.meta.update(meta or {})
    return t


def stack_lightcurves(tables: Sequence[Table]) -> Table:
    """Several light curves of the standard shape as one, ordered by time then source."""
    tables = [t for t in tables if len(t)] or list(tables[:1])
    if not tables:
        return lightcurve_table({})
    if len(tables) == 1:  # nothing to stack (vstack costs tens of ms)
        out = tables[0]
        order = np.lexsort((np.asarray(out["source"]), np.asarray(out["mjd"])))
        return out if np.all(order == np.arange(len(out))) else out[order]
    out = vstack(tables, join_type="exact", metadata_conflicts="silent")
    order = np.lexsort((np.asarray(out["source"]), np.asarray(out["mjd"])))
    out = out[order]
    out.meta = dict(tables[0].meta)
    return out
