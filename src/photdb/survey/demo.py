"""``photdb demo``: the whole crowded-field pipeline on a small simulated survey.

Simulates two filters x two chips (3 references and a few search epochs per
filter), ingests the files into the configured database (the embedded one by
default), marks the references, processes everything in parallel, and reads back
the notebook's repeated-detections counts, the worst variables and the light curve
of the top candidate, which it plots. Running it again reuses what is there.
Presentation is the caller's (the CLI prints the tables).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from astropy.table import Table

from photdb.db.connection import connect, resolve
from photdb.pipeline import PipelineConfig
from photdb.plot import plot_lightcurve
from photdb.settings import Settings
from photdb.sim import SimConfig
from photdb.survey import queries
from photdb.survey.candidates import variable_candidates
from photdb.survey.process import ImageOutcome, process
from photdb.survey.simulated import load_survey, make_survey

__all__ = ["DemoResult", "demo_sim_config", "run_demo"]


def demo_sim_config() -> SimConfig:
    """The demo's survey: 384 x 192 pixel chips (~1100 stars each); its 28 chip
    reductions (2 filters x 2 chips x (3 references + 4 epochs)) take ~3 minutes on
    two cores."""
    return SimConfig(nx=384, ny=192, n_chips=2, filters=("g", "r"), n_epochs=4,
                     n_references=3, seed=2021)  # fmt: skip


@dataclass(frozen=True)
class DemoResult:
    """What the demo made and found.

    Attributes
    ----------
    outdir : Path
    counts : astropy.table.Table
        The notebook's repeat counts (``num``, ``count``).
    candidates : astropy.table.Table
        The worst variables (:func:`photdb.survey.candidates.variable_candidates`).
    matches : astropy.table.Table
        Their reference sources in other filters.
    plot : Path or None
        The top candidate's light-curve PNG.
    top_refsource_id : int or None
    failed : tuple of ImageOutcome
    n_images : int
        Chips processed by this run.
    seconds : float
    """

    outdir: Path
    counts: Table
    candidates: Table
    matches: Table
    plot: Path | None
    top_refsource_id: int | None
    failed: tuple[ImageOutcome, ...]
    n_images: int
    seconds: float


def run_demo(
    outdir: str | Path = "photdb-demo",
    *,
    jobs: int = 2,
    settings: Settings | None = None,
    sim_config: SimConfig | None = None,
    say: Callable[[str], None] = lambda text: None,
) -> DemoResult:
    """Run the demo; ``say`` receives one line per step (e.g. ``print``)."""
    t0 = time.perf_counter()
    outdir = Path(outdir).absolute()
    cfg = sim_config or demo_sim_config()
    if not (outdir / "sim" / "truth" / "config.json").is_file():
        say(
            f"simulating {len(cfg.filters)} filters x {cfg.n_chips} chips ({cfg.nx}x{cfg.ny} "
            f"px), {cfg.n_references} references + {cfg.n_epochs} epochs per filter ..."
        )
    survey = make_survey(outdir / "sim", cfg)
    if survey.reused:
        say(f"reusing the simulated survey in {survey.simdir}")
    settings = resolve(settings)
    ingest, sets = load_survey(settings, survey)
    say(f"ingested {ingest.ingested} file(s) ({ingest.present} already present)")
    for s in sets:
        say(f"filter {s.filter}: {s.kind} reference (primary exposure {s.primary_exposure_id}, "
            f"{len(s.member_exposure_ids)} more)")  # fmt: skip
    say(f"processing with {jobs} worker(s) ...")
    rep = process(
        settings, jobs=jobs, config=PipelineConfig(astrometric_catalog=str(survey.catalog)),
        progress=lambda stage, n: say(f"  {stage}: {n} chip(s)"),
    )  # fmt: skip
    say(f"processed {len(rep.done)} chip(s) in {rep.seconds:.0f} s")
    plot, top = None, None
    with connect("readonly", settings) as conn:
        counts = queries.repeat_counts(conn)
        cands = variable_candidates(conn, min_repeats=2, limit=10)
        matches = queries.cross_filter_matches(conn, cands)
        if len(cands):
            top = int(cands["refsource_id"][0])
            lc = queries.lightcurve_of_star(conn, top)
            plot = plot_lightcurve(lc, outdir / f"lightcurve_{top}.png")
    return DemoResult(outdir, counts, cands, matches, plot, top, tuple(rep.failed),
                      len(rep.done), time.perf_counter() - t0)  # fmt: skip
