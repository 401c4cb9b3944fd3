"""Read object lists (CSV, ECSV, VOTable, FITS) and load them into ``objects``.

An object already in the table is recognised by its Gaia id, else by position
(pgSphere, within ``match_radius_arcsec``), else by one of its names; a
recognised object only gets its empty columns filled, never overwritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
import psycopg
from astropy.coordinates import Angle
from astropy.table import MaskedColumn, Table

__all__ = ["NAME_COLUMNS", "LoadReport", "load_objects", "read_object_table", "spoint_text"]

#: Name-like columns of ``objects`` (all varchar(32)).
NAME_COLUMNS = (
    "gaia_name",
    "simbad_name",
    "ucac4_name",
    "apass_name",
    "vsx_name",
    "class",
    "description",
)
_ALIASES = {
    "ra": ("ra", "raj2000", "_raj2000", "ra_icrs", "ra_deg", "radeg", "ra_j2000", "alpha"),
    "dec": (
        "dec",
        "dej2000",
        "_dej2000",
        "de_icrs",
        "dec_deg",
        "decdeg",
        "dec_j2000",
        "decl",
        "delta",
    ),
    "gaia_name": (
        "gaia_name",
        "gaia",
        "source_id",
        "gaia_id",
        "gaiadr3",
        "gaia_dr3",
        "gaiadr2",
        "dr3name",
        "gaia_source_id",
    ),
    "simbad_name": ("simbad_name", "simbad", "main_id", "simbad_id", "name", "object"),
    "ucac4_name": ("ucac4_name", "ucac4", "ucac4_id"),
    "apass_name": ("apass_name", "apass", "apass_id"),
    "vsx_name": ("vsx_name", "vsx", "vsx_id"),
    "class": ("class", "var_type", "vartype", "otype", "type"),
    "description": ("description", "desc", "comment", "comments"),
}
_GAIA = re.compile(r"^\s*(?:gaia\s*(?:dr\d|edr3)?\s*)?(\d{5,20})\s*$", re.IGNORECASE)


@dataclass
class LoadReport:
    """Counts and one-line messages of a catalogue or light-curve load."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    messages: list[str] = field(default_factory=list)


def spoint_text(ra_deg: float, dec_deg: float) -> str:
    """pgSphere input text for a point in degrees: ``'(ra d, dec d)'``."""
    return f"({float(ra_deg)!r}d, {float(dec_deg)!r}d)"


def _find(colnames: list[str], names: tuple[str, ...]) -> str | None:
    lower = {c.lower().strip(): c for c in colnames}
    return next((lower[n] for n in names if n in lower), None)


def _strings(col) -> list[str | None]:
    mask = np.ma.getmaskarray(col) if isinstance(col, MaskedColumn) else np.zeros(len(col), bool)
    out = []
    for value, masked in zip(col.tolist(), mask, strict=True):
        text = None if masked or value is None else str(value).strip()
        out.append(text if text and text.lower() not in ("--", "nan", "none", "null") else None)
    return out


def _angles(col, *, hours: bool) -> np.ndarray:
    values = _strings(col)
    out = np.full(len(values), np.nan)
    for i, text in enumerate(values):
        if text is None:
            continue
        try:
            out[i] = float(text)
        except ValueError:
            unit = u.hourangle if hours and not text.endswith("d") else u.deg
            out[i] = Angle(text, unit=unit).deg
    return out


def read_object_table(path: str | Path, *, format: str | None = None) -> Table:
    """Read an object list and return it with the ``objects`` column names.

    Parameters
    ----------
    path : str or Path
        CSV, ECSV, VOTable or FITS table; the format is detected from the
        name or content unless ``format`` (an astropy format name) is given.

    Returns
    -------
    astropy.table.Table
        Columns ``ra``, ``dec`` [deg] (NaN when unknown; sexagesimal input,
        RA in hours, is converted) and the name columns of
        :data:`NAME_COLUMNS` (None when absent). Gaia ids lose any
        'Gaia DR3 ' prefix, as in the archive document.
    """
    table = _read_any(Path(path), format)
    colnames = table.colnames
    out = Table()
    n = len(table)
    for key, hours in (("ra", True), ("dec", False)):
        name = _find(colnames, _ALIASES[key])
        if name is None:
            out[key] = np.full(n, np.nan)
        elif table[name].dtype.kind in "fiu" and not isinstance(table[name], MaskedColumn):
            out[key] = np.asarray(table[name], dtype=float)
        elif table[name].dtype.kind in "fiu":
            out[key] = np.ma.filled(table[name].astype(float), np.nan)
        else:
            out[key] = _angles(table[name], hours=hours)
    gaia_col = _find(colnames, _ALIASES["gaia_name"])
    if gaia_col is None:  # e.g. stellarphot's 'id' column holding 'Gaia DR3 ...'
        idcol = _find(colnames, ("id",))
        if idcol and all(v is None or _GAIA.match(v) for v in _strings(table[idcol])):
            gaia_col = idcol
    for key in NAME_COLUMNS:
        name = gaia_col if key == "gaia_name" else _find(colnames, _ALIASES[key])
        values = _strings(table[name]) if name else [None] * n
        if key == "gaia_name":
            values = [_gaia_id(v) for v in values]
        out[key] = np.array(values, dtype=object)
    return out


