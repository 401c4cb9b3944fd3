"""Binary COPY of every supported type, read back from PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from astropy.time import Time

from photdb.archive.obstime import pg_micros
from photdb.db import connect
from photdb.db.copy import Column, copy_columns


def test_every_type_round_trips(db_settings):
    rng = np.random.default_rng(4)
    n = 500
    mags = np.round(rng.uniform(-30, 30, n), 4)
    mags[::7] = np.nan
    micros = rng.integers(-(10**16), 10**16, n)
    texts = np.array([None if i % 5 == 0 else f"Jiří\t{i}\\ ' \" é" * (i % 3) for i in range(n)],
                     dtype=object)  # fmt: skip
    docs = np.array([None if i % 4 == 0 else f'{{"k": [{i}, "ř"]}}' for i in range(n)], object)
    with connect("writer", db_settings, autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE t (i int4, m numeric(12,4), ts timestamptz, s text, j jsonb)"
        )
        copy_columns(conn.cursor(), "t", [
            Column("i", "int4", np.arange(n)), Column("m", "numeric4", mags),
            Column("ts", "timestamptz", micros), Column("s", "text", texts),
            Column("j", "jsonb", docs),
        ])  # fmt: skip
        rows = conn.execute("SELECT i, m, ts, s, j FROM t ORDER BY i").fetchall()
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    for i, m, ts, s, j in rows:
        assert m == (None if np.isnan(mags[i]) else Decimal(f"{mags[i]:.4f}"))
        assert ts == epoch + timedelta(microseconds=int(micros[i]))
        assert s == texts[i]
        assert j == (None if docs[i] is None else {"k": [i, "ř"]})


def test_numeric4_refuses_what_the_column_cannot_hold():
    from photdb.db.copy import encode_binary_copy

    with pytest.raises(ValueError, match="numeric4"):
        encode_binary_copy([Column("m", "numeric4", np.array([1e8]))])


@pytest.mark.filterwarnings("ignore:ERFA function")  # 1969 is before the leap-second table
def test_pg_micros_matches_datetime_and_handles_leap_seconds():
    t = Time(["1969-07-20T20:17:40", "2000-01-01T00:00:00", "2021-10-22T20:13:42.123456",
              "1900-01-01T00:00:00", "2016-12-31T23:59:60.25"], scale="utc")  # fmt: skip
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    expect = [t[i].to_datetime(timezone=UTC) - epoch for i in range(4)]
    assert pg_micros(t)[:4].tolist() == [e // timedelta(microseconds=1) for e in expect]
    # PostgreSQL reads 23:59:60.25 as the next day's 00:00:00.25
    assert pg_micros(t)[4] == (datetime(2017, 1, 1, 0, 0, 0, 250000, tzinfo=UTC) - epoch) // \
        timedelta(microseconds=1)  # fmt: skip
