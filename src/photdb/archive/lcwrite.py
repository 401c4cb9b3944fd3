"""Writing light-curve points: which are already stored, ids, per-point metadata (SQL).

Helpers of :mod:`photdb.archive.lightcurves`.
"""

from __future__ import annotations

import json
import math

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
    rows = cur.execute(
        "SELECT nextval(pg_get_serial_sequence('lightcurves', 'id')) FROM generate_series(1, %s)",
        [n],
    ).fetchall()
    return np.array([r[0] for r in rows], np.int64)


def _json_value(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _comp_list(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v).strip() for v in value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            return [str(v) for v in json.loads(text)]
        except ValueError:
            pass
    return [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]


def write_metadata(cur: psycopg.Cursor, ids: np.ndarray, meta: dict) -> None:
    columns = {}
    for key, col in meta.items():
        mask = np.ma.getmaskarray(col)
        values = np.ma.getdata(col).tolist()
        columns[key] = [None if m else _json_value(v) for v, m in zip(values, mask, strict=True)]
    docs = []
    for i in range(len(ids)):
        data = {k: v[i] for k, v in columns.items() if v[i] is not None and v[i] != ""}
        if "comp_stars" in data:
            data["comp_stars"] = _comp_list(data["comp_stars"])
        docs.append(json.dumps(data) if data else None)
    has = np.array([d is not None for d in docs], bool)
    if has.any():
        copy_columns(
            cur,
            "metadata_lc_json",
            [
                Column("lightcurve_id", "int8", ids[has]),
                Column("data", "jsonb", np.array(docs, dtype=object)[has]),
            ],
        )
