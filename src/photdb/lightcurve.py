"""One light-curve table for both halves of photdb.

The archive's uploaded points (``lightcurves``) and the pipeline's measurements
(``galsources``) are returned in the same astropy Table shape,
:data:`LIGHTCURVE_COLUMNS`, so every consumer (the CLI, plots, exports) works on
either. Times are the stored MJD (UTC, mid-exposure); JD and ISO are derived with
astropy, never in SQL. No I/O.

Examples
--------
>>> t = lightcurve_table({"source": ["archive"], "mjd": [59509.84], "band": ["V"],
...                       "mag": [10.24], "mag_err": [0.01]})
>>> t["band"][0], round(float(t["jd"][0]), 2), bool(t["mag_diff"].mask[0])
('V', 2459510.34, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Column, MaskedColumn, Table, vstack
from astropy.time import Time

__all__ = ["LIGHTCURVE_COLUMNS", "lightcurve_table", "stack_lightcurves"]

#: name -> (numpy dtype, unit, description), in table order.
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
    "ra": (np.float64, u.deg, "pipeline: position of the measurement"),
    "dec": (np.float64, u.deg, "pipeline: position of the measurement"),
}
_FILL = {str: "", np.int64: 0, np.float64: np.nan, bool: False}


def _missing(value: Any) -> bool:
    """None, NaN and infinities are missing values (masked, never a made-up number)."""
    if value is None or value is np.ma.masked:
        return True
    if isinstance(value, float | np.floating):
        return not np.isfinite(value)
    return False


def _column(name: str, values: Sequence[Any] | None, n: int) -> Column:
    dtype, unit, description = LIGHTCURVE_COLUMNS[name]
    if values is None:
        values = [None] * n
    vals = list(values)
    mask = [_missing(v) for v in vals]
    data = np.array([_FILL[dtype] if m else v for v, m in zip(vals, mask, strict=True)],
                    dtype=dtype)  # fmt: skip
    if any(mask):
        return MaskedColumn(data, name=name, mask=mask, unit=unit, description=description)
    return Column(data, name=name, unit=unit, description=description)


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
        Every column of :data:`LIGHTCURVE_COLUMNS`, in order, with units and
        descriptions; rows in the given order.
    """
    unknown = set(columns) - set(LIGHTCURVE_COLUMNS)
    if unknown:
        raise ValueError(f"not light-curve columns: {sorted(unknown)}")
    n = len(columns["mjd"]) if "mjd" in columns else 0
    mjd = np.asarray(columns.get("mjd", []), dtype=float)
    times = Time(mjd, format="mjd", scale="utc")
    derived = {"jd": times.jd.tolist(), "iso": list(times.isot) if n else []}
    t = Table()
    for name in LIGHTCURVE_COLUMNS:
        values = derived[name] if name in derived else columns.get(name)
        t[name] = _column(name, values, n)
    t.meta["time_scale"] = "utc"
    t.meta["time_note"] = "mjd/jd/iso in UTC, mid-exposure, derived with astropy"
    t.meta.update(meta or {})
    return t


def stack_lightcurves(tables: Sequence[Table]) -> Table:
    """Several light curves of the standard shape as one, ordered by time then source."""
    tables = [t for t in tables if len(t)] or list(tables[:1])
    if not tables:
        return lightcurve_table({})
    out = vstack(tables, join_type="exact", metadata_conflicts="silent")
    order = np.lexsort((np.asarray(out["source"]), np.asarray(out["mjd"])))
    out = out[order]
    out.meta = dict(tables[0].meta)
    return out
