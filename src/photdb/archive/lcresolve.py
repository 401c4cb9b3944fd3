"""Find what light-curve rows refer to: objects, bands, data sources, observations.

Each distinct name is looked up once per load (cached); positions are matched
in bulk. A row whose object cannot be found, or whose name is ambiguous, is
refused with one line; bands and data sources named for the first time are
created (concurrent loads creating the same one agree on a single row).
"""

from __future__ import annotations

import math

import numpy as np
import psycopg
from astropy.coordinates import SkyCoord
from astropy.table import Table

from photdb.archive.lcvalues import Refusals, integers, numbers, texts
from photdb.bands import normalise_band
from photdb.db.copy import Column, copy_columns

__all__ = ["Resolver"]

_MAX_BAND, _MAX_PROGID = 68, 32  # photosys.band, datasources.progid
# MATERIALIZED: planned as a bitmap OR of the name indexes, never as a walk of the
# primary key in id order (what ORDER BY id LIMIT 2 alone invites)
_BY_NAME = """
WITH m AS MATERIALIZED (
    SELECT id FROM objects WHERE gaia_name = %s OR lower(simbad_name) = lower(%s)
        OR lower(vsx_name) = lower(%s) OR lower(ucac4_name) = lower(%s)
        OR lower(apass_name) = lower(%s) OR lower(auid) = lower(%s))
SELECT id FROM m ORDER BY id LIMIT 2
"""
_BY_POSITION = """
SELECT p.i, (SELECT o.id FROM objects o
             WHERE o.coordequ <@ scircle(spoint(radians(p.ra), radians(p.dec)), %s)
             ORDER BY o.coordequ <-> spoint(radians(p.ra), radians(p.dec)) LIMIT 1)
FROM lc_positions p
"""


def _per_value(values: np.ndarray, fn) -> np.ndarray:
    """``fn(value)`` for each distinct non-None value, spread back to every row (object array)."""
    out = np.full(len(values), None, dtype=object)
    have = np.flatnonzero(np.not_equal(values, None))
    if have.size:
        uniq, inverse = np.unique(values[have].astype(str), return_inverse=True)
        results = np.empty(len(uniq), dtype=object)
        results[:] = [fn(str(u)) for u in uniq]
        out[have] = results[inverse.ravel()]
    return out


