"""Light-curve table values, checked and converted in bulk (pure: no database).

Every bad value refuses its row with one line naming the row, the column and
the value; nothing is guessed: a magnitude that is NaN or infinite, a negative
error, a quality flag that is not an integer, a time that cannot be read or is
not a plausible observation time. Missing values (empty cells, masked) are
NULL, not errors. Times are converted with astropy, whole arrays at once.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime

import astropy.units as u
import numpy as np
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.table import MaskedColumn, Table
from astropy.time import Time
from erfa import ErfaWarning

from photdb.archive.obstime import plausible, range_text

__all__ = [
    "ALIASES",
    "TIME_COLUMNS",
    "Refusals",
    "integers",
    "numbers",
    "rename_columns",
    "texts",
    "time_column",
    "to_utc",
    "utc_times",
]

#: Recognised time columns (lower case) and the time format they hold.
TIME_COLUMNS = {
    "bjd_tdb": "bjd",
    "bjd": "bjd",
    "hjd": "hjd",
    "jd": "jd",
    "jd_utc": "jd",
    "mjd": "mjd",
    "mjd_utc": "mjd",
    "dateobs": "iso",
    "date-obs": "iso",
    "date_obs": "iso",
    "iso": "iso",
    "datetime": "iso",
    "utc": "iso",
    "time": "iso",
}
#: Accepted column names (lower case) of each canonical column.
ALIASES = {
    "magnitude": ("magnitude", "mag", "mag_calib", "mag_cal"),
    "mag_err": ("mag_err", "magerr", "mag_error", "e_mag", "err", "merr"),
    "mag_diff": ("mag_diff", "dmag", "diff_mag"),
    "mag_diff_err": ("mag_diff_err", "dmag_err", "e_dmag"),
    "quality": ("quality", "flag", "qf"),
    "band": ("band", "filter", "passband"),
    "object_id": ("object_id",),
    "object": ("object", "name", "star", "target", "gaia_name", "simbad_name", "vsx_name", "auid"),
    "ra": ("ra", "raj2000", "ra_deg"),
    "dec": ("dec", "dej2000", "dec_deg"),
    "filename": ("filename", "file", "observation"),
    "progid": ("progid", "datasource"),
}


class Refusals:
    """Refused rows of a load: one line each, counted."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.rows = 0

    def add(self, rows: np.ndarray, bad: np.ndarray, reason) -> np.ndarray:
        """Refuse ``rows[bad]``; ``reason(i)`` gives the text for position i. Returns ~bad."""
        for i in np.flatnonzero(bad):
            self.lines.append(f"row {rows[i]}: {reason(i)}; refused")
        self.rows += int(np.count_nonzero(bad))
        return ~bad


def rename_columns(table: Table, columns: Mapping[str, str] | None = None) -> Table:
    """Rename columns to canonical lower-case names: ``columns`` (canonical -> file name) first.

    Raises
    ------
    ValueError
        A mapped column that the file does not have.
    """
    table.meta.setdefault("columns_in_file", list(table.colnames))
    lower = {c.lower().strip(): c for c in table.colnames}
    renames: dict[str, str] = {}
    for canon, name in (columns or {}).items():
        hit = lower.get(name.lower().strip())
        if hit is None:
            raise ValueError(
                f"--column {canon}={name}: no column {name!r} (the file has "
                f"{', '.join(table.colnames)})"
            )
        renames[hit] = canon
    taken = set(renames.values())
    for canon, names in ALIASES.items():
        if canon in taken:
            continue
        hit = next((lower[n] for n in names if n in lower and lower[n] not in renames), None)
        if hit is not None:
            renames[hit] = canon
    for col in list(table.colnames):
        new = renames.get(col, col.lower().strip())
        if new != col and new not in table.colnames:
            table.rename_column(col, new)
    return table


