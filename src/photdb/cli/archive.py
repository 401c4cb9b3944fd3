"""Archive commands: ``delete``, and the pieces the upload commands share.

The uploads (``ingest``, ``objects load``, ``lightcurves load``) are in
:mod:`photdb.cli.loads`; ``lightcurve`` and ``cone`` in :mod:`photdb.cli.query`.
"""

from __future__ import annotations

import sys
from enum import StrEnum

import typer
from rich.table import Table as RichTable

from photdb.cli.app import app, console
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
