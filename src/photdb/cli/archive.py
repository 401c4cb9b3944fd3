"""Archive commands: ingest, objects/lightcurves load, lightcurve, cone, delete.

Each command parses its arguments, calls one library function from
:mod:`photdb.archive` and presents the result with rich.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table as RichTable

from photdb.cli.app import app, console, err_console
from photdb.errors import PhotdbError
from photdb.settings import load_settings

objects_app = typer.Typer(help="Catalogue objects: load object lists.", no_args_is_help=True)
lightcurves_app = typer.Typer(
    help="Light-curve points: load photometry tables.", no_args_is_help=True
)
app.add_typer(objects_app, name="objects")
app.add_typer(lightcurves_app, name="lightcurves")

_NEGATIVE_OK = {"ignore_unknown_options": True}  # so that a Dec of -5:30:00 is an argument


class InputError(PhotdbError):
    """A file the loaders cannot read or accept."""


def _connect(role: str = "readonly"):
    from photdb.db import connect

    return connect(role, load_settings())


# ---------------------------------------------------------------------------------- ingest


@app.command("ingest")
def ingest(
    paths: list[Path] = typer.Argument(..., help="FITS files and folders (walked recursively)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Read and check everything, then roll back: nothing is stored."
    ),
    no_create: bool = typer.Option(
        False,
        "--no-create",
        help="Refuse files naming a "
        "telescope, instrument or observatory not yet in the "
        "database, instead of creating it.",
    ),
    filters_map: Path | None = typer.Option(
        None,
        "--filters-map",
        help="TOML file with "
        "\\[filters] / \\[modes] entries overriding the "
        "shipped FILTER and IMAGETYP maps.",
    ),
) -> None:
    """Ingest FITS headers into the archive: one observation per image HDU.

    Example: photdb ingest /data/2021-10-22/ --dry-run
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from photdb.archive.headers import load_maps
    from photdb.archive.ingest import ingest_paths

    maps = None
    if filters_map is not None:
        try:
            maps = load_maps(filters_map)
        except (OSError, ValueError) as exc:
            raise InputError(f"{filters_map}: cannot read the filters map ({exc})") from None
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
    kw = {
        "settings": load_settings(),
        "create_missing": not no_create,
        "dry_run": dry_run,
        "maps": maps,
    }

    def _line(result) -> None:
        if result.status == "failed":
            err_console.print(f"[red]failed:[/] {result.message}", highlight=False, soft_wrap=True)

    if console.is_terminal:
        with Progress(
            TextColumn("ingest"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            console=console,
        ) as bar:
            task = bar.add_task("", total=None)

            def _progress(done, total, result):
                bar.update(task, completed=done, total=total, description=Path(result.path).name)
                if result.status == "failed":
                    bar.console.print(
                        f"[red]failed:[/] {result.message}", highlight=False, soft_wrap=True
                    )

            report = ingest_paths(paths, progress=_progress, **kw)
    else:

        def _progress(done, total, result):
            if result.status == "failed":
                _line(result)
            else:
                print(f"[{done}/{total}] {result.message}", flush=True)

        report = ingest_paths(paths, progress=_progress, **kw)
    verb = "would be ingested" if dry_run else "ingested"
    console.print(
        f"{report.ingested} {verb}, {report.present} already present, "
        f"{report.failed} failed ({len(report.results)} files, "
        f"{report.seconds:.1f} s)",
        highlight=False,
    )
    if report.failed:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------- loads


def _print_load(report, what: str) -> None:
    console.print(
        f"{what}: {report.inserted} inserted, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.skipped} skipped",
        highlight=False,
    )
    for message in report.messages:
        err_console.print(f"[yellow]note:[/] {message}", highlight=False, soft_wrap=True)


@objects_app.command("load")
def objects_load(
    file: Path = typer.Argument(..., help="CSV, ECSV, VOTable or FITS table of objects."),
    match_radius: float = typer.Option(
        1.0, "--match-radius", help="Positions closer than this (arcsec) are the same object."
    ),
) -> None:
    """Load objects (position and Gaia/SIMBAD/VSX/UCAC4/APASS names) into ``objects``.

    Example: photdb objects load field_stars.ecsv --match-radius 1
    """
    from photdb.archive.catalogues import load_objects, read_object_table

    try:
        table = read_object_table(file)
    except (OSError, ValueError) as exc:
        raise InputError(f"{file}: cannot read the object table ({exc})") from None
    with _connect("writer") as conn:
        report = load_objects(conn, table, match_radius_arcsec=match_radius)
    _print_load(report, str(file))


class TimeFormat(StrEnum):
    jd = "jd"
    mjd = "mjd"
    bjd = "bjd"
    hjd = "hjd"
    iso = "iso"


@lightcurves_app.command("load")
def lightcurves_load(
    file: Path = typer.Argument(..., help="CSV, ECSV, VOTable or FITS table of points."),
    datasource: str | None = typer.Option(
        None,
        "--datasource",
        help="Data source progid for points without a progid column (created if new).",
    ),
    band: str | None = typer.Option(
        None, "--band", help="Band for points without a band column (created in photosys if new)."
    ),
    object: str | None = typer.Option(
        None, "--object", help="Object id or name for points without an object column."
    ),
    time_format: TimeFormat | None = typer.Option(
        None,
        "--time-format",
        help="How to read the time column (bjd = BJD_TDB, hjd = HJD_UTC); default: from its name.",
    ),
) -> None:
    """Load light-curve points into ``lightcurves`` and ``metadata_lc_json`` (all or nothing).

    Example: photdb lightcurves load eyuma.ecsv --datasource UPJS --band R
    """
    from photdb.archive.lightcurves import load_lightcurves, read_lightcurve_table

    try:
        table = read_lightcurve_table(file)
    except (OSError, ValueError) as exc:
        raise InputError(f"{file}: cannot read the light-curve table ({exc})") from None
    obj: str | int | None = int(object) if object and object.isdigit() else object
    with _connect("writer") as conn:
        try:
            report = load_lightcurves(
                conn,
                table,
                datasource=datasource,
                band=band,
                object=obj,
                time_format=time_format.value if time_format else None,
            )
        except ValueError as exc:
            raise InputError(f"{file}: {exc}; nothing loaded") from None
    _print_load(report, str(file))


# ---------------------------------------------------------------------------------- delete


class DeleteKind(StrEnum):
    observation = "observation"
    object = "object"
    datasource = "datasource"
    night = "night"


@app.command("delete")
def delete(
    kind: DeleteKind = typer.Argument(..., help="What to delete."),
    value: str = typer.Argument(
        ...,
        help="observation: id, file name or path/name; object: id "
        "or name; datasource: progid; night: the evening's date "
        "YYYY-MM-DD (local noon to noon).",
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask; delete."),
) -> None:
    """Show what deleting an observation, object, data source or night removes, then do it.

    Example: photdb delete night 2021-10-22
    """
    from photdb.archive.delete import execute_delete, plan_delete

    with _connect("writer") as conn:
        plan = plan_delete(conn, (kind.value, value))
        console.print(f"[bold]delete {plan.description}[/]", highlight=False)
        counts = RichTable()
        counts.add_column("table")
        counts.add_column("rows", justify="right")
        for table, n in plan.counts.items():
            if n:
                counts.add_row(table, str(n))
        for item in plan.items:
            console.print(item, highlight=False)
        console.print(counts)
        for note in plan.notes:
            console.print(f"[yellow]note:[/] {note}", highlight=False)
        if plan.empty:
            console.print("nothing to delete")
            return
        if not yes:
            if not sys.stdin.isatty():
                raise InputError("refusing to delete without a terminal to confirm on; add --yes")
            if not typer.confirm(f"Delete these {plan.total} rows?", default=False):
                console.print("nothing deleted")
                raise typer.Exit(1)
        removed = execute_delete(conn, plan)
    console.print(f"deleted {sum(removed.values())} rows ({plan.description})", highlight=False)
