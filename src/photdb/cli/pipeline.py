"""``photdb reference | process | variables | demo``: the crowded-field pipeline."""

from __future__ import annotations

from pathlib import Path

import typer

from photdb.cli.app import app, console, err_console
from photdb.cli.present import candidates_table, outliers_table, repeat_table
from photdb.errors import PhotdbError
from photdb.settings import load_settings


class ProcessingFailed(PhotdbError):
    """Some images failed (each is marked failed with its reason)."""


@app.command("reference")
def reference(
    targets: list[str] = typer.Argument(
        ..., help="FITS files (ingested if new) or galexposures ids; several per filter allowed."
    ),
    stack: bool = typer.Option(
        False,
        "--stack",
        help="Combine several references of a filter into an outlier-"
        "rejected stack (written to $PHOTDB_HOME/stacks/) and use it as the reference.",
    ),
    primary: str | None = typer.Option(
        None,
        "--primary",
        help="File or exposure id to use as the primary reference "
        "(default: best header seeing, else the earliest).",
    ),
    config: Path | None = typer.Option(None, "--config", help="Pipeline settings (TOML)."),
) -> None:
    """Mark exposures as the references of their filters (replacing earlier references).

    Example: photdb reference c4d_210322_*_r_v1.fits.fz --stack
    """
    from photdb.db import connect
    from photdb.pipeline import load_config
    from photdb.survey.references import mark_references

    settings = load_settings()
    cfg = load_config(config) if stack else None
    with connect("writer", settings) as conn:
        sets = mark_references(conn, targets, stack=stack, primary=primary, config=cfg)
    for s in sets:
        others = ", ".join(map(str, s.member_exposure_ids)) or "none"
        console.print(
            f"filter {s.filter}: {s.kind} reference, primary exposure {s.primary_exposure_id}"
            f" (other members: {others})"
        )