def time_column(table: Table, time_format: str | None) -> tuple[str, str]:
    """The time column and its kind ('jd', 'mjd', 'iso', 'hjd', 'bjd' or 'time' for a Time)."""
    for name, kind in TIME_COLUMNS.items():
        if name in table.colnames:
            if isinstance(table[name], Time):
                return name, "time"
            return name, (time_format or kind)
    names = table.meta.get("columns_in_file", table.colnames)
    raise ValueError(
        f"no time column: the file has {', '.join(names)}; accepted: "
        f"{', '.join(TIME_COLUMNS)} (or map one with --column jd=NAME, mjd=NAME, ...)"
    )


def _mask(col) -> np.ndarray:
    return np.ma.getmaskarray(col) if isinstance(col, MaskedColumn) else np.zeros(len(col), bool)


def texts(table: Table, name: str) -> np.ndarray:
    """Column ``name`` as stripped str, None where missing (object array)."""
    n = len(table)
    if name not in table.colnames:
        return np.full(n, None, dtype=object)
    col = table[name]
    values = np.asarray(col).astype(str) if n else np.zeros(0, str)
    out = np.char.strip(values).astype(object)
    out[_mask(col) | (out == "")] = None
    return out


def numbers(
    table: Table,
    name: str,
    rows: np.ndarray,
    refusals: Refusals,
    *,
    negative: bool = True,
    limit: float = 1e8,
) -> tuple[np.ndarray, np.ndarray]:
    """Column ``name`` as float (NaN where missing) and the mask of rows it does not refuse.

    Refused: text that is not a number, NaN and infinities, values of ``limit``
    or more in size (the column cannot hold them), negatives unless allowed.
    """
    n = len(table)
    if name not in table.colnames:
        return np.full(n, np.nan), np.ones(n, bool)
    col = table[name]
    missing = _mask(col)
    raw = np.ma.getdata(col)
    if raw.dtype.kind in "fiub":
        values = raw.astype(float)
        text = None
    else:
        text = np.char.strip(np.asarray(raw).astype(str))
        missing = missing | (text == "")
        values = np.full(n, np.nan)
        for i in np.flatnonzero(~missing):
            try:
                values[i] = float(text[i])
            except ValueError:
                values[i] = np.nan
                text[i] = f"\x00{text[i]}"  # marks "not a number"
    with np.errstate(invalid="ignore"):
        bad = ~missing & (~np.isfinite(values) | (np.abs(values) >= limit))
        if not negative:
            bad |= ~missing & (values < 0)

    def reason(i: int) -> str:
        shown = raw[i] if text is None else text[i].lstrip("\x00")
        if text is not None and text[i].startswith("\x00"):
            return f"{name} {shown!r} is not a number"
        if not math.isfinite(values[i]):
            return f"{name} {shown} is not finite"
        if abs(values[i]) >= limit:
            return f"{name} {shown} is too large (limit {limit:.0e})"
        return f"{name} {shown} is negative"

    ok = refusals.add(rows, bad, reason)
    values = np.where(missing, np.nan, values)
    return values, ok