class Resolver:
    """Look-ups for one load, inside its transaction (``cur``)."""

    def __init__(self, cur: psycopg.Cursor, radius_arcsec: float) -> None:
        self.cur, self.radius = cur, math.radians(radius_arcsec / 3600.0)
        self.names: dict[str, int | str] = {}
        self.ids: dict[tuple[str, str], int] = {}
        self.files: dict[str, int] = {}
        self.known: set[int] = set()

    # ---------------------------------------------------------------- objects
    def _by_name(self, name: str) -> int | str:
        """The object id, or the reason there is none."""
        if name not in self.names:
            gaia = name.split()[-1] if name.lower().startswith("gaia") else name
            rows = self.cur.execute(_BY_NAME, [gaia, *[name] * 5]).fetchall()
            if len(rows) == 1:
                self.names[name] = rows[0][0]
            elif rows:
                self.names[name] = f"object {name!r} names several objects; give object_id"
            else:
                self.names[name] = f"object {name!r} not found in objects"
        return self.names[name]

    def _by_position(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        pairs, inverse = np.unique(np.stack([ra, dec], axis=1), axis=0, return_inverse=True)
        self.cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS lc_positions (i int4, ra float8, dec float8)"
            " ON COMMIT DROP"
        )
        self.cur.execute("TRUNCATE lc_positions")
        copy_columns(self.cur, "lc_positions", [
            Column("i", "int4", np.arange(len(pairs))),
            Column("ra", "float8", pairs[:, 0]),
            Column("dec", "float8", pairs[:, 1]),
        ])  # fmt: skip
        found = np.full(len(pairs), -1, np.int64)
        for i, oid in self.cur.execute(_BY_POSITION, [self.radius]).fetchall():
            found[i] = -1 if oid is None else oid
        return found[inverse.ravel()]

    def _exist(self, ids: np.ndarray) -> np.ndarray:
        todo = sorted({int(i) for i in np.unique(ids)} - self.known)
        if todo:
            rows = self.cur.execute("SELECT id FROM objects WHERE id = ANY(%s)", [todo])
            self.known.update(r[0] for r in rows.fetchall())
        return np.array([int(i) in self.known for i in ids], bool)

    def objects(
        self, table: Table, rows: np.ndarray, ref: Refusals, default: str | int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Object id per row (``object_id``, else name, else position, else ``default``)."""
        n = len(table)
        out = np.full(n, -1, np.int64)
        why: list[str | None] = [None] * n
        ok = np.ones(n, bool)
        if "object_id" in table.colnames:
            ids, missing, fine = integers(table, "object_id", rows, ref)
            ok &= fine
            have = ok & ~missing
            exists = self._exist(ids[have]) if have.any() else np.zeros(0, bool)
            out[np.flatnonzero(have)[exists]] = ids[have][exists]
            for i in np.flatnonzero(have)[~exists]:
                why[i] = f"object_id {ids[i]} not in objects"
        names = texts(table, "object")
        todo = ok & (out < 0) & np.not_equal(names, None)
        hits = _per_value(np.where(todo, names, None), self._by_name)
        for i in np.flatnonzero(todo):
            if isinstance(hits[i], str):
                why[i] = hits[i]
        found = todo & np.array([isinstance(h, int) for h in hits], bool)
        out[found] = hits[found].astype(np.int64)
        if "ra" in table.colnames and "dec" in table.colnames:
            ra, fine_ra = numbers(table, "ra", rows, ref, limit=361)
            dec, fine_dec = numbers(table, "dec", rows, ref, limit=91)
            ok &= fine_ra & fine_dec
            todo = ok & (out < 0) & (names == None) & np.isfinite(ra) & np.isfinite(dec)  # noqa: E711
            if todo.any():
                found = self._by_position(ra[todo], dec[todo])
                out[np.flatnonzero(todo)] = found
                for i in np.flatnonzero(todo)[found < 0]:
                    why[i] = (
                        f"no object within {self._arcsec():g} arcsec of ra={ra[i]}, dec={dec[i]}"
                    )
        if default is not None:
            rest = ok & (out < 0) & np.array([w is None for w in why], bool)
            if rest.any():
                hit = default if isinstance(default, int) else self._by_name(str(default))
                if (
                    isinstance(hit, int)
                    and isinstance(default, int)
                    and not self._exist(np.array([hit]))[0]
                ):
                    hit = f"object_id {default} not in objects"
                for i in np.flatnonzero(rest):
                    if isinstance(hit, str):
                        why[i] = hit
                    else:
                        out[i] = hit
        missing = ok & (out < 0)
        ok &= ref.add(
            rows, missing, lambda i: why[i] or "no object (no name, position or --object)"
        )
        return out, ok

    def _arcsec(self) -> float:
        return round(math.degrees(self.radius) * 3600, 6)

    def coords(
        self, obj: np.ndarray, ok: np.ndarray, rows: np.ndarray, ref: Refusals
    ) -> tuple[SkyCoord, np.ndarray]:
        """Each row's object position (for HJD/BJD); rows whose object has none are refused."""
        ids = sorted({int(i) for i in obj[ok]})
        pos = dict.fromkeys(ids, (math.nan, math.nan))
        if ids:
            for oid, ra, dec in self.cur.execute(
                "SELECT id, degrees(long(coordequ)), degrees(lat(coordequ)) FROM objects"
                " WHERE id = ANY(%s)",
                [ids],
            ).fetchall():
                if ra is not None:
                    pos[oid] = (ra, dec)
        ra = np.array([pos.get(int(o), (math.nan, 0))[0] if k else 0.0 for o, k in
                       zip(obj, ok, strict=True)])  # fmt: skip
        dec = np.array([pos.get(int(o), (0, math.nan))[1] if k else 0.0 for o, k in
                        zip(obj, ok, strict=True)])  # fmt: skip
        none = ok & ~np.isfinite(ra)
        ok = ok & ref.add(rows, none, lambda i: f"object {obj[i]} has no position for HJD/BJD")
        return SkyCoord(np.where(ok, ra, 0.0), np.where(ok, dec, 0.0), unit="deg"), ok

    # ---------------------------------------------------------------- bands, sources, files
    def _id_of(self, table: str, value: str) -> int:
        key = (table, value)
        if key not in self.ids:
            col = {"photosys": "band", "datasources": "progid"}[table]
            select = f"SELECT id FROM {table} WHERE {col} = %s"
            row = self.cur.execute(select, [value]).fetchone()
            if row is None:
                self.cur.execute(
                    f"INSERT INTO {table} ({col}) VALUES (%s) ON CONFLICT DO NOTHING", [value]
                )
                row = self.cur.execute(select, [value]).fetchone()
            self.ids[key] = row[0]
        return self.ids[key]

    def _named(self, table, values, rows, ref, limit, what) -> tuple[np.ndarray, np.ndarray]:
        out = np.full(len(values), -1, np.int64)
        missing = np.array([v is None for v in values], bool)
        long = ~missing & np.array([v is not None and len(str(v)) > limit for v in values])
        ok = ref.add(rows, missing, lambda i: f"no {what} (column or --{what})")
        ok &= ref.add(rows, long, lambda i: f"{what} {values[i]!r} is over {limit} characters")
        ids = _per_value(np.where(ok, values, None), lambda v: self._id_of(table, v))
        out[ok] = ids[ok].astype(np.int64)
        return out, ok

    def bands(self, table, rows, ref, default) -> tuple[np.ndarray, np.ndarray]:
        """photosys id per row (the band normalised by the FILTER map; created if new)."""
        raw = texts(table, "band")
        raw[np.equal(raw, None)] = default
        values = _per_value(raw, lambda b: normalise_band(b) or b)
        return self._named("photosys", values, rows, ref, _MAX_BAND, "band")

    def sources(self, table, rows, ref, default) -> tuple[np.ndarray, np.ndarray]:
        """datasources id per row (the ``progid``; created if new)."""
        values = texts(table, "progid")
        values[np.equal(values, None)] = default
        return self._named("datasources", values, rows, ref, _MAX_PROGID, "datasource")

    def observations(self, names: np.ndarray, messages: list[str]) -> np.ndarray:
        """observations id per row (-1: none), by file name; one note per name not found."""
        out = np.full(len(names), -1, np.int64)
        for name in {str(v) for v in names if v is not None}:
            if name not in self.files:
                rows = self.cur.execute(
                    "SELECT id FROM observations WHERE filename = %s LIMIT 2", [name]
                ).fetchall()
                self.files[name] = rows[0][0] if len(rows) == 1 else -1
                if len(rows) != 1:
                    what = "not found" if not rows else "ambiguous"
                    messages.append(f"observation {name!r}: {what}, left empty")
            out[names == name] = self.files[name]
        return out
