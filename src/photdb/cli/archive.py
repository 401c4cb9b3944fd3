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
from photdb.cli.present import is_empty, show_table
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


# ---------------------------------------------------------------------------------- queries


class OutFormat(StrEnum):
    table = "table"
    csv = "csv"
    ecsv = "ecsv"
    votable = "votable"
    aavso = "aavso"
    parquet = "parquet"


class TimeColumn(StrEnum):
    jd = "jd"
    mjd = "mjd"
    iso = "iso"


_RADIUS_HELP = (
    "Cone radius with a unit (2arcsec, 0.5', 1deg, 30\"); a bare number is in arcsec "
    "(the same everywhere in photdb)."
)


@app.command("lightcurve", context_settings=_NEGATIVE_OK)
def lightcurve(
    name_or_id: str | None = typer.Argument(
        None, help="Object id or any catalogue name (Gaia, SIMBAD, VSX, UCAC4, APASS)."
    ),
    ra: str | None = typer.Option(
        None, "--ra", help="RA of a position (deg, or hours as 17:20:39)."
    ),
    dec: str | None = typer.Option(None, "--dec", help="Dec of a position (deg or +76:42:40)."),
    refsource: int | None = typer.Option(
        None,
        "--refsource",
        help="A pipeline reference source (the refid of photdb variables): its light curve "
        "in every filter.",
    ),
    radius: str = typer.Option(
        "1arcsec", "--radius", help=_RADIUS_HELP + " Around the position or the object."
    ),
    fmt: OutFormat | None = typer.Option(
        None,
        "--format",
        help="Output format; default from the --output suffix (.csv .ecsv .xml .txt "
        ".parquet), else a table on screen. aavso: the AAVSO Extended File Format.",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file instead of the screen."
    ),
    time: TimeColumn | None = typer.Option(
        None,
        "--time",
        help="Keep only this time column (default: jd, mjd and iso; jd and iso on screen).",
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Also draw the plot (the web page's) to this PNG, SVG or PDF."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the points as JSON."),
) -> None:
    """Light curve of an object, a position or a pipeline reference source.

    Examples: photdb lightcurve "SS Cyg" -o ss_cyg.ecsv ·
    photdb lightcurve --refsource 1910 --plot top.png ·
    photdb lightcurve --ra 271.4861 --dec -28.9102 --radius 0.5arcsec --format aavso
    """
    from photdb.api import get_lightcurve
    from photdb.archive.query import parse_coord, parse_radius
    from photdb.cli.present import print_json
    from photdb.export import export_lightcurve, format_from_suffix
    from photdb.plot import plot_lightcurve

    given = sum((name_or_id is not None, ra is not None or dec is not None, refsource is not None))
    if given != 1 or (ra is None) != (dec is None):
        raise InputError("give an object name/id, or --ra and --dec, or --refsource (one of them)")
    coord = parse_coord(ra, dec) if ra is not None else None
    kind = fmt.value if fmt else (format_from_suffix(output.name) if output else "table")
    if kind is None:
        raise InputError(f"{output}: unknown suffix; give --format csv, ecsv, votable, "
                         "aavso or parquet")  # fmt: skip
    if as_json and (fmt is not None or output is not None):
        raise InputError("--json prints to the screen; leave out --format and --output")
    with _connect() as conn:
        table = get_lightcurve(conn, object=name_or_id, coord=coord, refsource=refsource,
                               radius=parse_radius(radius))  # fmt: skip
    if plot is not None:
        plot_lightcurve(table, plot)
        err_console.print(f"plot written to {plot}", highlight=False)
    if time is not None:
        table.remove_columns([c for c in ("jd", "mjd", "iso") if c != time.value])
    if as_json:
        print_json(table[[c for c in table.colnames if c != "time"]], meta=table.meta)
        return
    if kind == "table":
        if output is not None:
            raise InputError("--format table writes to the screen; use csv, ecsv, votable, "
                             "aavso or parquet")  # fmt: skip
        if time is None:
            table.remove_column("mjd")
        table.remove_column("time")
        table.remove_columns([c for c in table.colnames if is_empty(table[c])])
        if len(set(table.meta["objects"])) == 1 and "object_id" in table.colnames:
            table.remove_column("object_id")
        from photdb.lightcurve import lightcurve_title

        show_table(
            table,
            f"{len(table)} points ({lightcurve_title(table)}), UTC",
            digits={"jd": 6, "mjd": 6, "mag": 4, "mag_err": 4, "mag_diff": 4, "mag_diff_err": 4,
                    "mag_err_raw": 4, "zero_point": 3, "error_factor": 2, "ra": 6, "dec": 6},
        )  # fmt: skip
        return
    data = export_lightcurve(table, kind)
    if output is None:
        if kind == "parquet":
            raise InputError("parquet is binary: give --output FILE")
        sys.stdout.write(data.decode())
        return
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from None
    err_console.print(f"{len(table)} points written to {output}", highlight=False)


@app.command("cone", context_settings=_NEGATIVE_OK)
def cone(
    ra: str = typer.Argument(..., help="RA: degrees (325.679) or hours (21:42:43, 21h42m43s)."),
    dec: str = typer.Argument(..., help="Dec: degrees (43.5862, +43:35:10, 43d35m10s)."),
    radius: str = typer.Argument(
        ...,
        help="Radius with a unit: 30arcsec, 6arcmin, 0.1deg, 30\", 6'; a bare number is in arcsec.",
    ),
    sources: bool = typer.Option(
        False, "--sources", help="Search the pipeline's measurements (galsources), not objects."
    ),
    limit: int = typer.Option(1000, "--limit", "-n", min=1, help="At most this many rows."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """Objects (or pipeline measurements) within RADIUS of RA DEC, nearest first.

    Examples: photdb cone 325.679 43.5862 6arcmin · photdb cone 21:42:43 +43:35:10 30 --json
    """
    from photdb.api import cone as cone_search
    from photdb.archive.query import parse_coord, parse_radius
    from photdb.cli.present import print_json

    coord, r = parse_coord(ra, dec), parse_radius(radius)
    with _connect() as conn:
        table = cone_search(coord, r, table="galsources" if sources else "objects",
                            limit=limit, conn=conn)  # fmt: skip
    table.remove_column("coord")
    if as_json:
        print_json(table, meta=table.meta)
        return
    what = "measurements" if sources else "objects"
    show_table(
        table,
        f"{len(table)} {what} within {r:.4g} of {coord.to_string('hmsdms')}",
        digits={"ra": 6, "dec": 6, "dist_arcsec": 2, "mag": 3, "magerr": 3, "mjd": 5},
    )


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
