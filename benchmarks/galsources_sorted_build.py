#!/usr/bin/env python
"""Incremental index maintenance against building an exposure's indexes sorted, afterwards.

For each of ``--epochs`` forced epochs of ``galsources_scale``'s synthetic field, in
one run and on one throw-away cluster: (a) binary COPY into a fresh unindexed heap
(raw), (b) COPY into a fresh table, then ``ADD PRIMARY KEY`` and the q3c index
(what per-exposure partitions attached when built would cost), (c) COPY into one
growing table that already has both indexes (what photdb does). Prints the ratios
to raw; quoted in the README (the giant table).

Example::

    nice -n 5 python benchmarks/galsources_sorted_build.py --epochs 5
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from galsources_scale import Field, raw_stream  # noqa: E402

from photdb.db.embedded import ensure_embedded  # noqa: E402
from photdb.db.server import EmbeddedServer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run and print one line of results."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--stars", type=float, default=2.5e5)
    a = p.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="photdb-sorted-"))
    srv = EmbeddedServer(home, fast=False)
    try:
        ensure_embedded(srv, "bench")
        conn = psycopg.connect(**srv.superuser_conninfo("bench"), autocommit=True)
        field = Field(int(a.stars), 4, 1)
        field.ref_ids[:] = np.arange(field.n) + 1

        def copy(table: str, data: bytes, names: list[str]) -> None:
            cols = ", ".join(names)
            with conn.cursor().copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(data)

        conn.execute("CREATE TABLE inc (LIKE galsources INCLUDING ALL)")
        raw = built = inc = 0.0
        for e in range(1, a.epochs + 1):
            data, names = raw_stream(field.images(e), field.ref_ids, id0=e * 10**7)
            t0 = time.perf_counter()
            with conn.transaction():
                conn.execute("CREATE TABLE raw (LIKE galsources)")
                copy("raw", data, names)
            t1 = time.perf_counter()
            with conn.transaction():
                conn.execute(f"CREATE TABLE p{e} (LIKE galsources)")
                copy(f"p{e}", data, names)
                conn.execute(f"ALTER TABLE p{e} ADD PRIMARY KEY (id)")
                conn.execute(f"CREATE INDEX ON p{e} (q3c_ang2ipix(ra, dec))")
            t2 = time.perf_counter()
            with conn.transaction():
                copy("inc", data, names)
            t3 = time.perf_counter()
            conn.execute("DROP TABLE raw")
            raw, built, inc = raw + t1 - t0, built + t2 - t1, inc + t3 - t2
        conn.close()
        print(f"{a.epochs} epochs: raw COPY {raw:.2f} s; COPY + sorted index build {built:.2f} s"
              f" (x raw {raw / built:.2f}); COPY into the indexed table {inc:.2f} s"
              f" (x raw {raw / inc:.2f})")  # fmt: skip
    finally:
        srv.destroy()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
