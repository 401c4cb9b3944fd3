"""Read object lists (CSV, ECSV, VOTable, FITS) and load them into ``objects``, in bulk.

Names go to the column of their catalogue: a table's generic name column
('Name', 'object', ...) is a VSX name in a VSX table, an APASS name in an APASS
table and so on (from the table's metadata, or ``catalogue=``); SIMBAD's
``main_id`` is always a SIMBAD name. AAVSO comparison-star tables keep their
AUID (``objects.auid``) and chart label (``objects.aavso_label``). Columns that
are not stored are named in a note, never dropped silently.

An object already in the table is recognised by its Gaia id, else its AUID,
else by position (pgSphere, within ``match_radius_arcsec``), else by one of its
names; a recognised object only gets its empty columns filled, never
overwritten. Rows of the file describing the same object (an AAVSO table has
one row per band) are merged first. Loads are serialised (one at a time, by a
transaction-level advisory lock), so concurrent loads of one list store each
object once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import Angle
from astropy.table import Table

from photdb.archive.objmerge import merge_rows
from photdb.archive.tables import iter_chunks

__all__ = [
    "CATALOGUES",
    "NAME_COLUMNS",
    "ObjectsReport",
    "load_objects",
    "read_object_table",
    "spoint_text",
]

#: Name-like columns of ``objects`` (varchar(32)), AUID and AAVSO label included.
NAME_COLUMNS = (
    "gaia_name",
    "simbad_name",
    "ucac4_name",
    "apass_name",
    "vsx_name",
    "auid",
    "aavso_label",
    "class",
    "description",
)
#: Catalogues a table can come from, and the column their generic names go to.
CATALOGUES = {
    "vsx": "vsx_name",
    "simbad": "simbad_name",
    "ucac4": "ucac4_name",
    "apass": "apass_name",
    "gaia": "gaia_name",
    "aavso": "auid",
}
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
    ),  # fmt: skip
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
    ),  # fmt: skip
    "simbad_name": ("simbad_name", "simbad", "main_id", "simbad_id"),
    "ucac4_name": ("ucac4_name", "ucac4", "ucac4_id"),
    "apass_name": ("apass_name", "apass", "apass_id"),
    "vsx_name": ("vsx_name", "vsx", "vsx_id"),
    "auid": ("auid", "aavso_id"),
    "aavso_label": ("aavso_label",),
    "class": ("class", "var_type", "vartype", "otype", "type"),
    "description": ("description", "desc", "comment", "comments"),
}
_GENERIC = ("name", "object", "designation", "star", "target")
_GAIA = re.compile(r"^\s*(?:gaia\s*(?:dr\d|edr3)?\s*)?(\d{5,20})\s*$", re.IGNORECASE)
_MAX_NAME = 32


@dataclass(frozen=True)
class ObjectsReport:
    """What an object load did (counts are rows of the file)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    skipped: int = 0
    messages: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


#: Backwards-compatible name.
LoadReport = ObjectsReport


def spoint_text(ra_deg: float, dec_deg: float) -> str:
    """pgSphere input text for a point in degrees: ``'(ra d, dec d)'``."""
    return f"({float(ra_deg)!r}d, {float(dec_deg)!r}d)"


def _find(colnames: list[str], names: tuple[str, ...]) -> str | None:
    lower = {c.lower().strip(): c for c in colnames}
    return next((lower[n] for n in names if n in lower), None)


def _strings(col) -> np.ndarray:
    """A column as stripped text (object array), None where empty, masked or a null marker."""
    data = np.ma.getdata(col)
    if data.dtype.kind == "S":
        data = np.char.decode(data, "utf-8", "replace")
    text = np.char.strip(np.asarray(data).astype(str)) if len(data) else np.zeros(0, str)
    empty = np.ma.getmaskarray(col) | np.isin(
        np.char.lower(text), ["", "--", "nan", "none", "null"]
    )
    out = text.astype(object)
    out[empty] = None
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
            try:
                out[i] = Angle(text, unit=unit).deg
            except ValueError:
                out[i] = np.inf  # unreadable: refused when loaded
    return out


