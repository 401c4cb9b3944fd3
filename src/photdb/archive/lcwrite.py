"""Writing light-curve points: which are already stored, ids, per-point metadata (SQL).

Helpers of :mod:`photdb.archive.lightcurves`.
"""

from __future__ import annotations

import json

import numpy as np
import psycopg

from photdb.db.copy import Column, copy_columns

__all__ = ["KEY", "existing_keys", "new_ids", "write_metadata"]

#: What identifies a point: object, time [us since 2000], band, data source, observation.
KEY = np.dtype([("o", "<i8"), ("t", "<i8"), ("p", "<i8"), ("d", "<i8"), ("b", "<i8")])
#: A row of the binary COPY of existing keys: field count, then (length, int8) x 5.
KEY_ROW = np.dtype([("nf", ">i2"), *[(k, [("l", ">i4"), ("v", ">i8")]) for k in "otpdb"]])


def existing_keys(cur: psycopg.Cursor, keys: np.ndarray) -> np.ndarray:
    """Keys already stored among the objects and time range of ``keys``."""
    sql = (
        "COPY (SELECT object_id::int8, (extract(epoch FROM dateobs - timestamptz"
        " '2000-01-01 00:00:00+00') * 1000000)::int8, coalesce(photosys_id, -1)::int8,"
        " coalesce(datasource_id, -1)::int8, coalesce(observation_id, -1)::int8"
        " FROM lightcurves WHERE object_id = ANY(%s) AND dateobs BETWEEN"
        " timestamptz '2000-01-01 00:00:00+00' + %s * interval '1 microsecond' AND"
        " timestamptz '2000-01-01 00:00:00+00' + %s * interval '1 microsecond')"
        " TO STDOUT (FORMAT BINARY)"
    )
    objects = sorted({int(o) for o in np.unique(keys["o"])})
    params = [objects, int(keys["t"].min()), int(keys["t"].max())]
    data = bytearray()
    with cur.copy(sql, params) as cp:
        for block in cp:
            data += block
    raw = np.frombuffer(bytes(data[19:-2]), KEY_ROW)  # without header (19 bytes), trailer (2)
    out = np.zeros(len(raw), KEY)
    for k in "otpdb":
        out[k] = raw[k]["v"]
    return out


def new_ids(cur: psycopg.Cursor, n: int) -> np.ndarray:
    """``n`` fresh ``lightcurves.id`` values (binary COPY out: no Python object per id)."""
    data = bytearray()
    with cur.copy(
        "COPY (SELECT nextval(pg_get_serial_sequence('lightcurves', 'id'))"
        " FROM generate_series(1, %s)) TO STDOUT (FORMAT BINARY)",
        [n],
    ) as cp:
        for block in cp:
            data += block
    row = np.dtype([("nf", ">i2"), ("l", ">i4"), ("v", ">i8")])
    return np.frombuffer(bytes(data[19:-2]), row)["v"].astype(np.int64)


def _comp_text(value) -> str | None:
    """A comparison-star list as 'a,b,c' (from 'a,b', 'a; b', '["a", "b"]' or an array)."""
    if isinstance(value, list | tuple | np.ndarray):
        return ",".join(str(v).strip() for v in value)
    text = str(value).strip()
    if text.startswith("["):
        try:
            return ",".join(str(v) for v in json.loads(text))
        except ValueError:
            pass
    return text.replace(";", ",")


def _texts(col) -> np.ndarray:
    values = np.ma.getdata(col)
    out = np.char.strip(np.asarray(values).astype(str)).astype(object) if len(values) else values
    out = np.asarray(out, dtype=object)
    out[np.ma.getmaskarray(col) | (out == "")] = None
    return out


def write_metadata(cur: psycopg.Cursor, ids: np.ndarray, meta: dict) -> None:
    """Per-point metadata into ``metadata_lc_json``: columns COPYed, the JSON built by the server.

    Numbers stay numbers, text stays text, ``comp_stars`` becomes a list of strings (as in
    the archive document); empty and non-finite values are left out.
    """
    cols = [Column("lightcurve_id", "int8", ids)]
    pairs = []
    for i, (key, col) in enumerate(meta.items()):
        name = f"m{i}"
        data = np.ma.getdata(col)
        if key != "comp_stars" and data.dtype.kind in "fiub" and np.ndim(data) == 1:
            cols.append(Column(name, "float8", data.astype(float), null=np.ma.getmaskarray(col)))
            pairs.append(f"'{key}', {name}")
            continue
        texts = _texts(col) if np.ndim(data) == 1 else np.array([_comp_text(v) for v in data])
        if key == "comp_stars":
            odd = np.flatnonzero([t is not None and ("[" in t or ";" in t) for t in texts])
            for j in odd:
                texts[j] = _comp_text(texts[j])
            pairs.append(
                f"'{key}', to_jsonb(array_remove(regexp_split_to_array({name}, '\\s*,\\s*'), ''))"
            )
        else:
            pairs.append(f"'{key}', {name}")
        cols.append(Column(name, "text", texts))
    defs = ", ".join(f"{c.name} {c.pgtype}" for c in cols)
    cur.execute(f"CREATE TEMP TABLE lc_meta ({defs}) ON COMMIT DROP")
    copy_columns(cur, "lc_meta", cols)
    cur.execute(
        "INSERT INTO metadata_lc_json (lightcurve_id, data) SELECT lightcurve_id, d FROM"
        f" (SELECT lightcurve_id, jsonb_strip_nulls(jsonb_build_object({', '.join(pairs)})) AS d"
        " FROM lc_meta) s WHERE d <> '{}'::jsonb ORDER BY lightcurve_id"
    )
    cur.execute("DROP TABLE lc_meta")
