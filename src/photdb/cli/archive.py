"""Archive commands: lightcurve, cone, delete (ingest and the loads: :mod:`photdb.cli.loads`).

Each command parses its arguments, calls one library function from
:mod:`photdb.archive` and presents the result with rich.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table as RichTable

from photdb.cli import app, console, err_console
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


# ---------------------------------------------------------------------------------- queries


class OutFormat(StrEnum):
    table = "table"
    csv = "csv"
    ecsv = "ecsv"
    votable = "votable"


class TimeColumn(StrEnum):
    jd = "jd"
    mjd = "mjd"
    iso = "iso"


_SUFFIX = {
    ".csv": "csv",
    ".ecsv": "ecsv",
    ".xml": "votable",
    ".vot": "votable",
    ".votable": "votable",
}


def _empty(column) -> bool:
    import numpy as np

    return len(column) > 0 and bool(np.all(np.ma.getmaskarray(column)))


def _show(table, title: str, *, digits: dict[str, int] | None = None) -> None:
    import numpy as np

    digits = digits or {}
    out = RichTable(title=title, title_justify="left")
    for name in table.colnames:
        out.add_column(name, justify="right" if table[name].dtype.kind in "fiub" else "left")
    for row in table:
        cells = []
        for name in table.colnames:
            value = row[name]
            if value is np.ma.masked or (isinstance(value, float) and np.isnan(value)):
                cells.append("")
            elif name in digits:
                cells.append(f"{float(value):.{digits[name]}f}")
            else:
                cells.append(str(value))
        out.add_row(*cells)
    console.print(out)


@app.command("lightcurve", context_settings=_NEGATIVE_OK)
def lightcurve(
    name_or_id: str | None = typer.Argument(
        None, help="Object id or any catalogue name (Gaia, SIMBAD, VSX, UCAC4, APASS)."
    ),
    ra: str | None = typer.Option(
        None, "--ra", help="RA of a position (deg, or hours as 17:20:39)."
    ),
    dec: str | None = typer.Option(None, "--dec", help="Dec of a position (deg or +76:42:40)."),
    radius: str = typer.Option(
        "1arcsec",
        "--radius",
        help="Cone radius around the position or "
        'the object (for pipeline points): 1arcsec, 2", 0.5arcmin; '
        "a bare number is in deg.",
    ),
    fmt: OutFormat | None = typer.Option(
        None,
        "--format",
        "-f",
        help="Output format; default from the --output suffix, else a table on screen.",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file instead of the screen."
    ),
    time: TimeColumn | None = typer.Option(
        None,
        "--time",
        help="Keep only this time column (default: jd, mjd and iso; jd and iso on screen).",
    ),
) -> None:
    """Light curve of an object or position, from the archive and the pipeline."""
    from photdb.archive.query import get_lightcurve, parse_coord, parse_radius, write_table

    if (name_or_id is None) == (ra is None or dec is None):
        raise InputError("give an object name/id, or --ra and --dec (not both)")
    coord = parse_coord(ra, dec) if name_or_id is None else None
    kind = fmt.value if fmt else (_SUFFIX.get(output.suffix.lower()) if output else "table")
    if kind is None:
        raise InputError(f"{output}: unknown suffix; give --format csv, ecsv or votable")
    with _connect() as conn:
        table = get_lightcurve(conn, object=name_or_id, coord=coord, radius=parse_radius(radius))
    if kind == "table":
        if output is not None:
            raise InputError("--format table writes to the screen; use csv, ecsv or votable")
        keep = (time.value,) if time else ("jd", "iso")
        table.remove_columns([c for c in ("jd", "mjd", "iso") if c not in keep])
        table.remove_columns([c for c in table.colnames if _empty(table[c])])
        if len(set(table.meta["objects"])) == 1 and "object_id" in table.colnames:
            table.remove_column("object_id")
        _show(
            table,
            f"{len(table)} points ({name_or_id or f'{ra} {dec}'}), UTC",
            digits={"jd": 6, "mjd": 6, "mag": 4, "mag_err": 4, "mag_diff": 4, "mag_diff_err": 4},
        )
        return
    if time is not None:
        table.remove_columns([c for c in ("jd", "mjd", "iso") if c != time.value])
    text = write_table(table, kind, output)
    if text is not None:
        sys.stdout.write(text)
    else:
        err_console.print(f"{len(table)} points written to {output}", highlight=False)


@app.command("cone", context_settings=_NEGATIVE_OK)
def cone(
    ra: str = typer.Argument(..., help="RA: degrees (325.679) or hours (21:42:43, 21h42m43s)."),
    dec: str = typer.Argument(..., help="Dec: degrees (43.5862, +43:35:10, 43d35m10s)."),
    radius: str = typer.Argument(
        ...,
        help="Radius with units: 30arcsec, 6arcmin, 0.1deg, 30\", 6'; a bare number is in degrees.",
    ),
) -> None:
    """Objects within RADIUS of RA DEC, nearest first."""
    from photdb.archive.query import cone_objects, parse_coord, parse_radius

    coord, r = parse_coord(ra, dec), parse_radius(radius)
    with _connect() as conn:
        table = cone_objects(conn, coord, r)
    _show(
        table,
        f"{len(table)} objects within {r:.4g} of {coord.to_string('hmsdms')}",
        digits={"ra": 6, "dec": 6, "dist_arcsec": 2},
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
    """Show what deleting an observation, object, data source or night removes, then do it."""
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
