"""Binary COPY of numpy columns into PostgreSQL, and a sky-locality sort order.

PostgreSQL's binary COPY format is a fixed header, then per row a field count
(int16) and per field a length (int32, -1 for NULL) followed by the big-endian
value, then a trailer. When every row has the same NULL pattern every row has
the same size, so a whole table is one numpy structured array and ``tobytes``
(rows grouped by NULL pattern; in practice there is one group). That avoids a
Python call per row: see ``benchmarks/pipeline_speed.py`` for rows/s against
psycopg's ``write_row``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

__all__ = ["Column", "copy_columns", "encode_binary_copy", "sky_order"]

_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"
_TYPES = {"int8": ">i8", "int4": ">i4", "int2": ">i2", "float8": ">f8", "float4": ">f4"}


@dataclass(frozen=True)
class Column:
    """One column to COPY: name, PostgreSQL type (int8/int4/int2/float8/float4), values.

    ``null`` marks NULLs; for float columns non-finite values are NULL as well.
    """

    name: str
    pgtype: str
    values: np.ndarray
    null: np.ndarray | None = None

    def null_mask(self) -> np.ndarray:
        v = np.asarray(self.values)
        mask = np.zeros(v.shape, bool) if self.null is None else np.asarray(self.null, bool)
        if self.pgtype.startswith("float"):
            mask = mask | ~np.isfinite(v.astype(float))
        return mask


def encode_binary_copy(columns: Sequence[Column]) -> bytes:
    """Encode columns as one PostgreSQL binary COPY stream (header and trailer included).

    Rows keep their order within each NULL pattern; patterns follow in order of
    first appearance.
    """
    if not columns:
        raise ValueError("no columns")
    n = len(columns[0].values)
    for c in columns:
        if c.pgtype not in _TYPES:
            raise ValueError(f"unsupported type {c.pgtype!r} for column {c.name}")
        if len(c.values) != n:
            raise ValueError("columns differ in length")
    nulls = np.stack([c.null_mask() for c in columns], axis=1) if n else np.zeros((0, 0), bool)
    parts = [_HEADER]
    if n:
        key = (nulls.astype(np.int64) * (1 << np.arange(len(columns), dtype=np.int64))).sum(1)
        patterns, first = np.unique(key, return_index=True)
        for pattern in patterns[np.argsort(first)]:
            rows = np.nonzero(key == pattern)[0]
            fields: list[tuple[str, str]] = [("nf", ">i2")]
            for i, c in enumerate(columns):
                fields.append((f"l{i}", ">i4"))
                if not (pattern >> i) & 1:
                    fields.append((f"v{i}", _TYPES[c.pgtype]))
            arr = np.empty(rows.size, dtype=np.dtype(fields))
            arr["nf"] = len(columns)
            for i, c in enumerate(columns):
                if (pattern >> i) & 1:
                    arr[f"l{i}"] = -1
                else:
                    arr[f"l{i}"] = np.dtype(_TYPES[c.pgtype]).itemsize
                    arr[f"v{i}"] = np.asarray(c.values)[rows]
            parts.append(arr.tobytes())
    parts.append(_TRAILER)
    return b"".join(parts)


def copy_columns(cur: psycopg.Cursor, table: str, columns: Sequence[Column]) -> int:
    """``COPY table (cols) FROM STDIN (FORMAT BINARY)`` from numpy columns; returns rows sent."""
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    )
    data = encode_binary_copy(columns)
    with cur.copy(stmt) as cp:
        cp.write(data)
    return len(columns[0].values) if columns else 0


def _part1by1(v: np.ndarray) -> np.ndarray:
    """Spread the low 32 bits of ``v`` to the even bit positions (Morton encoding)."""
    v = v.astype(np.uint64) & np.uint64(0xFFFFFFFF)
    for shift, mask in (
        (16, 0x0000FFFF0000FFFF),
        (8, 0x00FF00FF00FF00FF),
        (4, 0x0F0F0F0F0F0F0F0F),
        (2, 0x3333333333333333),
        (1, 0x5555555555555555),
    ):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def sky_order(ra: np.ndarray, dec: np.ndarray, *, bits: int = 24) -> np.ndarray:
    """Indices that sort positions along a Z-order (Morton) curve on the cube faces.

    This is the same construction as q3c's pixel number (a cube-face projection,
    then bit interleaving of the two face coordinates), so rows COPYed in this
    order arrive nearly in ``q3c_ang2ipix`` order: consecutive index inserts touch
    the same B-tree leaf pages and each exposure's rows of a sky patch share heap
    pages, so a cone reads one short run of pages per epoch (no CLUSTER). Face
    orientation conventions differ from q3c's, which only changes the order of
    whole sub-squares, not locality.
    """
    r, d = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    v = np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=1)
    if v.shape[0] == 0:
        return np.zeros(0, np.int64)
    axis = np.argmax(np.abs(v), axis=1)
    sign = np.sign(v[np.arange(len(v)), axis])
    face = axis * 2 + (sign > 0)
    others = np.array([[1, 2], [0, 2], [0, 1]])[axis]
    big = np.abs(v[np.arange(len(v)), axis])
    u = v[np.arange(len(v)), others[:, 0]] / big
    w = v[np.arange(len(v)), others[:, 1]] / big
    scale = (1 << bits) - 1
    iu = np.clip(((u + 1) / 2 * scale).astype(np.int64), 0, scale)
    iw = np.clip(((w + 1) / 2 * scale).astype(np.int64), 0, scale)
    key = _part1by1(iu) | (_part1by1(iw) << np.uint64(1))
    return np.lexsort((key, face))