def detect_catalogue(table: Table) -> str | None:
    """The catalogue a table comes from, by its metadata (VizieR, astroquery) or columns."""
    keys = ("ID", "NAME", "catalog_name", "name", "description", "catalog")
    text = " ".join(str(table.meta.get(k, "")) for k in keys).lower()
    for cat, marks in (("vsx", ("vsx",)), ("apass", ("apass",)), ("ucac4", ("ucac4", "i/322")),
                       ("simbad", ("simbad",)), ("gaia", ("gaia",))):  # fmt: skip
        if any(m in text for m in marks):
            return cat
    if _find(table.colnames, ("auid",)):
        return "aavso"
    return None


def read_object_table(
    path: str | Path,
    *,
    format: str | None = None,
    catalogue: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> Table:
    """Read an object list and return it with the ``objects`` column names.

    Parameters
    ----------
    path : str or Path
        CSV, ECSV, VOTable or FITS table; the format is detected from the
        name or content unless ``format`` (an astropy format name) is given.
    catalogue : str, optional
        One of :data:`CATALOGUES`: where the table's generic name column goes
        (default: from the table's metadata; SIMBAD when it says nothing).
    columns : mapping, optional
        ``objects`` column -> the table's column, e.g. ``{"vsx_name": "Name"}``.

    Returns
    -------
    astropy.table.Table
        Columns ``ra``, ``dec`` [deg] (NaN when unknown; sexagesimal input,
        RA in hours, is converted) and :data:`NAME_COLUMNS` (None when
        absent). Gaia ids lose any 'Gaia DR3 ' prefix, as in the archive
        document. ``meta['notes']`` says where names went and which columns
        are not stored.
    """
    parts = [
        objects_from_table(chunk, catalogue=catalogue, columns=columns)
        for chunk in iter_chunks(Path(path), format=format)
    ]  # each chunk reduced to the objects columns at once: the raw table is never whole
    if len(parts) == 1:
        return parts[0]
    out = Table({k: np.concatenate([p[k] for p in parts]) for k in parts[0].colnames})
    out.meta.update(parts[0].meta)
    return out


def objects_from_table(
    table: Table, *, catalogue: str | None = None, columns: Mapping[str, str] | None = None
) -> Table:
    """The ``objects`` columns of an already read table (see :func:`read_object_table`)."""
    if catalogue is not None and catalogue not in CATALOGUES:
        raise ValueError(f"unknown catalogue {catalogue!r}: use one of {', '.join(CATALOGUES)}")
    colnames = table.colnames
    notes: list[str] = []
    chosen: dict[str, str | None] = {k: _find(colnames, v) for k, v in _ALIASES.items()}
    for key, name in (columns or {}).items():
        if key not in _ALIASES:
            raise ValueError(f"--column {key}=...: not a column of objects ({', '.join(_ALIASES)})")
        chosen[key] = _find(colnames, (name.lower(),))
        if chosen[key] is None:
            raise ValueError(f"--column {key}={name}: the table has no column {name!r}")
    cat = catalogue or detect_catalogue(table)
    if cat == "aavso" and chosen["aavso_label"] is None:
        chosen["aavso_label"] = _find(colnames, ("label",))
    generic = _find(colnames, _GENERIC)
    if chosen["gaia_name"] is None:  # e.g. stellarphot's 'id' column holding 'Gaia DR3 ...'
        idcol = _find(colnames, ("id",))
        if idcol and all(v is None or _GAIA.match(v) for v in _strings(table[idcol])):
            chosen["gaia_name"] = idcol
    if generic is not None and generic not in chosen.values():
        target = CATALOGUES.get(cat or "simbad", "simbad_name")
        if chosen[target] is None:
            chosen[target] = generic
            if cat is None:
                notes.append(
                    f"column {generic!r} stored as simbad_name: the table does not say which "
                    "catalogue its names come from (--catalogue vsx|apass|ucac4|gaia|aavso)"
                )
    out = Table()
    n = len(table)
    for key, hours in (("ra", True), ("dec", False)):
        name = chosen[key]
        if name is None:
            out[key] = np.full(n, np.nan)
        elif table[name].dtype.kind in "fiu":
            out[key] = np.ma.filled(np.ma.asarray(table[name], dtype=float), np.nan)
        else:
            out[key] = _angles(table[name], hours=hours)
    for key in NAME_COLUMNS:
        name = chosen[key]
        values = _strings(table[name]) if name else np.full(n, None, dtype=object)
        if key == "gaia_name" and name:
            values = _gaia_ids(values)
        out[key] = values
    used = {v for v in chosen.values() if v}
    unused = [c for c in colnames if c not in used]
    stored = ", ".join(f"{v} -> {k}" for k, v in chosen.items() if v and k not in ("ra", "dec"))
    notes.append(f"names stored: {stored or 'none'}")
    if unused:
        notes.append(f"columns not stored: {', '.join(unused)}")
    out.meta["notes"] = notes
    out.meta["catalogue"] = cat
    return out


def _gaia_ids(values: np.ndarray) -> np.ndarray:
    """'Gaia DR3 123' -> '123' (bare ids are kept as they are)."""
    out = values.copy()
    prefixed = np.flatnonzero([v is not None and not v.isdigit() for v in values])
    for i in prefixed:
        match = _GAIA.match(values[i])
        out[i] = match.group(1) if match else values[i]
    return out


def _validate(table: Table) -> tuple[np.ndarray, list[str]]:
    """Rows that can be loaded, and one line per refused row (checked column-wise)."""
    n = len(table)
    ra = np.asarray(table["ra"], float)
    dec = np.asarray(table["dec"], float)
    given = {k: np.not_equal(np.asarray(table[k], dtype=object), None) for k in NAME_COLUMNS}
    cols = {k: np.asarray(table[k], dtype=object) for k in NAME_COLUMNS if given[k].any()}
    long = np.zeros(n, bool)
    for k, values in cols.items():
        long |= given[k] & (np.char.str_len(values.astype(str)) > _MAX_NAME)
    named = np.zeros(n, bool)
    for k in NAME_COLUMNS[:6]:
        named |= given[k]
    has_pos = ~(np.isnan(ra) & np.isnan(dec))
    finite = np.isfinite(ra) & np.isfinite(dec)
    with np.errstate(invalid="ignore"):
        inside = (ra >= 0) & (ra <= 360) & (dec >= -90) & (dec <= 90)

    def too_long(i: int) -> str:
        over = [k for k in cols if cols[k][i] is not None and len(str(cols[k][i])) > _MAX_NAME]
        return f"{', '.join(over)} longer than {_MAX_NAME} characters"

    def where(i: int) -> str:
        return f"position ra={ra[i]}, dec={dec[i]}"

    reasons = [
        (long, too_long),
        (has_pos & ~finite, lambda i: f"{where(i)} is incomplete or unreadable"),
        (has_pos & finite & ~inside, lambda i: f"{where(i)} is outside 0-360 / -90..+90 deg"),
        (~has_pos & ~named, lambda i: "neither a position nor a name"),
    ]
    ok = np.ones(n, bool)
    lines = []
    for bad, reason in reasons:
        for i in np.flatnonzero(bad & ok):
            lines.append(f"row {i + 1}: {reason(i)}; refused")
        ok &= ~bad
    return ok, sorted(lines, key=lambda t: int(t.split(":")[0][4:]))


def load_objects(conn, table: Table, *, match_radius_arcsec: float = 1.0) -> ObjectsReport:
    """Insert new objects, fill in empty columns of known ones, in one transaction.

    Parameters
    ----------
    conn : psycopg.Connection
        A writer connection; committed on success (or a savepoint if the
        caller has a transaction open), rolled back on error.
    table : astropy.table.Table
        As returned by :func:`read_object_table` (or with those columns).
    match_radius_arcsec : float
        Two positions closer than this are the same object [arcsec].
    """
    from photdb.archive.objstore import store_objects

    for key in NAME_COLUMNS:
        if key not in table.colnames:
            table[key] = np.full(len(table), None, dtype=object)
    ok, refused = _validate(table)
    rows = np.flatnonzero(ok)
    groups = merge_rows(table, rows, match_radius_arcsec)
    counts = store_objects(conn, table, groups, match_radius_arcsec)
    return ObjectsReport(
        inserted=counts["inserted"],
        updated=counts["updated"],
        unchanged=counts["unchanged"],
        duplicates=groups.duplicates,
        skipped=len(refused),
        messages=tuple(refused + groups.messages),
        notes=tuple(table.meta.get("notes", ())),
    )
