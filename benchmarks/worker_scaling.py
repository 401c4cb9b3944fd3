"""Search images per second with 1 and 2 Dask workers, and peak memory per worker per chip.

Simulates one reference and ``--epochs`` search exposures of one chip, ingests
them into a throw-away embedded cluster, processes the reference once, then for
each worker count processes the same search images again (reset between runs)
on a fresh local Dask cluster of N worker processes, as ``photdb process -j N``
starts it (one thread and one BLAS thread per worker). Throughput is images over the span
from the first claim to the last finished claim (``galclaims``, database
clock: cluster start-up excluded); the wall time including start-up is
printed too. Memory: test hooks record each worker's RSS when it claims an
image (then reset its peak) and its peak RSS once the image is computed and
COPYed (Linux ``/proc/self/status``); per chip = peak - RSS before the image.

    nice -n 5 python benchmarks/worker_scaling.py [--nx 512 --ny 256 --epochs 6]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class RssProbe:
    """``Hooks`` callables run on the workers: append ``pid stage kB`` to a file.

    ``claim`` (before the image is computed): the current RSS, then the peak is
    reset (``/proc/self/clear_refs``); ``copy`` (the image computed and
    COPYed): the peak RSS since then.
    """

    def __init__(self, path: str, stage: str):
        self.path, self.stage = path, stage

    def __call__(self, galimage_id: int) -> None:
        if self.stage == "claim":
            kb = _status_kb("VmRSS")
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM, the peak RSS
        else:
            kb = _status_kb("VmHWM")
        with open(self.path, "a") as f:
            f.write(f"{os.getpid()} {self.stage} {kb}\n")


@contextlib.contextmanager
def _cluster(n: int):
    """A local cluster like ``photdb process -j N`` starts (one thread, one BLAS thread each)."""
    import dask
    from distributed import LocalCluster

    from photdb.survey.engine import BLAS_ENV

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {})) | BLAS_ENV
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": env}),
        LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=":0") as cluster,
    ):
        yield cluster.scheduler_address


def _reset(settings, ids: list[int]) -> None:
    """The search images back to 'new': their rows gone, the running statistics rebuilt."""
    from photdb.db import connect
    from photdb.survey.refstats import rebuild

    with connect("writer", settings) as conn, conn.transaction():
        for table in ("galvarobjs", "galsources", "galclaims"):
            conn.execute(f"DELETE FROM {table} WHERE galimage_id = ANY(%s)", [ids])
        conn.execute(
            "UPDATE galimages SET status = 'new', failure = NULL, processed_at = NULL"
            " WHERE id = ANY(%s)",
            [ids],
        )
        rebuild(conn)  # galrefstats holds the deleted points' sums otherwise


def _span(settings, ids: list[int]) -> float:
    from photdb.db import connect

    with connect("readonly", settings) as conn:
        (span,) = conn.execute(
            "SELECT extract(epoch FROM max(finished_at) - min(claimed_at)) FROM galclaims"
            " WHERE galimage_id = ANY(%s) AND outcome = 'done'",
            [ids],
        ).fetchone()
    return float(span)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nx", type=int, default=512)
    ap.add_argument("--ny", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", type=Path, help="Also write the numbers here.")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows in a log file too

    tmp = Path(tempfile.mkdtemp(prefix="photdb-scaling-"))
    os.environ["PHOTDB_HOME"] = str(tmp / "home")
    os.environ.pop("DB_HOST", None)
    from photdb.db import connect
    from photdb.db.connection import resolve
    from photdb.db.server import EmbeddedServer
    from photdb.pipeline import load_config
    from photdb.settings import load_settings
    from photdb.sim import SimConfig
    from photdb.survey.process import Hooks, process
    from photdb.survey.simulated import load_survey, make_survey

    sim = SimConfig(nx=args.nx, ny=args.ny, n_chips=1, filters=("r",), n_epochs=args.epochs,
                    n_references=1, seed=5)  # fmt: skip
    t = time.perf_counter()
    survey = make_survey(tmp / "sim", sim)
    print(f"simulated {args.nx}x{args.ny} chip, {args.epochs} search epochs, "
          f"{len(survey.truth.stars)} stars ({time.perf_counter() - t:.1f} s)")  # fmt: skip
    settings = resolve(load_settings())
    results = {"nx": args.nx, "ny": args.ny, "epochs": args.epochs, "runs": []}
    try:
        load_survey(settings, survey)
        cfg = load_config(astrometric_catalog=survey.catalog)
        ref = process(settings, jobs=1, config=cfg)  # the reference, and warm file caches
        assert not ref.failed, [o.message for o in ref.failed]
        with connect("readonly", settings) as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT i.id FROM galimages i JOIN galexposures e ON e.id = i.galexposure_id"
                " WHERE NOT e.is_reference").fetchall()]  # fmt: skip
            n_src = conn.execute("SELECT avg(n_saved) FROM galimages WHERE id = ANY(%s)",
                                 [ids]).fetchone()[0]  # fmt: skip
        print(f"{len(ids)} search images of ~{float(n_src):.0f} sources each\n")
        base_rate = None
        for k, n in enumerate(args.workers):
            _reset(settings, ids)
            rss = tmp / f"rss_{k}.txt"
            hooks = Hooks(after_claim=RssProbe(str(rss), "claim"),
                          after_copy=RssProbe(str(rss), "copy"))  # fmt: skip
            load0 = os.getloadavg()[0]
            t = time.perf_counter()
            with _cluster(n) as address:  # fresh worker processes, as -j N starts them
                rep = process(settings, scheduler=address, config=cfg, hooks=hooks)
            wall = time.perf_counter() - t
            load1 = os.getloadavg()[0]
            assert len(rep.done) == len(ids), [o.message for o in rep.failed]
            span = _span(settings, ids)
            rate = len(ids) / span
            base_rate = base_rate or rate
            per_pid: dict[str, dict[str, list[int]]] = {}
            for line in rss.read_text().split("\n"):
                if line:
                    pid, stage, kb = line.split()
                    per_pid.setdefault(pid, {}).setdefault(stage, []).append(int(kb))
            peaks = [max(v["copy"]) / 1024 for v in per_pid.values() if "copy" in v]
            chip = [max(p - c for c, p in zip(v["claim"], v["copy"], strict=False)) / 1024
                    for v in per_pid.values() if "copy" in v]  # fmt: skip
            secs = sorted(o.seconds for o in rep.done)
            run = {"workers": n, "images": len(ids), "span_s": span, "wall_s": wall,
                   "images_per_s": rate, "speedup": rate / base_rate,
                   "median_image_s": secs[len(secs) // 2], "peak_rss_mb": peaks,
                   "per_chip_mb": chip, "load_before": load0, "load_after": load1}  # fmt: skip
            results["runs"].append(run)
            print(f"{n} worker(s): {len(ids)} images in {span:.1f} s ({rate:.3f} images/s, "
                  f"x{rate / base_rate:.2f} vs {args.workers[0]}), wall {wall:.1f} s with "
                  f"cluster start-up, median {run['median_image_s']:.1f} s per image; "
                  f"peak RSS per worker {', '.join(f'{p:.0f}' for p in peaks)} MB, "
                  f"of which one chip adds at most {', '.join(f'{c:.0f}' for c in chip)} MB; "
                  f"load average {load0:.1f} -> {load1:.1f} on {os.cpu_count()} cores")  # fmt: skip
    finally:
        EmbeddedServer(settings.home).destroy()  # a scratch cluster: remove it
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
