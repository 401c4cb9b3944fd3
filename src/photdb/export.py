"""Light curves in the formats people exchange them in: AAVSO, CSV, ECSV, VOTable, Parquet.

Works on the one light-curve shape of :mod:`photdb.lightcurve` (either half of
photdb) and returns bytes: writing them to a file or an HTTP response is the
caller's. Every format carries what its readers can take of the table's meta:

* **AAVSO Extended File Format** (``aavso``): the header lines AAVSO's WebObs
  upload reads (``#TYPE=EXTENDED``, ``#OBSCODE``, ``#SOFTWARE``, ``#DELIM``,
  ``#DATE=JD``, ``#OBSTYPE``), then one line per point: star name, JD (UTC),
  magnitude and error, AAVSO filter code, ``TRANS=NO``, ``MTYPE`` (``STD`` for
  calibrated magnitudes, ``DIF`` for differential ones), comparison star
  (``ENSEMBLE`` for more than one), and ``na`` where a value is unknown;
* **CSV**: a header line, every column, masked values empty;
* **ECSV**: the full table with units, descriptions, UCDs, the ``time`` column as
  an astropy Time (UTC) and the meta (object name and names, position, time scale);
* **VOTable**: FIELDs with units, UCDs and descriptions, a ``TIMESYS`` (UTC, MJD
  origin) the time columns refer to, and PARAMs for the object's name and position;
* **Parquet** (pyarrow): the columns, nulls for masked values, units, UCDs and
  descriptions in the field metadata and the table's meta as JSON in the schema.

Examples
--------
>>> from photdb.lightcurve import lightcurve_table
>>> lc = lightcurve_table({"mjd": [59509.84], "band": ["V"], "mag": [10.24],
...                        "mag_err": [0.01], "source": ["archive"]},
...                       meta={"object_name": "SS Cyg"})
>>> export_lightcurve(lc, "aavso").decode().splitlines()[-1]
'SS Cyg,2459510.340000,10.2400,0.0100,V,NO,STD,na,na,na,na,na,na,na,source=archive'
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
from astropy.table import Table

from photdb import __version__
from photdb.bands import band_family
from photdb.lightcurve import LIGHTCURVE_UCDS, lightcurve_title

__all__ = ["EXPORT_FORMATS", "export_lightcurve", "format_from_suffix"]

#: format -> (file suffix, MIME type)
EXPORT_FORMATS: dict[str, tuple[str, str]] = {
    "aavso": (".txt", "text/plain; charset=utf-8"),
    "csv": (".csv", "text/csv; charset=utf-8"),
    "ecsv": (".ecsv", "text/plain; charset=utf-8"),
    "votable": (".xml", "application/x-votable+xml"),
    "parquet": (".parquet", "application/vnd.apache.parquet"),
}
_SUFFIXES = {".txt": "aavso", ".aavso": "aavso", ".csv": "csv", ".ecsv": "ecsv",
             ".xml": "votable", ".vot": "votable", ".votable": "votable",
             ".parquet": "parquet", ".pq": "parquet"}  # fmt: skip
#: band family -> AAVSO filter code
_AAVSO_FILTERS = {"U": "U", "B": "B", "V": "V", "R": "R", "I": "I", "u": "SU", "g": "SG",
                  "r": "SR", "i": "SI", "z": "SZ", "Y": "Y", "clear": "CV", "Ha": "HA"}  # fmt: skip


def format_from_suffix(name: str) -> str | None:
    """The export format a file name asks for by its suffix, or None."""
    dot = name.rfind(".")
    return _SUFFIXES.get(name[dot:].lower()) if dot >= 0 else None


def export_lightcurve(lc: Table, fmt: str, *, obscode: str = "na") -> bytes:
    """The light curve ``lc`` in format ``fmt`` (one of :data:`EXPORT_FORMATS`).

    Parameters
    ----------
    lc : astropy.table.Table
        A :func:`photdb.lightcurve.lightcurve_table` (any subset of its columns;
        ``mjd`` at least).
    fmt : str
        'aavso', 'csv', 'ecsv', 'votable' or 'parquet'.
    obscode : str
        AAVSO observer code for the AAVSO header.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    return {"aavso": _aavso, "csv": _csv, "ecsv": _ecsv, "votable": _votable,
            "parquet": _parquet}[fmt](lc, obscode=obscode)  # fmt: skip


def _plain(lc: Table) -> Table:
    """The table without the Time mixin (mjd/jd/iso carry the same instants)."""
    t = Table(lc, copy=False)
    if "time" in t.colnames:
        t.remove_column("time")
    return t


def _meta(lc: Table) -> dict[str, Any]:
    out = {}
    for k, v in lc.meta.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        if isinstance(v, str | int | float | bool | list | type(None)):
            out[str(k)] = v
    return out


def _values(col) -> list:
    mask = np.ma.getmaskarray(col)
    return [None if m else v for v, m in zip(np.asarray(col).tolist(), mask, strict=True)]


# ------------------------------------------------------------------------------- formats


def _star_name(lc: Table) -> str:
    name = lc.meta.get("object_name")
    if not name:
        name = lightcurve_title(lc).split(" — ")[0]
    return str(name).replace(",", " ")


