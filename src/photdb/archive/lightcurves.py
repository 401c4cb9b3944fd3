"""Read light-curve tables and load them into ``lightcurves`` + ``metadata_lc_json``.

Times may be JD, MJD, ISO strings (UTC unless ``time_scale`` says otherwise),
HJD (UTC) or BJD_TDB; all are turned into UTC with astropy, stored as an aware
``dateobs`` and as ``mjd``. Heliocentric and barycentric times are corrected
back to the observer with the object's position (from ``objects``) and the
observatory's location (an ``EarthLocation``; without one, the geocentre,
which is off by at most 21 ms).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import astropy.units as u
import numpy as np
import psycopg
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.table import MaskedColumn, Table
from astropy.time import Time
from psycopg.types.json import Jsonb

from photdb.archive.catalogues import LoadReport, _read_any
from photdb.archive.headers import normalise_band

__all__ = ["META_KEYS", "TIME_COLUMNS", "load_lightcurves", "read_lightcurve_table", "to_utc"]

#: Per-point processing metadata kept in ``metadata_lc_json.data``.
META_KEYS = (
    "comp_stars",
    "num_comp",
    "aver_comp",
    "num_calib",
    "type_calib",
    "detrend",
    "detrend_mag",
    "detrend_mag_err",
    "type_detrend",
    "differential",
    "exp_time",
    "binning",
    "temperature",
    "privileges",
    "check_stars",
    "airmass",
)
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
_ALIASES = {
    "magnitude": ("magnitude", "mag", "mag_calib", "mag_cal"),
    "mag_err": ("mag_err", "magerr", "mag_error", "e_mag", "err", "merr"),
    "mag_diff": ("mag_diff", "dmag", "diff_mag"),
    "mag_diff_err": ("mag_diff_err", "dmag_err", "e_dmag"),
    "quality": ("quality", "flag", "qf"),
    "band": ("band", "filter", "passband"),
    "object_id": ("object_id",),
    "object": ("object", "name", "star", "target", "gaia_name", "simbad_name", "vsx_name"),
    "ra": ("ra", "raj2000", "ra_deg"),
    "dec": ("dec", "dej2000", "dec_deg"),
    "filename": ("filename", "file", "observation"),
    "progid": ("progid", "datasource"),
}


def read_lightcurve_table(path: str | Path, *, format: str | None = None) -> Table:
    """Read a light-curve file; columns are renamed to canonical lower-case names.

    The time column keeps its kind in its name (``jd``, ``mjd``, ``bjd_tdb``,
    ``hjd`` or ``dateobs`` for ISO strings); see :data:`TIME_COLUMNS`.
    """
    table = _read_any(Path(path), format)
    renames: dict[str, str] = {}
    lower = {c.lower().strip(): c for c in table.colnames}
    for canon, names in _ALIASES.items():
        hit = next((lower[n] for n in names if n in lower), None)
        if hit is not None and hit not in renames:
            renames[hit] = canon
    for col in table.colnames:
        new = renames.get(col, col.lower().strip())
        if new != col and new not in table.colnames:
            table.rename_column(col, new)
    return table


def _time_column(table: Table, time_format: str | None) -> tuple[str, str]:
    for name, kind in TIME_COLUMNS.items():
        if name in table.colnames:
            return name, (time_format or kind)
    raise ValueError(f"no time column (one of {', '.join(TIME_COLUMNS)})")


def to_utc(
    values,
    kind: str,
    *,
    scale: str = "utc",
    coord: SkyCoord | None = None,
    location: EarthLocation | None = None,
) -> Time:
    """Times of ``kind`` ('jd', 'mjd', 'iso', 'hjd', 'bjd') as an astropy Time in UTC.

    'bjd' is BJD_TDB and 'hjd' HJD_UTC; both need ``coord`` and are inverted
    iteratively (two passes reach < 1 us).
    """
    if kind in ("jd", "mjd"):
        return Time(np.asarray(values, float), format=kind, scale=scale).utc
    if kind == "iso":
        texts = [str(v).strip() for v in values]
        if any(t.endswith("Z") or "+" in t[10:] or t[10:].count("-") for t in texts):
            stamps = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in texts]
            stamps = [s.astimezone(UTC).replace(tzinfo=None) if s.tzinfo else s for s in stamps]
            return Time(stamps, scale=scale).utc
        return Time([t.replace(" ", "T") for t in texts], format="isot", scale=scale).utc
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


def _column(table: Table, name: str, default=None) -> list:
    if name not in table.colnames:
        return [default] * len(table)
    col = table[name]
    mask = np.ma.getmaskarray(col) if isinstance(col, MaskedColumn) else np.zeros(len(col), bool)
    out = []
    for value, masked in zip(col.tolist(), mask, strict=True):
        if masked or value is None or (isinstance(value, float) and not math.isfinite(value)):
            out.append(default)
        elif isinstance(value, bytes):
            out.append(value.decode().strip())
        else:
            out.append(value.strip() if isinstance(value, str) else value)
    return out


def _comp_list(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v).strip() for v in value]
    text = str(value).strip()
    if text.startswith("["):
        return [str(v) for v in json.loads(text)]
    return [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]


def _json_safe(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class _Resolver:
    def __init__(self, cur: psycopg.Cursor, radius_arcsec: float) -> None:
        self.cur, self.radius = cur, math.radians(radius_arcsec / 3600.0)
        self.cache: dict[object, int | None] = {}

    def by_name(self, name: str) -> int | None:
        key = ("n", name.lower())
        if key not in self.cache:
            gaia = name.split()[-1] if name.lower().startswith("gaia") else name
            row = self.cur.execute(
                "SELECT id FROM objects WHERE gaia_name = %s OR lower(simbad_name) = lower(%s)"
                " OR lower(vsx_name) = lower(%s) OR lower(ucac4_name) = lower(%s)"
                " OR lower(apass_name) = lower(%s) ORDER BY id LIMIT 1",
                [gaia, name, name, name, name],
            ).fetchone()
            self.cache[key] = row[0] if row else None
        return self.cache[key]

    def by_position(self, ra: float, dec: float) -> int | None:
        point = f"({ra!r}d, {dec!r}d)"
        row = self.cur.execute(
            "SELECT id FROM objects WHERE coordequ <@ scircle(%s::spoint, %s)"
            " ORDER BY coordequ <-> %s::spoint LIMIT 1",
            [point, self.radius, point],
        ).fetchone()
        return row[0] if row else None

    def id_of(self, table: str, value: str) -> int:
        key = (table, value)
        if key not in self.cache:
            q = {
                "photosys": (
                    "SELECT id FROM photosys WHERE band = %s",
                    "INSERT INTO photosys (band) VALUES (%s) ON CONFLICT DO NOTHING",
                ),
                "datasources": (
                    "SELECT id FROM datasources WHERE progid = %s",
                    "INSERT INTO datasources (progid) VALUES (%s) ON CONFLICT DO NOTHING",
                ),
            }[table]
            row = self.cur.execute(q[0], [value]).fetchone()
            if row is None:
                self.cur.execute(q[1], [value])
                row = self.cur.execute(q[0], [value]).fetchone()
            self.cache[key] = row[0]
        return self.cache[key]  # type: ignore[return-value]


def load_lightcurves(
    conn: psycopg.Connection,
    table: Table,
    *,
    datasource: str | None = None,
    band: str | None = None,
    object: str | int | None = None,
    time_format: str | None = None,
    time_scale: str = "utc",
    location: EarthLocation | None = None,
    match_radius_arcsec: float = 2.0,
) -> LoadReport:
    """Load one light-curve table in one transaction (all or nothing).

    Parameters
    ----------
    conn : psycopg.Connection
        Writer connection.
    table : astropy.table.Table
        From :func:`read_lightcurve_table`: a time column, ``magnitude``,
        ``mag_err``, optional ``mag_diff``, ``mag_diff_err``, ``quality``,
        ``band``, object (``object_id``, ``object`` name or ``ra``/``dec``),
        ``filename`` (an ``observations.filename``), ``progid`` and any of
        :data:`META_KEYS`.
    datasource, band, object : optional
        Defaults for columns the table lacks (``progid``, ``band``, object
        name or id). Data sources and photometric bands are created if missing.
    time_format : str, optional
        'jd', 'mjd', 'iso', 'hjd' or 'bjd' (BJD_TDB), overriding the column name.
    time_scale : str
        Scale of JD/MJD/ISO values (default 'utc').
    location : EarthLocation, optional
        The observatory, for HJD/BJD.

    Raises
    ------
    ValueError
        A row whose object, band or data source cannot be resolved (one line;
        nothing is written).
    """
    tcol, kind = _time_column(table, time_format)
    n = len(table)
    report = LoadReport()
    with conn.transaction(), conn.cursor() as cur:
        res = _Resolver(cur, match_radius_arcsec)
        ids = _object_ids(res, table, object)
        coord = None
        if kind in ("bjd", "hjd"):
            if len(set(ids)) != 1:
                raise ValueError(f"{kind.upper()} times need a single object per table")
            (ra, dec) = cur.execute(
                "SELECT degrees(long(coordequ)), degrees(lat(coordequ)) FROM objects WHERE id = %s",
                [ids[0]],
            ).fetchone()
            if ra is None:
                raise ValueError(f"{kind.upper()} times need the object's position (id {ids[0]})")
            coord = SkyCoord(ra, dec, unit="deg")
        times = to_utc(_column(table, tcol), kind, scale=time_scale, coord=coord, location=location)
        dateobs = times.to_datetime(timezone=UTC)
        mjd = times.utc.mjd
        bands = [b or band for b in _column(table, "band")]
        progids = [p or datasource for p in _column(table, "progid")]
        if None in bands or None in progids:
            raise ValueError("every point needs a band and a data source (column or default)")
        photosys = [res.id_of("photosys", normalise_band(b) or b) for b in bands]
        sources = [res.id_of("datasources", str(p)) for p in progids]
        obs_ids = [_observation(res, f, report) for f in _column(table, "filename")]
        new_ids = [
            r[0]
            for r in cur.execute(
                "SELECT nextval(pg_get_serial_sequence('lightcurves', 'id'))"
                " FROM generate_series(1, %s)",
                [n],
            ).fetchall()
        ]
        cols = {
            k: _column(table, k)
            for k in ("magnitude", "mag_err", "mag_diff", "mag_diff_err", "quality")
        }
        meta = {k: _column(table, k) for k in META_KEYS if k in table.colnames}
        with cur.copy(
            "COPY lightcurves (id, object_id, dateobs, mjd, magnitude, mag_err,"
            " mag_diff, mag_diff_err, quality, datasource_id, photosys_id,"
            " observation_id) FROM STDIN"
        ) as copy:
            for i in range(n):
                q = cols["quality"][i]
                copy.write_row(
                    [
                        new_ids[i],
                        ids[i],
                        dateobs[i],
                        float(mjd[i]),
                        cols["magnitude"][i],
                        cols["mag_err"][i],
                        cols["mag_diff"][i],
                        cols["mag_diff_err"][i],
                        None if q is None else int(q),
                        sources[i],
                        photosys[i],
                        obs_ids[i],
                    ]
                )
        with cur.copy("COPY metadata_lc_json (lightcurve_id, data) FROM STDIN") as copy:
            for i in range(n):
                data = {k: _json_safe(v[i]) for k, v in meta.items() if v[i] is not None}
                if "comp_stars" in data:
                    data["comp_stars"] = _comp_list(data["comp_stars"])
                if data:
                    copy.write_row([new_ids[i], Jsonb(data)])
        report.inserted = n
    return report


def _object_ids(res: _Resolver, table: Table, default: str | int | None) -> list[int]:
    ids_col = _column(table, "object_id")
    names = _column(table, "object")
    ras, decs = _column(table, "ra"), _column(table, "dec")
    out = []
    for i in range(len(table)):
        oid = ids_col[i]
        if oid is None and names[i] is not None:
            oid = res.by_name(str(names[i]))
        if oid is None and ras[i] is not None and decs[i] is not None:
            oid = res.by_position(float(ras[i]), float(decs[i]))
        if oid is None and default is not None:
            oid = default if isinstance(default, int) else res.by_name(str(default))
        if oid is None:
            what = names[i] or (f"ra={ras[i]}, dec={decs[i]}" if ras[i] is not None else default)
            raise ValueError(f"row {i}: object {what!r} not found in objects")
        out.append(int(oid))
    return out


def _observation(res: _Resolver, filename: str | None, report: LoadReport) -> int | None:
    if filename is None:
        return None
    key = ("f", filename)
    if key not in res.cache:
        rows = res.cur.execute(
            "SELECT id FROM observations WHERE filename = %s LIMIT 2", [filename]
        ).fetchall()
        res.cache[key] = rows[0][0] if len(rows) == 1 else None
        if len(rows) != 1:
            report.messages.append(
                f"observation {filename!r}: {'not found' if not rows else 'ambiguous'}, left empty"
            )
    return res.cache[key]  # type: ignore[return-value]
