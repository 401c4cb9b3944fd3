"""Binary COPY of numpy columns into PostgreSQL, and a sky-locality sort order.

PostgreSQL's binary COPY format is a fixed header, then per row a field count
(int16) and per field a length (int32, -1 for NULL) followed by the big-endian
value, then a trailer. When every row has the same NULL pattern every row has
the same size, so a whole table is one numpy structured array and ``tobytes``
(rows grouped by NULL pattern; in practice there is one group). That avoids a
Python call per row: see ``benchmarks/pipeline_speed.py`` for rows/s against
psycopg's ``write_row``.

Besides integers and floats, ``numeric4`` (a ``numeric`` with 4 decimals, as
the archive's magnitudes: rounded half away from zero, |value| < 10^8) and
``timestamptz`` (int64 microseconds since 2000-01-01 UTC) are fixed-width too;
``text`` and ``jsonb`` (str values, None for NULL) are variable-width, encoded
in bulk with numpy as well (``benchmarks/load_speed.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

__all__ = ["NUMERIC4_LIMIT", "Column", "copy_columns", "encode_binary_copy", "sky_order"]

_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"
_TYPES = {
    "int8": ">i8",
    "int4": ">i4",
    "int2": ">i2",
    "float8": ">f8",
    "float4": ">f4",
    "timestamptz": ">i8",
    "numeric4": "V14",
}
_VARIABLE = ("text", "jsonb")
_NUMERIC4 = np.dtype([("nd", ">i2"), ("w", ">i2"), ("sign", ">u2"), ("ds", ">i2"), ("d", ">i2", 3)])
#: Largest magnitude a numeric4 column takes (numeric(12,4)).
NUMERIC4_LIMIT = 1e8


@dataclass(frozen=True)
class Column:
    """One column to COPY: name, PostgreSQL type, values.

    Types: int8/int4/int2/float8/float4, timestamptz (int64 microseconds since
    2000-01-01 UTC), numeric4 (float values, stored with 4 decimals), text and
    jsonb (str values, None for NULL). ``null`` marks NULLs; for float and
    numeric4 columns non-finite values are NULL as well.
    """

    name: str
    pgtype: str
    values: np.ndarray
    null: np.ndarray | None = None

    def null_mask(self) -> np.ndarray:
        if self.pgtype in _VARIABLE:
            mask = np.equal(np.asarray(self.values, dtype=object), None)
            return mask if self.null is None else mask | np.asarray(self.null, bool)
        v = np.asarray(self.values)
        mask = np.zeros(v.shape, bool) if self.null is None else np.asarray(self.null, bool)
        if self.pgtype.startswith("float") or self.pgtype == "numeric4":
            mask = mask | ~np.isfinite(v.astype(float))
        return mask

    def fixed(self) -> np.ndarray:
        """The values in their binary wire format (fixed-width types only)."""
        if self.pgtype == "numeric4":
            return _numeric4(np.asarray(self.values, float)).view("V14")
        return np.asarray(self.values).astype(_TYPES[self.pgtype])


def _numeric4(x: np.ndarray) -> np.ndarray:
    """Binary ``numeric`` of ``x`` rounded to 4 decimals (3 base-10000 digits, weight 1)."""
    with np.errstate(invalid="ignore"):
        v = np.floor(np.abs(np.nan_to_num(x)) * 1e4 + 0.5).astype(np.int64)
    if np.any(v >= NUMERIC4_LIMIT * 1e4):
        raise ValueError(f"a numeric4 value is {NUMERIC4_LIMIT:.0e} or more")
    out = np.zeros(len(x), _NUMERIC4)
    out["nd"], out["w"], out["ds"] = 3, 1, 4
    out["sign"] = np.where(np.signbit(x) & (v > 0), 0x4000, 0)
    ints = v // 10000
    out["d"][:, 0], out["d"][:, 1], out["d"][:, 2] = ints // 10000, ints % 10000, v % 10000
    return out


def _put(buf: np.ndarray, starts: np.ndarray, values: np.ndarray) -> None:
    """Write fixed-width ``values`` (one per start offset) into the byte buffer ``buf``."""
    if len(starts) == 0:
        return
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(len(starts), -1)
    buf[starts[:, None] + np.arange(raw.shape[1])] = raw


def _encode_variable(columns: Sequence[Column], nulls: np.ndarray) -> bytes:
    """Rows of differing sizes (text/jsonb columns): one byte buffer filled with numpy."""
    n = nulls.shape[0]
    data, lengths = [], []
    for i, c in enumerate(columns):
        if c.pgtype in _VARIABLE and nulls[:, i].all():
            data.append([])
            lengths.append(np.zeros(n, np.int64))
        elif c.pgtype in _VARIABLE:
            prefix = b"\x01" if c.pgtype == "jsonb" else b""
            encoded = [b"" if nulls[r, i] else prefix + str(v).encode() for r, v in
                       enumerate(c.values)]  # fmt: skip
            data.append(encoded)
            lengths.append(np.fromiter(map(len, encoded), np.int64, n))
        else:
            data.append(c.fixed())
            lengths.append(np.where(nulls[:, i], 0, data[-1].dtype.itemsize).astype(np.int64))
    sizes = 2 + 4 * len(columns) + np.sum(lengths, axis=0)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    buf = np.empty(int(sizes.sum()), np.uint8)
    _put(buf, starts, np.full(n, len(columns), ">i2"))
    pos = starts + 2
    for i, c in enumerate(columns):
        _put(buf, pos, np.where(nulls[:, i], -1, lengths[i]).astype(">i4"))
        pos = pos + 4
        keep = ~nulls[:, i]
        if c.pgtype in _VARIABLE:
            if not keep.any():
                pos = pos + lengths[i]
                continue
            blob = np.frombuffer(b"".join(data[i]), np.uint8)
            lens = lengths[i][keep]
            shift = pos[keep] - np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
            buf[np.repeat(shift, lens) + np.arange(len(blob))] = blob
        else:
            _put(buf, pos[keep], data[i][keep])
        pos = pos + lengths[i]
    return bytes(buf)


def encode_binary_copy(columns: Sequence[Column]) -> bytes:
    """Encode columns as one PostgreSQL binary COPY stream (header and trailer included).

    With fixed-width types only, rows keep their order within each NULL
    pattern and patterns follow in order of first appearance; with a text or
    jsonb column, rows keep their order.
    """
    if not columns:
        raise ValueError("no columns")
    n = len(columns[0].values)
    for c in columns:
        if c.pgtype not in _TYPES and c.pgtype not in _VARIABLE:
            raise ValueError(f"unsupported type {c.pgtype!r} for column {c.name}")
        if len(c.values) != n:
            raise ValueError("columns differ in length")
    nulls = np.stack([c.null_mask() for c in columns], axis=1) if n else np.zeros((0, 0), bool)
    if any(c.pgtype in _VARIABLE for c in columns):
        return _HEADER + (_encode_variable(columns, nulls) if n else b"") + _TRAILER
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
                elif c.pgtype in ("numeric4", "timestamptz"):
                    arr[f"l{i}"] = np.dtype(_TYPES[c.pgtype]).itemsize
                    arr[f"v{i}"] = c.fixed()[rows]
                else:
                    arr[f"l{i}"] = np.dtype(_TYPES[c.pgtype]).itemsize
                    arr[f"v{i}"] = np.asarray(c.values)[rows]
            parts.append(arr.tobytes())
    parts.append(_TRAILER)
    return b"".join(parts)


def copy_columns(
    cur: psycopg.Cursor, table: str, columns: Sequence[Column], *, block_rows: int = 100_000
) -> int:
    """``COPY table (cols) FROM STDIN (FORMAT BINARY)`` from numpy columns; returns rows sent.

    ``table`` may be a temporary table's name. Rows are encoded and sent in blocks of
    ``block_rows``, so the memory the encoding takes does not grow with the row count.
    """
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    )
    n = len(columns[0].values) if columns else 0
    with cur.copy(stmt) as cp:
        cp.write(_HEADER)
        for start in range(0, n, block_rows):
            part = [
                Column(c.name, c.pgtype, c.values[start : start + block_rows],
                       None if c.null is None else c.null[start : start + block_rows])
                for c in columns
            ]  # fmt: skip
            cp.write(encode_binary_copy(part)[len(_HEADER) : -len(_TRAILER)])
        cp.write(_TRAILER)
    return n


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