def _read_any(path: Path, format: str | None) -> Table:
    if format is not None:
        return Table.read(path, format=format)
    name = path.name.lower()
    if name.endswith(".csv"):
        return Table.read(path, format="ascii.csv")
    if name.endswith((".ecsv", ".ecsv.gz")):
        return Table.read(path, format="ascii.ecsv")
    try:
        return Table.read(path)
    except Exception:  # astropy could not identify it: let ascii guess
        return Table.read(path, format="ascii")


def _gaia_id(value: str | None) -> str | None:
    if value is None:
        return None
    match = _GAIA.match(value)
    return match.group(1) if match else value


_MATCH_POS = """
SELECT id FROM objects
WHERE coordequ <@ scircle(%s::spoint, %s) AND (gaia_name IS NULL OR %s::text IS NULL)
ORDER BY coordequ <-> %s::spoint LIMIT 1
"""
_MATCH_NAME = """
SELECT id FROM objects WHERE lower(simbad_name) = lower(%s) OR lower(vsx_name) = lower(%s)
    OR lower(ucac4_name) = lower(%s) OR lower(apass_name) = lower(%s) LIMIT 1
"""


def _match(cur: psycopg.Cursor, row: dict, radius_rad: float) -> int | None:
    if row["gaia_name"]:
        hit = cur.execute(
            "SELECT id FROM objects WHERE gaia_name = %s", [row["gaia_name"]]
        ).fetchone()
        if hit:
            return hit[0]
    if row["coordequ"] is not None:
        hit = cur.execute(
            _MATCH_POS, [row["coordequ"], radius_rad, row["gaia_name"], row["coordequ"]]
        ).fetchone()
        return hit[0] if hit else None
    names = [row[k] for k in ("simbad_name", "vsx_name", "ucac4_name", "apass_name")]
    if any(names):
        hit = cur.execute(_MATCH_NAME, [v or "\x01" for v in names]).fetchone()
        return hit[0] if hit else None
    return None


def load_objects(
    conn: psycopg.Connection, table: Table, *, match_radius_arcsec: float = 1.0
) -> LoadReport:
    """Insert new objects, fill in empty columns of known ones, in one transaction.

    Parameters
    ----------
    conn : psycopg.Connection
        A writer connection; committed on success (or a savepoint if the
        caller has a transaction open), rolled back on error.
    table : astropy.table.Table
        As returned by :func:`read_object_table`.
    match_radius_arcsec : float
        Two positions closer than this are the same object [arcsec].
    """
    report = LoadReport()
    radius = np.deg2rad(match_radius_arcsec / 3600.0)
    with conn.transaction(), conn.cursor() as cur:
        for index, rec in enumerate(table):
            row = {k: (rec[k] if k in table.colnames else None) for k in NAME_COLUMNS}
            long = [k for k, v in row.items() if v is not None and len(str(v)) > 32]
            if long:
                report.skipped += 1
                report.messages.append(f"row {index}: {', '.join(long)} longer than 32 characters")
                continue
            ra, dec = float(rec["ra"]), float(rec["dec"])
            row["coordequ"] = spoint_text(ra, dec) if np.isfinite(ra) and np.isfinite(dec) else None
            if row["coordequ"] is None and not any(row[k] for k in NAME_COLUMNS[:5]):
                report.skipped += 1
                report.messages.append(f"row {index}: neither a position nor a name")
                continue
            oid = _match(cur, row, radius)
            cols = ["coordequ", *NAME_COLUMNS]
            if oid is None:
                cur.execute(
                    "INSERT INTO objects (coordequ, gaia_name, simbad_name, ucac4_name,"
                    " apass_name, vsx_name, class, description)"
                    " VALUES (%s::spoint, %s, %s, %s, %s, %s, %s, %s)",
                    [row[c] for c in cols],
                )
                report.inserted += 1
                continue
            cur.execute(
                "UPDATE objects SET coordequ = COALESCE(coordequ, %s::spoint),"
                " gaia_name = COALESCE(gaia_name, %s), simbad_name = COALESCE(simbad_name, %s),"
                " ucac4_name = COALESCE(ucac4_name, %s), apass_name = COALESCE(apass_name, %s),"
                " vsx_name = COALESCE(vsx_name, %s), class = COALESCE(class, %s),"
                " description = COALESCE(description, %s)"
                " WHERE id = %s AND ("
                + " OR ".join(f"({c} IS NULL AND %s::text IS NOT NULL)" for c in cols)
                + ")",
                [*(row[c] for c in cols), oid, *(row[c] for c in cols)],
            )
            if cur.rowcount:
                report.updated += 1
            else:
                report.unchanged += 1
    return report