def integers(
    table: Table, name: str, rows: np.ndarray, refusals: Refusals
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column ``name`` as int64, its missing mask, and the rows not refused (non-integers)."""
    values, ok = numbers(table, name, rows, refusals, limit=2**31)
    missing = np.isnan(values)
    frac = ok & ~missing & (values != np.round(np.nan_to_num(values)))
    ok &= refusals.add(rows, frac, lambda i: f"{name} {values[i]} is not an integer")
    return np.where(missing | ~ok, 0, values).astype(np.int64), missing, ok


def to_utc(
    values,
    kind: str,
    *,
    scale: str = "utc",
    coord: SkyCoord | None = None,
    location: EarthLocation | None = None,
) -> Time:
    """Times of ``kind`` ('jd', 'mjd', 'iso', 'hjd', 'bjd') as an astropy Time in UTC.

    'bjd' is BJD_TDB and 'hjd' HJD_UTC; both need ``coord`` (one position, or
    one per time) and are inverted iteratively (three passes reach < 1 us).
    """
    if kind in ("jd", "mjd"):
        return Time(np.asarray(values, float), format=kind, scale=scale).utc
    if kind == "iso":
        texts_ = [str(v).strip() for v in values]
        if any(t.endswith(("Z", "z")) or re.search(r"[+-]\d\d:?\d\d$", t[10:]) for t in texts_):
            stamps = [datetime.fromisoformat(t[:-1] + "+00:00" if t[-1:] in "Zz" else t)
                      for t in texts_]  # fmt: skip
            stamps = [s.astimezone(UTC).replace(tzinfo=None) if s.tzinfo else s for s in stamps]
            return Time(stamps, scale=scale).utc
        return Time([t.replace(" ", "T") for t in texts_], format="isot", scale=scale).utc
    if kind in ("bjd", "hjd"):
        if coord is None:
            raise ValueError(f"{kind.upper()} needs the object's position")
        if location is None:
            location = EarthLocation.from_geocentric(0, 0, 0, unit=u.m)
        kind_ltt, tscale = ("barycentric", "tdb") if kind == "bjd" else ("heliocentric", "utc")
        target = Time(np.asarray(values, float), format="jd", scale=tscale)
        t = Time(target.jd1, target.jd2, format="jd", scale=tscale, location=location)
        for _ in range(3):
            ltt = t.light_travel_time(coord, kind_ltt, location=location)
            t = Time(target - ltt, location=location)
        return t.utc
    raise ValueError(f"unknown time format {kind!r}")


def utc_times(
    table: Table,
    name: str,
    kind: str,
    rows: np.ndarray,
    refusals: Refusals,
    *,
    scale: str = "utc",
    coord: SkyCoord | None = None,
    location: EarthLocation | None = None,
) -> tuple[Time, np.ndarray]:
    """UTC times of the rows not refused, and that mask (unreadable or implausible times)."""
    with warnings.catch_warnings():  # years far from now are refused below, not warned about
        warnings.simplefilter("ignore", ErfaWarning)
        return _utc_times(table, name, kind, rows, refusals, scale, coord, location)


def _utc_times(table, name, kind, rows, refusals, scale, coord, location):
    col = table[name]
    if kind == "time":  # a Time column (astropy TimeSeries)
        ok = np.ones(len(table), bool)
        times = col.utc
    else:
        missing = _mask(col) if not isinstance(col, Time) else np.zeros(len(col), bool)
        ok = refusals.add(rows, missing, lambda i: f"{name} is empty")
        values = np.ma.getdata(col)
        if kind in ("jd", "mjd", "bjd", "hjd"):
            nums, fine = numbers(table, name, rows, refusals, limit=1e10)
            ok &= fine & ~missing
            values = np.where(ok, nums, 51544.0 if kind == "mjd" else 2451544.5)
        elif not np.all(ok):
            values = np.where(ok, values, "2000-01-01T00:00:00")
        try:
            times = to_utc(values, kind, scale=scale, coord=coord, location=location)
        except ValueError:  # find the rows astropy cannot read, one by one
            times, bad = _one_by_one(values, ok, kind, scale, coord, location)
            ok &= refusals.add(rows, bad, lambda i: f"{name} {str(values[i])!r} is not a time")
    mjd = np.asarray(times.mjd, float)
    wrong = ok & ~plausible(mjd)
    ok &= refusals.add(
        rows, wrong, lambda i: f"{name} {times[i].isot} is not a plausible time ({range_text()})"
    )
    return times, ok


def _one_by_one(values, ok, kind, scale, coord, location) -> tuple[Time, np.ndarray]:
    bad = np.zeros(len(values), bool)
    for i in np.flatnonzero(ok):
        try:
            one = coord if coord is None or coord.isscalar else coord[i]
            to_utc([values[i]], kind, scale=scale, coord=one, location=location)
        except (ValueError, TypeError):
            bad[i] = True
    fill = "2000-01-01T00:00:00" if kind == "iso" else (51544.0 if kind == "mjd" else 2451544.5)
    safe = np.where(ok & ~bad, values, fill)
    return to_utc(safe, kind, scale=scale, coord=coord, location=location), bad
