"""Light-curve and object loading: points/s and peak memory, at 10^5 and 10^6 rows.

Starts a throw-away embedded cluster (fsync on unless ``--no-fsync``) in a
temporary ``$PHOTDB_HOME``, writes synthetic files, and runs each load in a
fresh subprocess (``photdb lightcurves load`` / ``objects load`` through the
library, as the CLI does), so that its peak resident memory (``VmHWM`` of
``/proc/self/status``: ``ru_maxrss`` would include the parent's memory at fork)
is its own. For each size it reports:

* light curves, CSV and ECSV: first load (points/s), reload (every point
  present, nothing added), and peak memory; the same file with per-point
  metadata (``comp_stars``, ``num_comp``, ``airmass``) is measured too;
* objects (Gaia id, position, a VSX name on 1 %): first load and reload.

Memory is "flat" when the peak at 10^6 rows is close to the peak at 10^5: the
files are streamed in chunks of 2x10^5 rows.

    python benchmarks/load_speed.py                  # 1e5 and 1e6 rows
    python benchmarks/load_speed.py --rows 1e5 --no-fsync
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
_PEAK = r"""
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""
_CHILD = (
    _PEAK
    + r"""
import json, sys, time
from photdb.db import connect
from photdb.settings import load_settings
kind, path = sys.argv[1], sys.argv[2]
settings = load_settings()
with connect("writer", settings) as conn:
    t = time.perf_counter()
    if kind == "lc":
        from photdb.archive.lightcurves import load_lightcurve_file
        rep = load_lightcurve_file(conn, path, datasource="bench", band="V")
        out = {"inserted": rep.inserted, "present": rep.present, "refused": rep.skipped}
    else:
        from photdb.archive.catalogues import load_objects, read_object_table
        rep = load_objects(conn, read_object_table(path))
        out = {"inserted": rep.inserted, "unchanged": rep.unchanged, "refused": rep.skipped}
    out["seconds"] = time.perf_counter() - t
out["peak_mb"] = peak_mb()
print(json.dumps(out))
"""
)
_BASE = (
    _PEAK
    + r"""
import json
import photdb.archive.lightcurves, photdb.archive.catalogues, photdb.db  # noqa
print(json.dumps({"peak_mb": peak_mb()}))
"""
)


def _run(code: str, *args: str, env: dict) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False
    )
    if res.returncode != 0:
        raise SystemExit(f"benchmark child failed: {res.stderr.strip().splitlines()[-1:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _objects_file(path: Path, n: int, seed: int = 1) -> Path:
    from astropy.table import Table

    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    gaia = np.array([str(4_000_000_000_000_000 + i) for i in range(n)])
    vsx = np.full(n, "", dtype=object)
    pick = rng.choice(n, max(1, n // 100), replace=False)
    vsx[pick] = [f"V{i:07d} Bench" for i in range(pick.size)]
    Table({"source_id": gaia, "ra": ra, "dec": dec, "vsx_name": vsx.astype(str)}).write(
        path, overwrite=True
    )
    return path


def _lc_file(path: Path, n: int, *, meta: bool, seed: int = 2) -> Path:
    from astropy.table import Table

    rng = np.random.default_rng(seed)
    stars = 100
    obj = np.repeat([f"V{i:07d} Bench" for i in range(stars)], -(-n // stars))[:n]
    jd = 2459000.5 + np.tile(np.arange(-(-n // stars)), stars)[:n] * 0.001
    cols = {"jd": jd, "mag": 12 + 0.1 * rng.standard_normal(n),
            "mag_err": np.abs(0.01 + 0.002 * rng.standard_normal(n)), "object": obj}  # fmt: skip
    if meta:
        cols["comp_stars"] = np.array(["4000000000000000001,4000000000000000002"] * n)
        cols["num_comp"] = np.full(n, 2)
        cols["airmass"] = np.round(1 + rng.random(n), 3)
    t = Table(cols)
    if path.suffix == ".csv":
        t.write(path, format="ascii.csv", overwrite=True)
    else:
        t.write(path, overwrite=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1e5,1e6", help="comma-separated sizes (default 1e5,1e6)")
    ap.add_argument("--no-fsync", action="store_true", help="fsync off in the scratch cluster")
    ap.add_argument("--keep", action="store_true", help="keep the scratch cluster and files")
    ap.add_argument("--json", default=str(HERE / "results" / "load_speed.json"))
    args = ap.parse_args()
    sizes = [int(float(x)) for x in args.rows.split(",")]

    from photdb.db.connection import resolve
    from photdb.db.server import EmbeddedServer
    from photdb.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="photdb-load-"))
    os.chmod(tmp, 0o711)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    env.update(PHOTDB_HOME=str(tmp / "home"), PHOTDB_ENV_FILE=str(tmp / "none.env"))
    if args.no_fsync:
        env["PHOTDB_NO_FSYNC"] = "1"
    os.environ.update({k: env[k] for k in ("PHOTDB_HOME", "PHOTDB_ENV_FILE")})
    if args.no_fsync:
        os.environ["PHOTDB_NO_FSYNC"] = "1"
    results: dict = {"sizes": sizes, "fsync": not args.no_fsync, "runs": []}
    try:
        t = time.perf_counter()
        resolve(load_settings())
        print(f"scratch cluster created in {time.perf_counter() - t:.1f} s ({tmp})")
        base = _run(_BASE, env=env)["peak_mb"]
        results["baseline_peak_mb"] = base
        print(f"baseline (imports only): peak {base:.0f} MB")
        print(f"{'what':34s} {'rows':>9s} {'s':>7s} {'rows/s':>9s} {'peak MB':>8s}  result")
        for n in sizes:
            objs = _objects_file(tmp / f"objects_{n}.ecsv", n)
            for label in ("objects load", "objects reload"):
                r = _run(_CHILD, "obj", str(objs), env=env)
                _show(results, label, n, r)
            for suffix, meta in ((".csv", False), (".ecsv", False), (".csv", True)):
                path = _lc_file(tmp / f"lc_{n}_{int(meta)}{suffix}", n, meta=meta)
                what = f"lightcurves {suffix[1:]}{' +meta' if meta else ''}"
                r = _run(_CHILD, "lc", str(path), env=env)
                _show(results, what + " load", n, r)
                r = _run(_CHILD, "lc", str(path), env=env)
                _show(results, what + " reload", n, r)
                with _connect() as conn:  # next variant starts from an empty table
                    conn.execute("DELETE FROM metadata_lc_json")
                    conn.execute("DELETE FROM lightcurves")
            with _connect() as conn:
                conn.execute("DELETE FROM objects")
    finally:
        if not args.keep:
            EmbeddedServer(tmp / "home").destroy()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.json}")


def _connect():
    from photdb.db import connect

    return connect("admin", autocommit=True)


def _show(results: dict, what: str, n: int, r: dict) -> None:
    rate = n / r["seconds"] if r["seconds"] > 0 else float("inf")
    rest = {k: v for k, v in r.items() if k not in ("seconds", "peak_mb")}
    print(f"{what:34s} {n:9d} {r['seconds']:7.2f} {rate:9.0f} {r['peak_mb']:8.0f}  {rest}",
          flush=True)  # fmt: skip
    results["runs"].append({"what": what, "rows": n, "rows_per_s": rate, **r})


if __name__ == "__main__":
    main()
