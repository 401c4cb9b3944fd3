"""Seconds per chip and per 10^4 sources, by stage, against crowdsource's forced fit time.

Simulates one reference and one search exposure of a single chip, runs
``reduce_reference`` and ``reduce_search`` with each calibration detector (stage
timings from the pipeline), times crowdsource's ``fit_im_force`` alone on the same
prepared chip at the same positions (and ``fit_im`` with ``--crowdsource-alone``),
and times the database side: binary COPY of the catalogue (numpy encoder vs
psycopg ``write_row``) into ``galsources`` of a scratch embedded database.

    python benchmarks/pipeline_speed.py --nx 2048 --ny 1024 [--copy-rows 1000000]
    python benchmarks/pipeline_speed.py --nx 1024 --ny 512 --copy-rows 0 --detectors fast
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nx", type=int, default=1024)
    ap.add_argument("--ny", type=int, default=512)
    ap.add_argument("--copy-rows", type=int, default=500_000, help="0: skip the database")
    ap.add_argument(
        "--detectors",
        default="fast,crowdsource",
        help="search images' calibration detectors to time, comma-separated",
    )
    ap.add_argument(
        "--crowdsource-alone", action="store_true", help="also time fit_im alone (slow)"
    )
    args = ap.parse_args()

    from photdb.photometry import measure_forced, measure_sources
    from photdb.pipeline import (
        PipelineConfig,
        prepare_image,
        read_chip,
        reduce_reference,
        reduce_search,
    )
    from photdb.sim import SimConfig, simulate_survey

    tmp = Path(tempfile.mkdtemp(prefix="photdb-speed-"))
    cfg = SimConfig(
        nx=args.nx, ny=args.ny, n_chips=1, filters=("r",), n_epochs=1, n_references=1, seed=3
    )
    t = time.perf_counter()
    truth = simulate_survey(tmp / "sim", cfg)
    print(
        f"simulated {args.nx}x{args.ny} chip: {len(truth.stars)} stars "
        f"({time.perf_counter() - t:.1f} s)"
    )
    ep = truth.epochs
    ref_file = tmp / "sim" / ep["filename"][ep["is_reference"]][0]
    srch_file = tmp / "sim" / ep["filename"][~ep["is_reference"]][0]
    pc = PipelineConfig()

    t = time.perf_counter()
    ref_img = read_chip(ref_file, 1, config=pc)
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    ref = reduce_reference(ref_img, config=pc)
    t_ref = time.perf_counter() - t
    srch_img = read_chip(srch_file, 1, config=pc)
    n_ref = len(ref.catalog)
    searches = {}
    for name in args.detectors.split(","):
        cfg = dataclasses.replace(pc, detection=dataclasses.replace(pc.detection, detector=name))
        t = time.perf_counter()
        res = reduce_search(srch_img, ref.catalog, config=cfg)
        searches[name] = (time.perf_counter() - t, res)

    # crowdsource's forced fit alone on the same prepared chip, at the same positions,
    # with photdb's PSF stamp cache (the default) and without it (crowdsource as is)
    prep = prepare_image(srch_img, config=pc, calibration_only=True)
    x, y = np.asarray(res.catalog["x"]), np.asarray(res.catalog["y"])
    t_force = {}
    for cache in (True, False):
        phot = dataclasses.replace(pc.photometry, forced_cache_psf=cache)
        t = time.perf_counter()
        measure_forced(
            prep.data, x, y, variance=prep.variance, mask=prep.mask, psf=prep.psf, config=phot
        )
        t_force[cache] = time.perf_counter() - t
    n_forced = len(res.catalog)

    def show(name, total, timings, n):
        print(
            f"\n{name}: {total:.2f} s per chip, {1e4 * total / max(n, 1):.2f} s per 10^4 "
            f"sources ({n} sources)"
        )
        for k, v in timings.items():
            print(f"  {k:<18s} {v:8.3f} s  {1e4 * v / max(n, 1):8.3f} s/10^4")

    print(f"read chip (FITS + mask + variance): {t_read:.3f} s")
    show("reference (reduce_reference)", t_ref, ref.stats.timings_s, n_ref)
    for name, (t_srch, res) in searches.items():
        show(f"search (reduce_search, detector={name})", t_srch, res.stats.timings_s, n_forced)
        st = res.stats
        print(
            f"  astrometry rms {st.astrom_rms_arcsec:.4f} arcsec on {st.astrom_n_matched} "
            f"matches; zp {st.zp:.4f}, calibration rms {st.calib_residual_rms_mag:.4f} mag"
        )
    print(
        f"\ncrowdsource fit_im_force alone on the search chip: {t_force[True]:.2f} s with the "
        f"PSF stamp cache, {t_force[False]:.2f} s without (crowdsource as is)"
    )
    for name, (t_srch, _res) in searches.items():
        print(
            f"search ({name}) / forced fit alone = {t_srch / t_force[True]:.2f} "
            f"(/ uncached forced fit = {t_srch / t_force[False]:.2f})"
        )
    if args.crowdsource_alone:
        t = time.perf_counter()
        measure_sources(
            prep.data, variance=prep.variance, mask=prep.mask, fwhm_pix=prep.fwhm_pix,
            config=pc.photometry,
        )  # fmt: skip
        print(f"crowdsource fit_im alone on the search chip: {time.perf_counter() - t:.2f} s")
    if args.copy_rows <= 0:
        return

    # ---------------------------------------------------------------- database
    os.environ["PHOTDB_HOME"] = str(tmp / "home")
    os.environ.pop("DB_HOST", None)
    from photdb.db import connect
    from photdb.db.connection import resolve
    from photdb.settings import load_settings
    from photdb.survey import store

    settings = resolve(load_settings())
    reps = max(1, args.copy_rows // max(n_forced, 1))
    cat = res.catalog[np.asarray(res.catalog["flux"]) > 0]
    big = {
        c: np.tile(np.asarray(cat[c]), reps)
        for c in (
            "ra",
            "dec",
            "mag",
            "magerr",
            "magerr_raw",
            "flux",
            "dflux",
            "x",
            "y",
            "qf",
            "rchi2",
            "fracflux",
            "flags",
        )
    }
    rng = np.random.default_rng(0)
    big["ra"] = big["ra"] + rng.normal(0, 0.05, big["ra"].size)  # spread over a patch of sky
    big["dec"] = big["dec"] + rng.normal(0, 0.05, big["dec"].size)
    from astropy.table import Table

    tab = Table(big)
    n = len(tab)
    ref_ids = np.arange(1, n + 1, dtype=np.int64)
    with connect("writer", settings) as conn:
        for attempt in ("numpy", "write_row"):
            with conn.transaction(), conn.cursor() as cur:
                t = time.perf_counter()
                if attempt == "numpy":
                    store.write_sources(cur, 1, tab, ref_ids=ref_ids)
                else:
                    ids = store.allocate_source_ids(cur, n)
                    order = np.argsort(ids)
                    cols = list(store.GALSOURCE_COLUMNS)
                    arrays = {
                        "id": ids,
                        "galimage_id": np.full(n, 2),
                        "ref_id": ref_ids,
                        **{c: np.asarray(tab[c]) for c in big},
                    }
                    with cur.copy(
                        f"COPY galsources ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)"
                    ) as cp:
                        cp.set_types(list(store.GALSOURCE_COLUMNS.values()))
                        for row in zip(*(arrays[c][order].tolist() for c in cols), strict=True):
                            cp.write_row(row)
                dt = time.perf_counter() - t
            print(
                f"COPY {n} rows ({attempt}, galsources with its indexes): "
                f"{n / dt:,.0f} rows/s ({dt:.2f} s)"
            )
        t = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            store.allocate_source_ids(cur, 100_000)
        print(f"id pre-allocation: {1e5 / (time.perf_counter() - t):,.0f} ids/s")
    from photdb.db.server import EmbeddedServer

    EmbeddedServer(settings.home).destroy()  # a scratch cluster: remove it


if __name__ == "__main__":
    main()
