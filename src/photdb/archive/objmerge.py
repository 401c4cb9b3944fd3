"""Rows of one object list that describe the same object, merged before loading (no SQL).

Two rows are the same object when they share a Gaia id or an AUID, when their
positions are within the match radius (and their Gaia ids / AUIDs do not
differ), or, for a row without a position, when they share a name. A merged
object takes each column's first value in file order; a later row with a
different value is reported, never silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

__all__ = ["Groups", "merge_rows"]

_IDS = ("gaia_name", "auid")
_NAMES = ("simbad_name", "vsx_name", "ucac4_name", "apass_name")


@dataclass(frozen=True)
class Groups:
    """Objects of a list after merging.

    Attributes
    ----------
    first : ndarray
        For each object, the row (0-based) it was first described in.
    values : dict
        Column -> per-object values (``ra``, ``dec`` floats; names object arrays).
    duplicates : int
        Rows merged into an earlier row.
    messages : list of str
        One line per conflicting value of merged rows.
    """

    first: np.ndarray
    values: dict[str, np.ndarray]
    duplicates: int
    messages: list[str]


class _Union:
    """Union-find over rows; each root knows its group's Gaia id and AUID."""

    def __init__(self, n: int, ids: dict[str, np.ndarray]) -> None:
        self.parent = np.arange(n)
        self.ids = {k: v.copy() for k, v in ids.items()}

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return int(root)

    def union(self, a: int, b: int, *, check: bool) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if check and any(
            v[ra] is not None and v[rb] is not None and v[ra] != v[rb] for v in self.ids.values()
        ):
            return  # a position or name shared by two objects with different ids
        keep, drop = (ra, rb) if ra < rb else (rb, ra)
        self.parent[drop] = keep
        for v in self.ids.values():
            if v[keep] is None:
                v[keep] = v[drop]


def _equal_pairs(values: np.ndarray, rows: np.ndarray) -> list[tuple[int, int]]:
    """(first row, row) for every later row repeating a non-empty value (case-insensitive)."""
    have = rows[np.not_equal(values[rows], None)]
    if have.size < 2:
        return []
    keys = np.char.lower(values[have].astype(str))
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    later = np.flatnonzero(first[inverse] != np.arange(have.size))
    return [(int(have[first[inverse[i]]]), int(have[i])) for i in later]


def _close_pairs(ra: np.ndarray, dec: np.ndarray, rows: np.ndarray, radius_arcsec: float):
    have = rows[np.isfinite(ra[rows]) & np.isfinite(dec[rows])]
    if have.size < 2:
        return []
    r, d = np.radians(ra[have]), np.radians(dec[have])
    xyz = np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=1)
    chord = 2 * math.sin(math.radians(radius_arcsec / 3600.0) / 2)
    pairs = cKDTree(xyz).query_pairs(chord, output_type="ndarray")
    return [(int(have[a]), int(have[b])) for a, b in np.sort(pairs, axis=1)]


def merge_rows(table: Table, rows: np.ndarray, radius_arcsec: float) -> Groups:
    """Merge the rows ``rows`` of ``table`` that describe the same object."""
    cols = {k: np.asarray(table[k], dtype=object) for k in table.colnames if k not in ("ra", "dec")}
    ra = np.asarray(table["ra"], float)
    dec = np.asarray(table["dec"], float)
    uf = _Union(len(table), {k: cols[k] for k in _IDS})
    for key in _IDS:
        for a, b in _equal_pairs(cols[key], rows):
            uf.union(a, b, check=False)
    for a, b in _close_pairs(ra, dec, rows, radius_arcsec):
        uf.union(a, b, check=True)
    nopos = rows[~(np.isfinite(ra[rows]) & np.isfinite(dec[rows]))]
    if nopos.size:
        for key in _NAMES:
            first = {}
            for r in rows:
                if cols[key][r] is not None:
                    first.setdefault(str(cols[key][r]).lower(), int(r))
            for r in nopos:
                v = cols[key][r]
                if v is not None and first.get(str(v).lower(), r) != r:
                    uf.union(first[str(v).lower()], int(r), check=True)
    parent = uf.parent
    while True:  # pointer jumping: every row straight to its root
        up = parent[parent]
        if np.array_equal(up, parent):
            break
        parent = up
    roots = parent[rows].astype(np.int64)
    order = np.argsort(roots, kind="stable")
    uniq, start = np.unique(roots[order], return_index=True)
    firsts = rows[order][start]  # the smallest row of each group: its root
    values = {"ra": ra[firsts], "dec": dec[firsts]}
    values.update({k: v[firsts].copy() for k, v in cols.items()})
    messages: list[str] = []
    multi = np.flatnonzero(np.diff(np.append(start, len(order))) > 1)
    for g in multi:
        members = rows[order][start[g] : (start[g + 1] if g + 1 < len(start) else len(order))]
        for key, col in cols.items():
            for r in members[1:]:
                v, kept = col[r], values[key][g]
                if v is None or v == kept:
                    continue
                if kept is None:
                    values[key][g] = v
                else:
                    messages.append(
                        f"row {r + 1}: {key} {v!r} differs from {kept!r} of row {members[0] + 1}"
                        " (the same object); kept the first"
                    )
    order_first = np.argsort(firsts)
    return Groups(
        first=firsts[order_first],
        values={k: v[order_first] for k, v in values.items()},
        duplicates=int(len(rows) - len(uniq)),
        messages=messages,
    )
