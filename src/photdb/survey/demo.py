"""``photdb demo``: the whole crowded-field pipeline on a small simulated survey.

Simulates two filters x two chips (3 references and a few search epochs per
filter), ingests the files into the configured database (the embedded one by
default), marks the references, processes everything in parallel, prints the
notebook's repeated-detections table and the worst variables, and plots the
light curve of the top candidate. Running it again reuses what is there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DEMO_SIM", "DemoResult", "plot_lightcurve", "run_demo"]


def _demo_sim():
    from photdb.sim import SimConfig

    # 384 x 192 pixel chips (~1100 stars each): the demo's 28 chip reductions
    # (2 filters x 2 chips x (3 references + 4 epochs)) take ~3 minutes on two cores.
    return SimConfig(nx=384, ny=192, n_chips=2, filters=("g", "r"), n_epochs=4,
                     n_references=3, seed=2021)  # fmt: skip


DEMO_SIM = _demo_sim


@dataclass(frozen=True)
class DemoResult:
    """What the demo made."""

    outdir: Path
    plot: Path | None
    top_refsource_id: int | None
    n_images: int
    seconds: float


def plot_lightcurve(lc, path: Path, *, title: str = "") -> Path:
    """PNG of a light curve Table (``mjd, filter, mag, magerr, is_reference``), per filter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for band in sorted(set(lc["filter"])):
        sel = lc["filter"] == band
        ref = sel & np.asarray(lc["is_reference"], bool)
        obs = sel & ~np.asarray(lc["is_reference"], bool)
        line = ax.errorbar(lc["mjd"][obs], lc["mag"][obs], yerr=lc["magerr"][obs], fmt="o",
                           label=band, capsize=2)  # fmt: skip
        if ref.any():
            ax.errorbar(lc["mjd"][ref], lc["mag"][ref], yerr=lc["magerr"][ref], fmt="s",
                        mfc="none", color=line[0].get_color(),
                        label=f"{band} reference")  # fmt: skip
    ax.invert_yaxis()
    ax.set_xlabel("MJD (UTC, mid-exposure)")
    ax.set_ylabel("mag")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_demo(outdir: str | Path = "photdb-demo", *, jobs: int = 2, settings=None,
             console=None, sim_config=None) -> DemoResult:  # fmt: skip
    """Run the demo; print progress and tables to ``console`` (rich) if given."""
    from rich.console import Console

    from photdb.archive.ingest import ingest_paths
    from photdb.cli.pipeline import candidates_table, repeat_table
    from photdb.db import connect
    from photdb.db.connection import resolve
    from photdb.pipeline import PipelineConfig
    from photdb.sim import SimTruth, simulate_survey
    from photdb.survey import store
    from photdb.survey.process import process
    from photdb.survey.references import mark_references

    console = console or Console()
    t0 = time.perf_counter()
    outdir = Path(outdir).absolute()
    simdir = outdir / "sim"
    cfg = sim_config or _demo_sim()
    if (simdir / "truth" / "config.json").is_file():
        truth = SimTruth.read(simdir / "truth")
        console.print(f"reusing the simulated survey in {simdir}")
    else:
        console.print(f"simulating {len(cfg.filters)} filters x {cfg.n_chips} chips "
                      f"({cfg.nx}x{cfg.ny} px), {cfg.n_references} references + "
                      f"{cfg.n_epochs} epochs per filter ...")  # fmt: skip
        truth = simulate_survey(simdir, cfg)
        truth.write(simdir / "truth")
    catalog = simdir / "astrometric_catalog.ecsv"
    if not catalog.is_file():  # the simulated field's "Gaia": positions are tied to it
        truth.astrometric_catalog().write(catalog)
    pipeline_config = PipelineConfig(astrometric_catalog=str(catalog))
    settings = resolve(settings)
    report = ingest_paths(simdir, settings=settings)
    console.print(f"ingested {report.ingested} file(s) ({report.present} already present)")
    if report.failed:
        from photdb.errors import PhotdbError

        raise PhotdbError("; ".join(report.messages[:3]))
    refs = [str(simdir / f) for f in truth.epochs["filename"][truth.epochs["is_reference"]]]
    with connect("writer", settings) as conn:
        for s in mark_references(conn, refs):
            console.print(f"filter {s.filter}: {s.kind} reference (primary exposure "
                          f"{s.primary_exposure_id}, {len(s.member_exposure_ids)} more)",
                          highlight=False)  # fmt: skip
    console.print(f"processing with {jobs} worker(s) ...")

    def stage(name: str, n: int) -> None:
        console.print(f"  {name}: {n} chip(s)")

    rep = process(settings, jobs=jobs, progress=stage, config=pipeline_config)
    for o in rep.failed:
        console.print(f"[red]image {o.galimage_id} failed:[/] {o.message}", highlight=False)
    console.print(f"processed {len(rep.done)} chip(s) in {rep.seconds:.0f} s")
    with connect("readonly", settings) as conn:
        counts = store.repeat_counts(conn)
        cands = store.variable_candidates(conn, min_repeats=2, limit=10)
        matches = store.cross_filter_matches(conn, cands)
        console.print(repeat_table(counts))
        plot, top = None, None
        if len(cands):
            console.print(candidates_table(cands, matches))
            top = int(cands["refsource_id"][0])
            ra, dec = store.reference_position(conn, top)
            lc = store.lightcurve_by_cone(conn, ra, dec, 0.5)
            plot = plot_lightcurve(
                lc, outdir / f"lightcurve_{top}.png",
                title=f"reference source {top} (RA {ra:.5f}, Dec {dec:.5f}), 0.5\" cone",
            )  # fmt: skip
            console.print(f"light curve of the top candidate: {plot}")
        else:
            console.print("no repeated variable candidates")
    n_images = len(rep.done)
    return DemoResult(outdir, plot, top, n_images, time.perf_counter() - t0)
