"""Observation times: plausibility and PostgreSQL timestamps, vectorised, leap seconds included.

An observation time must lie between 1800-01-01 (the oldest photographic
plates) and one day after now; anything else is a broken clock or header and is
refused, never stored. ``timestamptz`` has no leap seconds, so an instant inside
one (23:59:60.x UTC, valid on a real leap-second day) is stored as PostgreSQL
itself reads '23:59:60.x': the next day's 00:00:00.x; the MJD beside it stays
exact.
"""

from __future__ import annotations

import time
import warnings
from datetime import UTC, datetime, timedelta

import erfa
import numpy as np
from astropy.time import Time

__all__ = [
    "EARLIEST",
    "pg_datetime",
    "pg_micros",
    "plausible",
    "range_text",
]

#: Earliest plausible observation time (UTC).
EARLIEST = "1800-01-01"
_EARLIEST_MJD = -21504.0  # 1800-01-01T00:00:00 UTC
_PG_EPOCH_DAYS = 10957  # 2000-01-01 - 1970-01-01
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _latest_mjd() -> float:
    return 40587.0 + time.time() / 86400.0 + 1.0  # now + 1 day


def plausible(mjd_utc: np.ndarray | float) -> np.ndarray | bool:
    """True where a UTC MJD lies between 1800-01-01 and one day from now (NaN is False)."""
    mjd = np.asarray(mjd_utc, dtype=float)
    with np.errstate(invalid="ignore"):
        ok = (mjd >= _EARLIEST_MJD) & (mjd <= _latest_mjd())
    return bool(ok) if ok.ndim == 0 else ok


def range_text() -> str:
    """'between 1800-01-01 and <tomorrow>' for messages."""
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    return f"between {EARLIEST} and {tomorrow:%Y-%m-%d}"


def _ymdhms(t: Time) -> tuple[np.ndarray, ...]:
    utc = t.utc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        iy, im, iday, ihmsf = erfa.d2dtf("UTC", 6, utc.jd1, utc.jd2)
    return (
        np.asarray(iy, np.int64),
        np.asarray(im, np.int64),
        np.asarray(iday, np.int64),
        np.asarray(ihmsf["h"], np.int64),
        np.asarray(ihmsf["m"], np.int64),
        np.asarray(ihmsf["s"], np.int64),
        np.asarray(ihmsf["f"], np.int64),
    )


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (vectorised)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def pg_micros(t: Time) -> np.ndarray:
    """Microseconds since 2000-01-01 UTC (PostgreSQL's binary ``timestamptz``) of ``t``.

    Computed from the UTC calendar date and clock (``erfa.d2dtf``), so every
    second is 10^6 us as in PostgreSQL; 23:59:60.x becomes the next day's
    00:00:00.x, as PostgreSQL reads it.
    """
    y, mo, d, h, mi, s, f = _ymdhms(t)
    days = _days_from_civil(y, mo, d) - _PG_EPOCH_DAYS
    return days * 86_400_000_000 + ((h * 60 + mi) * 60 + s) * 1_000_000 + f


def pg_datetime(t: Time) -> tuple[datetime, bool]:
    """One instant as an aware UTC datetime for ``timestamptz``, and whether it is a leap second."""
    micros = int(np.ravel(pg_micros(t))[0])
    leap = bool(np.ravel(_ymdhms(t)[5])[0] >= 60)
    return _PG_EPOCH + timedelta(microseconds=micros), leap