def _na(value, fmt: str = "{}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "na"
    return fmt.format(value)


def _aavso(lc: Table, *, obscode: str) -> bytes:
    lines = [
        "#TYPE=EXTENDED",
        f"#OBSCODE={obscode}",
        f"#SOFTWARE=photdb {__version__}",
        "#DELIM=,",
        "#DATE=JD",
        "#OBSTYPE=CCD",
        "#NAME,DATE,MAG,MERR,FILT,TRANS,MTYPE,CNAME,CMAG,KNAME,KMAG,AMASS,GROUP,CHART,NOTES",
    ]
    name = _star_name(lc)
    cols = {c: _values(lc[c]) if c in lc.colnames else [None] * len(lc)
            for c in ("jd", "mag", "mag_err", "mag_diff", "mag_diff_err", "band",
                      "comp_stars", "source", "progid", "filename")}  # fmt: skip
    for i in range(len(lc)):
        mag, err, mtype = cols["mag"][i], cols["mag_err"][i], "STD"
        if mag is None or not math.isfinite(mag):
            mag, err, mtype = cols["mag_diff"][i], cols["mag_diff_err"][i], "DIF"
        if mag is None or not math.isfinite(mag) or cols["jd"][i] is None:
            continue  # AAVSO takes no point without a magnitude
        band = cols["band"][i] or ""
        filt = _AAVSO_FILTERS.get(band_family(band) or "", "na")
        comps = [c for c in str(cols["comp_stars"][i] or "").split(",") if c.strip()]
        cname = "ENSEMBLE" if len(comps) > 1 else (comps[0].strip() if comps else "na")
        notes = "|".join(f"{k}={cols[k][i]}" for k in ("source", "progid", "filename")
                         if cols[k][i])  # fmt: skip
        notes = (notes + (f"|band={band}" if filt == "na" or "_" in band else "")).replace(",", ";")
        lines.append(",".join([name, f"{cols['jd'][i]:.6f}", f"{mag:.4f}", _na(err, "{:.4f}"),
                               filt, "NO", mtype, cname.replace(",", ";"), "na", "na", "na",
                               "na", "na", "na", notes or "na"]))  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def _csv(lc: Table, **_) -> bytes:
    buf = io.StringIO()
    _plain(lc).write(buf, format="ascii.csv")
    return buf.getvalue().encode()


def _ecsv(lc: Table, **_) -> bytes:
    t = Table(lc, copy=True)
    t.meta = _meta(lc)
    buf = io.StringIO()
    t.write(buf, format="ascii.ecsv")
    return buf.getvalue().encode()


def _votable(lc: Table, **_) -> bytes:
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import Info, Param, TimeSys

    t = _plain(lc)
    t.meta = {}
    for name in t.colnames:  # astropy's VOTable writer refuses masked booleans
        if t[name].dtype.kind == "b" and hasattr(t[name], "mask"):
            t[name] = np.ma.filled(t[name], False)
    vot = from_table(t)
    timesys = TimeSys(ID="utc_mjd", timescale="UTC", refposition="TOPOCENTER",
                      timeorigin="MJD-origin",
                      config={"version": "1.4", "version_1_4_or_later": True})  # fmt: skip
    vot.time_systems.append(timesys)
    table = vot.get_first_table()
    for f in table.fields:
        f.ucd = LIGHTCURVE_UCDS.get(f.name, f.ucd)
        col = lc[f.name]
        if getattr(col.info, "description", None):
            f.description = col.info.description
        if f.name == "mjd":
            f.ref = "utc_mjd"
    meta = _meta(lc)
    resource = vot.resources[0]
    resource.infos.append(Info(name="time_scale", value="UTC"))
    resource.infos.append(Info(name="title", value=lightcurve_title(lc)))
    if meta.get("object_name"):
        table.params.append(Param(vot, name="object_name", datatype="unicodeChar",
                                  arraysize="*", value=str(meta["object_name"]),
                                  ucd="meta.id;meta.main"))  # fmt: skip
    for key, ucd in (("ra", "pos.eq.ra;meta.main"), ("dec", "pos.eq.dec;meta.main")):
        if meta.get(key) is not None:
            table.params.append(Param(vot, name=key, datatype="double", unit="deg",
                                      value=float(meta[key]), ucd=ucd))  # fmt: skip
    buf = io.BytesIO()
    vot.to_xml(buf)
    return buf.getvalue()


def _parquet(lc: Table, **_) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = _plain(lc)
    fields, arrays = [], []
    for name in t.colnames:
        col = t[name]
        values = _values(col)
        if col.dtype.kind == "U":
            typ = pa.string()
        elif col.dtype.kind == "b":
            typ = pa.bool_()
        elif col.dtype.kind in "iu":
            typ = pa.int64()
        else:
            typ = pa.float64()
            values = [None if v is None or not math.isfinite(v) else v for v in values]
        meta = {"ucd": LIGHTCURVE_UCDS.get(name, ""),
                "unit": str(col.unit) if col.unit is not None else "",
                "description": col.info.description or ""}  # fmt: skip
        fields.append(pa.field(name, typ, metadata={k: v for k, v in meta.items() if v}))
        arrays.append(pa.array(values, type=typ))
    schema = pa.schema(fields, metadata={"photdb": json.dumps(_meta(lc))})
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), buf)
    return buf.getvalue()