@app.command("process")
def process_cmd(
    filter: str | None = typer.Option(None, "--filter", "-f", help="Only this filter."),
    jobs: int = typer.Option(
        1,
        "--jobs",
        "-j",
        min=1,
        help="Worker processes of a local Dask cluster (1: in this process).",
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        metavar="ADDRESS",
        help="Address (tcp://host:8786) or scheduler file of a running Dask scheduler whose "
        "workers compute the images (dask worker, dask-jobqueue, dask-mpi); -j is then ignored.",
    ),
    lease: float = typer.Option(
        120.0,
        "--lease",
        min=1.0,
        metavar="SECONDS",
        help="Lease of an image's claim, renewed while it computes: an image whose worker "
        "died is taken over by another worker or run this long after its last renewal.",
    ),
    config: Path | None = typer.Option(None, "--config", help="Pipeline settings (TOML)."),
    astrometric_catalog: Path | None = typer.Option(
        None,
        "--astrometric-catalog",
        help="Catalogue (ra, dec \\[deg], mag) that reference WCSs are tied to, e.g. Gaia DR3 as "
        "the archive delivers it (pmra, pmdec, ref_epoch: positions moved to each image's "
        "epoch); makes positions absolute and consistent across filters.",
    ),
    nsigma: float | None = typer.Option(
        None,
        "--nsigma",
        min=0.0,
        help="Detection cut in sigma (default 15, the notebook's). With photdb's calibrated "
        "errors 6-8 gives about 0.1% false detections per image or fewer on simulated bulge "
        "fields (benchmarks/science_run.py). Same as \\[variability] nsigma in --config.",
    ),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry failed images too."),
) -> None:
    """Process references, then every search image not yet processed (resumable).

    Each image is claimed in the database before it is computed, so several
    `photdb process` runs, on any machines, can share one database: none computes
    an image another holds, and a run waits for the images others hold.

    Example: photdb process -j 2 --astrometric-catalog gaia.ecsv

    On a cluster: photdb process --scheduler tcp://head-node:8786
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from photdb.pipeline import load_config
    from photdb.survey.process import process

    cfg = load_config(config, astrometric_catalog=astrometric_catalog, nsigma=nsigma)
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err_console, disable=not err_console.is_terminal,
    ) as bar:  # fmt: skip
        current = {}

        def stage(name: str, n: int) -> None:
            current["task"] = bar.add_task(name, total=n)

        def one(o) -> None:
            bar.advance(current["task"])
            if o.status == "failed":
                err_console.print(f"[red]image {o.galimage_id} failed:[/] {o.message}",
                                  highlight=False)  # fmt: skip

        report = process(load_settings(), filter=filter, jobs=jobs, scheduler=scheduler,
                         config=cfg, retry_failed=retry_failed, lease_s=lease, progress=stage,
                         on_image=one)  # fmt: skip
    for w in report.waiting:
        console.print(f"[yellow]waiting:[/] {w}", highlight=False)
    if report.nothing_to_do:
        console.print("nothing to do")
        return
    done = report.done
    console.print(
        f"processed {len(done)} image(s) in {report.seconds:.1f} s: "
        f"{sum(o.n_saved for o in done)} sources saved, "
        f"{sum(o.n_variables for o in done)} variable detections"
    )
    others = sum(o.status == "skipped" for o in report.outcomes)
    if others:
        console.print(f"{others} image(s) finished by another run or worker (see galclaims)")
    if report.failed:
        raise ProcessingFailed(f"{len(report.failed)} image(s) failed; see galimages.failure")


@app.command("variables")
def variables(
    filter: str | None = typer.Option(None, "--filter", "-f", help="Only this filter."),
    min_repeats: int = typer.Option(2, "--min-repeats", min=1, help="Minimum detections."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Candidates to list."),
    cross_filter: bool = typer.Option(
        False, "--cross-filter", help="Match candidates to reference sources of other filters."
    ),
    radius: str = typer.Option(
        "0.5arcsec",
        "--radius",
        help="Cross-filter radius with a unit (0.5arcsec, 0.01'); a bare number is in arcsec "
        "(the same everywhere in photdb).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print counts and candidates as JSON."),
) -> None:
    """Repeat counts (the notebook's first query), then variable candidates, worst first.

    Reference outliers are listed apart: their search epochs agree with each
    other, not with the reference (the reference is off, not the star).
    New sources added after the reference was made (transients) are marked "new".

    Examples: photdb variables --min-repeats 2 --cross-filter ·
    photdb variables -f g_decam --json > candidates.json ·
    then photdb lightcurve --refsource REFID --plot star.png
    """
    import astropy.units as u

    from photdb.api import reference_outliers, repeat_counts, variable_candidates
    from photdb.archive.query import parse_radius
    from photdb.db import connect
    from photdb.survey.candidates import stats_missing
    from photdb.survey.queries import cross_filter_matches

    r = parse_radius(radius).to_value(u.arcsec)
    with connect("readonly", load_settings()) as conn:
        counts = repeat_counts(filter=filter, conn=conn)
        cands = variable_candidates(filter=filter, min_repeats=min_repeats, limit=limit,
                                    conn=conn)  # fmt: skip
        outliers = reference_outliers(filter=filter, limit=limit, conn=conn)
        matches = cross_filter_matches(conn, cands, radius_arcsec=r) if cross_filter else None
        missing = stats_missing(conn)
    if missing:
        err_console.print("[yellow]warning:[/] no variability statistics yet for images "
                          "processed before this version: run  photdb stats rebuild",
                          highlight=False)  # fmt: skip
    cands.remove_column("coord")
    if as_json:
        import json

        from photdb.cli.present import _jsonable

        def rows(t):
            return [dict(zip(t.colnames, map(_jsonable, row), strict=True)) for row in t]

        doc = {"repeat_counts": rows(counts), "candidates": rows(cands),
               "reference_outliers": rows(outliers)}  # fmt: skip
        if matches is not None:
            doc["cross_filter"] = rows(matches)
        print(json.dumps(doc, indent=1))
        return
    console.print(repeat_table(counts))
    if len(cands) == 0:
        console.print(f"no candidates with at least {min_repeats} detections")
    else:
        console.print(candidates_table(cands, matches))
        console.print(f"light curve of one: photdb lightcurve --refsource "
                      f"{cands['refsource_id'][0]}", highlight=False)  # fmt: skip
    if len(outliers):
        console.print(outliers_table(outliers))


stats_app = typer.Typer(help="Variability statistics per reference source (galrefstats).",
                        no_args_is_help=True)  # fmt: skip
app.add_typer(stats_app, name="stats")


@stats_app.command("rebuild")
def stats_rebuild() -> None:
    """Recompute the variability statistics of every reference source from its measurements.

    They are kept up to date as images are processed; rebuild once on a database that
    processed images before they existed, and after deleting exposures.

    Example: photdb stats rebuild
    """
    from photdb.db import connect
    from photdb.survey.refstats import rebuild

    with connect("writer", load_settings()) as conn:
        n = rebuild(conn)
    console.print(f"statistics of {n} reference source(s) rebuilt")


@app.command("demo")
def demo(
    outdir: Path = typer.Option(
        Path("photdb-demo"), "--outdir", "-o", help="Where the simulated survey and plot go."
    ),
    jobs: int = typer.Option(2, "--jobs", "-j", min=1, help="Parallel worker processes."),
) -> None:
    """Simulate a small survey, ingest, reference, process, list variables, plot one.

    Example: photdb demo -j 2, then photdb serve and open http://127.0.0.1:8000/candidates
    """
    from photdb.survey.demo import run_demo

    result = run_demo(outdir, jobs=jobs, say=lambda text: console.print(text, highlight=False))
    for o in result.failed:
        console.print(f"[red]image {o.galimage_id} failed:[/] {o.message}", highlight=False)
    console.print(repeat_table(result.counts))
    if len(result.candidates) == 0:
        console.print("no repeated variable candidates")
    else:
        console.print(candidates_table(result.candidates, result.matches))
        console.print(f"light curve of the top candidate: {result.plot}", highlight=False)
        console.print(f"  its points: photdb lightcurve --refsource {result.top_refsource_id}",
                      highlight=False)  # fmt: skip
    console.print(
        "see the results in your browser: run  photdb serve  and open "
        "http://127.0.0.1:8000/candidates"
        + (f"  (top candidate: http://127.0.0.1:8000/lightcurve?refsource="
           f"{result.top_refsource_id})" if result.top_refsource_id else ""),
        highlight=False,
    )  # fmt: skip
