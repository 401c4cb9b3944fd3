"""Upload commands: ``ingest``, ``objects load``, ``lightcurves load``.

Each parses its arguments, calls one library function and presents the result:
a summary line always, with counts of warnings and refused rows; each warning
and refused row with ``--verbose``; exit status 1 when a file failed or a row
was refused.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

import typer

from photdb.archive.walk import printable
from photdb.cli.app import app, console, err_console, verbose
from photdb.cli.archive import InputError, _connect, lightcurves_app, objects_app
from photdb.settings import load_settings


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
    max_unpacked_mb: float | None = typer.Option(
        None,
        "--max-unpacked-mb",
        min=1,
        help="Skip a .gz file, or a compressed image, that unpacks to more than this many MB "
        "(default: PHOTDB_MAX_UNPACKED_MB, 1024).",
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
        if not os.path.lexists(p):
            raise InputError(f"{printable(p)}: no such file or folder")
    kw = {
        "settings": load_settings(),
        "create_missing": not no_create,
        "dry_run": dry_run,
        "maps": maps,
        "max_unpacked_mb": max_unpacked_mb,
    }

    def _lines(result, out) -> None:
        if result.status == "failed":
            out.print(f"[red]failed:[/] {result.message}", highlight=False, soft_wrap=True)
        if verbose():
            for w in result.warnings:
                out.print(f"[yellow]warning:[/] {result.path}: {w}", highlight=False,
                          soft_wrap=True)  # fmt: skip

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
                _lines(result, bar.console)

            report = ingest_paths(paths, progress=_progress, **kw)
    else:

        def _progress(done, total, result):
            if result.status != "failed":
                print(f"[{done}/{total}] {result.message}", flush=True)
            _lines(result, err_console)

        report = ingest_paths(paths, progress=_progress, **kw)
    verb = "would be ingested" if dry_run else "ingested"
    n_warn = len(report.warnings)
    warn = f", {n_warn} warning{'s' * (n_warn != 1)}" if n_warn else ""
    hint = " (--verbose shows each)" if n_warn and not verbose() else ""
    console.print(
        f"{report.ingested} {verb}, {report.present} already present, "
        f"{report.failed} failed{warn}{hint} ({len(report.results)} files, "
        f"{report.seconds:.1f} s)",
        highlight=False,
    )
    if report.failed:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------- loads


def _mapping(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"--column {pair!r}: write it as CANONICAL=COLUMN, e.g. "
                             "magnitude=mag_inst_R")  # fmt: skip
        out[key.strip().lower()] = value.strip()
    return out


def _print_load(report, what: str, *, extra: str = "") -> None:
    refused = report.skipped
    console.print(
        f"{what}: {report.inserted} inserted, {report.updated} updated, "
        f"{report.unchanged} unchanged{extra}, {refused} refused",
        highlight=False,
    )
    for note in getattr(report, "notes", ()):
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    if verbose() or len(report.messages) <= 5:
        for message in report.messages:
            err_console.print(f"[yellow]note:[/] {message}", highlight=False, soft_wrap=True)
    else:
        err_console.print(
            f"[yellow]note:[/] {len(report.messages)} rows refused or noted (--verbose shows each)",
            highlight=False,
        )


_COLUMN_HELP = "Map a column: CANONICAL=COLUMN (repeatable), e.g. "


@objects_app.command("load")
def objects_load(
    file: Path = typer.Argument(..., help="CSV, ECSV, VOTable or FITS table of objects."),
    match_radius: float = typer.Option(
        1.0, "--match-radius", help="Positions closer than this (arcsec) are the same object."
    ),
    catalogue: str | None = typer.Option(
        None,
        "--catalogue",
        help="Where the table's generic name column goes: vsx, simbad, apass, ucac4, gaia or "
        "aavso (default: from the table's metadata, else simbad).",
    ),
    column: list[str] | None = typer.Option(None, "--column", help=_COLUMN_HELP + "vsx_name=Name."),
) -> None:
    """Load objects (position, Gaia/SIMBAD/VSX/UCAC4/APASS names, AUID) into ``objects``.

    Example: photdb objects load field_stars.ecsv --match-radius 1
    """
    from photdb.archive.catalogues import load_objects, read_object_table

    try:
        table = read_object_table(file, catalogue=catalogue, columns=_mapping(column))
    except (OSError, ValueError) as exc:
        raise InputError(f"{file}: cannot read the object table ({exc})") from None
    with _connect("writer") as conn:
        report = load_objects(conn, table, match_radius_arcsec=match_radius)
    _print_load(report, str(file), extra=f", {report.duplicates} merged with an earlier row")
    if report.skipped:
        raise typer.Exit(1)


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
    column: list[str] | None = typer.Option(
        None, "--column", help=_COLUMN_HELP + "magnitude=mag_inst_R."
    ),
) -> None:
    """Load light-curve points into ``lightcurves`` and ``metadata_lc_json``, each point once.

    Example: photdb lightcurves load eyuma.ecsv --datasource UPJS --band R
    """
    from photdb.archive.lightcurves import load_lightcurve_file
    from photdb.archive.tables import TableError

    if not file.is_file():
        raise InputError(f"{file}: no such file")
    obj: str | int | None = int(object) if object and object.isdigit() else object
    with _connect("writer") as conn:
        try:
            report = load_lightcurve_file(
                conn,
                file,
                datasource=datasource,
                band=band,
                object=obj,
                time_format=time_format.value if time_format else None,
                columns=_mapping(column),
            )
        except (TableError, ValueError) as exc:
            raise InputError(f"{file}: {exc}; nothing loaded") from None
    extra = f", {report.present} already present"
    if report.duplicates:
        extra += f", {report.duplicates} repeated in the file"
    console.print(
        f"{file}: {report.inserted} inserted{extra}, {report.skipped} refused"
        + (" (nothing new)" if not report.inserted and report.present else ""),
        highlight=False,
    )
    for note in report.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    if verbose() or len(report.messages) <= 5:
        for message in report.messages:
            err_console.print(f"[yellow]note:[/] {message}", highlight=False, soft_wrap=True)
    else:
        err_console.print(
            f"[yellow]note:[/] {len(report.messages)} lines about refused rows and files "
            "(--verbose shows each)",
            highlight=False,
        )
    if report.skipped:
        raise typer.Exit(1)
