#!/usr/bin/env python
"""Load on the web service while the pipeline writes: 20 clients, loopback only, bounded.

A throw-away embedded cluster gets a small simulated survey (two filters) of which
filter g is processed, plus synthetic ``galsources`` rows (DECam-like density around
the field, one COPY per "exposure" in sky order as the pipeline writes them) to reach
``--rows`` (default 10^6). Then, at the same time:

* ``photdb serve`` (uvicorn, ``--workers``) on 127.0.0.1;
* ``photdb ingest`` of a second simulated survey's files and ``photdb process -f r_decam``
  (filter r's references and search images), each a separate process;
* ``--clients`` concurrent clients (asyncio + httpx, one process) asking, in turn,
  for the light-curve page of a candidate (``/lightcurve?refsource=``) and for a 1′ cone
  (``/scs/galsources?RA=&DEC=&SR=0.01667&VERB=1``) around random field positions,
  each next request sent as soon as the last is answered, or after a random pause of
  ``--think`` seconds on average,

for ``--seconds`` (bounded) or until the writers finish, whichever is later but at
most twice ``--seconds``. Printed: p50/p90/p99 per request kind, errors, requests
served, whether the ingest and the process finished, and the lock waits seen in
``pg_stat_activity`` (sampled every 0.2 s). Loopback only: nothing leaves the machine.

Examples
--------
    nice -n 5 .venv/bin/python benchmarks/web_load.py
    nice -n 5 .venv/bin/python benchmarks/web_load.py --json benchmarks/results/web_load_1e6.json
    nice -n 5 .venv/bin/python benchmarks/web_load.py --think 0.2 --writer-nice 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(home: Path, rows: float) -> tuple[list[int], tuple[float, float, float]]:
    """Survey, filter g processed, synthetic rows; return (candidate ids, field ra/dec/size)."""
    from photdb.db import connect
    from photdb.db.copy import Column, copy_columns, sky_order
    from photdb.pipeline import PipelineConfig
    from photdb.settings import load_settings
    from photdb.sim import SimConfig
    from photdb.survey.process import process
    from photdb.survey.simulated import load_survey, make_survey

    settings = load_settings()
    survey = make_survey(home / "simA", SimConfig(nx=384, ny=192, n_chips=1, filters=("g", "r"),
                                                  n_epochs=3, n_references=1, seed=5))  # fmt: skip
    load_survey(settings, survey)
    log("processing filter g_decam (the data the clients read)")
    rep = process(settings, filter="g_decam", jobs=2,
                  config=PipelineConfig(astrometric_catalog=str(survey.catalog)))  # fmt: skip
    log(f"  {len(rep.done)} images, {rep.seconds:.0f} s")
    with connect("admin", settings) as conn:
        ra0, dec0, n0 = conn.execute(
            "SELECT avg(ra), avg(dec), count(*) FROM galsources").fetchone()  # fmt: skip
        images = [r[0] for r in conn.execute("SELECT id FROM galimages WHERE status = 'done'")]
        cands = [r[0] for r in conn.execute(
            "SELECT refsource_id FROM galvarobjs GROUP BY 1 ORDER BY count(*) DESC LIMIT 50"
        )]  # fmt: skip
        if not cands:
            cands = [r[0] for r in conn.execute(
                "SELECT id FROM galsources WHERE ref_id IS NULL LIMIT 50")]  # fmt: skip
    need = int(float(rows)) - int(n0)
    size = 1.0  # deg: a DECam-like 1 deg² around the field, ~2e5 stars per "exposure"
    rng = np.random.default_rng(1)
    per = 200_000
    log(f"adding {need} synthetic galsources rows ({per} per exposure, sky order)")
    t0 = time.perf_counter()
    with connect("admin", settings) as conn, conn.cursor() as cur:
        stars_ra = ra0 + rng.uniform(-size / 2, size / 2, per)
        stars_dec = dec0 + rng.uniform(-size / 2, size / 2, per)
        done = 0
        while done < need:
            n = min(per, need - done)
            ra = stars_ra[:n] + rng.normal(0, 2e-5, n)
            dec = stars_dec[:n] + rng.normal(0, 2e-5, n)
            o = sky_order(ra, dec)
            ids = np.arange(n, dtype=np.int64)
            (start,) = cur.execute("SELECT nextval('galsources_id_seq')").fetchone()
            cur.execute("SELECT setval('galsources_id_seq', %s)", [start + n])
            copy_columns(cur, "galsources", [
                Column("id", "int8", start + 1 + ids),
                Column("galimage_id", "int4", np.full(n, images[done // per % len(images)])),
                Column("ra", "float8", ra[o]), Column("dec", "float8", dec[o]),
                Column("mag", "float4", rng.uniform(16, 23, n).astype(np.float32)),
                Column("magerr", "float4", np.full(n, 0.02, np.float32)),
            ])  # fmt: skip
            conn.commit()
            done += n
        cur.execute("ANALYZE galsources")
        conn.commit()
        total = conn.execute("SELECT count(*) FROM galsources").fetchone()[0]
    log(f"  {total} rows in galsources ({time.perf_counter() - t0:.0f} s)")
    return [int(c) for c in cands], (float(ra0), float(dec0), size)


async def clients(
    base: str, n: int, seconds: float, cands, field, stop_when, think: float = 0.0
) -> dict:
    import httpx

    lat: dict[str, list[float]] = {"lightcurve page": [], "1' cone (SCS)": []}
    errors: list[str] = []
    t_end = time.monotonic() + seconds
    hard_end = time.monotonic() + 2 * seconds

    async def one(k: int) -> None:
        rnd = random.Random(k)
        async with httpx.AsyncClient(timeout=30) as client:
            i = k
            while True:
                now = time.monotonic()
                if now > hard_end or (now > t_end and stop_when()):
                    return
                i += 1
                if i % 2:
                    kind = "lightcurve page"
                    url = f"{base}/lightcurve?refsource={rnd.choice(cands)}"
                else:
                    ra = field[0] + rnd.uniform(-0.4, 0.4) * field[2]
                    dec = field[1] + rnd.uniform(-0.4, 0.4) * field[2]
                    kind = "1' cone (SCS)"
                    url = f"{base}/scs/galsources?RA={ra}&DEC={dec}&SR={1 / 60}&VERB=1"
                t0 = time.perf_counter()
                try:
                    r = await client.get(url)
                    ms = (time.perf_counter() - t0) * 1e3
                    if r.status_code != 200:
                        errors.append(f"{kind}: HTTP {r.status_code}")
                    else:
                        lat[kind].append(ms)
                except httpx.HTTPError as exc:
                    errors.append(f"{kind}: {type(exc).__name__}")
                if think > 0:  # a person or a script between requests: exponential pauses
                    await asyncio.sleep(rnd.expovariate(1.0 / think))

    await asyncio.gather(*(one(k) for k in range(n)))
    return {"latencies": lat, "errors": errors}


def baseline(base: str, cands, field, n: int) -> dict[str, list[float]]:
    """One client, requests one after the other, no writers: the service time."""
    import httpx

    rnd = random.Random(0)
    lat: dict[str, list[float]] = {"lightcurve page": [], "1' cone (SCS)": []}
    with httpx.Client(timeout=30) as client:
        for i in range(2 * n):
            if i % 2:
                kind, url = "lightcurve page", f"{base}/lightcurve?refsource={rnd.choice(cands)}"
            else:
                ra = field[0] + rnd.uniform(-0.4, 0.4) * field[2]
                dec = field[1] + rnd.uniform(-0.4, 0.4) * field[2]
                kind = "1' cone (SCS)"
                url = f"{base}/scs/galsources?RA={ra}&DEC={dec}&SR={1 / 60}&VERB=1"
            t0 = time.perf_counter()
            if client.get(url).status_code == 200:
                lat[kind].append((time.perf_counter() - t0) * 1e3)
    return lat


def _children_cpu() -> float:
    """CPU seconds of this process's children that have ended (and were waited for)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cpu_seconds(server: subprocess.Popen) -> dict[str, float]:
    """CPU seconds (user + system) so far: the clients (this process), the web server's
    processes, and the whole machine (the rest: PostgreSQL, the ingest and the process)."""
    import psutil

    def used(t) -> float:
        return t.user + t.system

    srv = psutil.Process(server.pid)
    machine = psutil.cpu_times()
    return {
        "children": _children_cpu(),
        "clients": used(psutil.Process().cpu_times()),
        "web_server": sum(used(p.cpu_times()) for p in [srv, *srv.children(recursive=True)]),
        "machine": machine.user + machine.nice + machine.system,
    }


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=float, default=1e6)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--baseline", type=int, default=40, help="requests of each kind alone")
    ap.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="mean pause (s) of each client between requests; 0: none (closed loop)",
    )
    ap.add_argument(
        "--writer-nice",
        type=int,
        default=0,
        help="run the ingest and the process at this much lower CPU priority",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="photdb-webload-"))
    os.chmod(home, 0o711)
    os.environ["PHOTDB_HOME"] = str(home)
    os.environ.pop("DB_HOST", None)
    os.environ["PHOTDB_ENV_FILE"] = str(home / "none.env")
    from photdb.db.server import EmbeddedServer

    procs: list[subprocess.Popen] = []
    try:
        cands, field = prepare(home, args.rows)
        from photdb.sim import SimConfig, simulate_survey

        simulate_survey(home / "simB", SimConfig(nx=384, ny=192, n_chips=1, filters=("g",),
                                                 n_epochs=6, n_references=1, seed=6))  # fmt: skip
        port = _port()
        base = f"http://127.0.0.1:{port}"
        photdb = [sys.executable, "-m", "photdb"]
        writer = ["nice", "-n", str(args.writer_nice), *photdb] if args.writer_nice else photdb
        procs.append(subprocess.Popen([*photdb, "serve", "--port", str(port), "--workers",
                                       str(args.workers)], stdout=subprocess.DEVNULL))  # fmt: skip
        import httpx

        for _ in range(200):
            try:
                if httpx.get(base + "/tap/availability", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        for c in cands[:5]:  # warm both workers' pools and caches
            httpx.get(f"{base}/lightcurve?refsource={c}", timeout=30)
        base_lat = baseline(base, cands, field, args.baseline)
        log(
            f"server up on {base}; one client alone: "
            + ", ".join(f"{k} p50 {pct(v, 50):.0f} ms" for k, v in base_lat.items())
        )
        log(f"starting ingest + process and {args.clients} clients")
        ingest = subprocess.Popen([*writer, "ingest", str(home / "simB")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        proc = subprocess.Popen([*writer, "process", "-f", "r_decam", "-j", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        procs += [ingest, proc]
        waits, t0 = [], time.monotonic()
        cpu0 = cpu_seconds(procs[0])

        def writers_done() -> bool:
            return ingest.poll() is not None and proc.poll() is not None

        async def run():
            import psycopg

            from photdb.db import connect
            from photdb.settings import load_settings

            task = asyncio.create_task(clients(base, args.clients, args.seconds, cands, field,
                                               writers_done, args.think))  # fmt: skip
            with connect("admin", load_settings(), autocommit=True) as conn:
                while not task.done():
                    try:
                        n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE"
                                         " wait_event_type = 'Lock'").fetchone()[0]  # fmt: skip
                        waits.append(n)
                    except psycopg.Error:
                        pass
                    await asyncio.sleep(0.2)
            return await task

        out = asyncio.run(run())
        elapsed = time.monotonic() - t0
        cpu = {k: round(v - cpu0[k], 1) for k, v in cpu_seconds(procs[0]).items()}
        ingest_rc, proc_rc = ingest.wait(600), proc.wait(1200)
        # the ingest and the process are this process's only children reaped in between
        cpu["ingest_and_process"] = round(_children_cpu() - cpu0["children"], 1)
        cpu.pop("children", None)
        cpu["postgres_and_rest"] = round(
            cpu["machine"] - cpu["clients"] - cpu["web_server"] - cpu["ingest_and_process"], 1
        )
        result = {
            "rows": args.rows, "clients": args.clients, "workers": args.workers,
            "think_s": args.think, "writer_nice": args.writer_nice,
            "seconds": round(elapsed, 1), "ingest_rc": ingest_rc, "process_rc": proc_rc,
            "lock_wait_samples_max": max(waits or [0]), "lock_wait_samples": len(waits),
            "errors": len(out["errors"]), "error_kinds": sorted(set(out["errors"]))[:5],
            "load_average": os.getloadavg(),
            # CPU seconds used during the loaded phase, of the machine's cores x seconds
            "cpu_s": cpu, "core_s": round(elapsed * (os.cpu_count() or 1), 1),
        }  # fmt: skip
        for kind, ms in base_lat.items():
            result[f"{kind}, one client, no writers"] = {
                "n": len(ms),
                "p50_ms": round(pct(ms, 50), 1),
                "p99_ms": round(pct(ms, 99), 1),
            }
        served = sum(len(ms) for ms in out["latencies"].values())
        result["requests_per_s"] = round(served / elapsed, 1)
        for kind, ms in out["latencies"].items():
            result[kind] = {"n": len(ms), "p50_ms": round(pct(ms, 50), 1),
                            "p90_ms": round(pct(ms, 90), 1), "p99_ms": round(pct(ms, 99), 1),
                            "mean_ms": round(statistics.fmean(ms), 1) if ms else None}  # fmt: skip
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1) + "\n")
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        EmbeddedServer(home).destroy()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
