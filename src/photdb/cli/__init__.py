"""The ``photdb`` command: a thin typer + rich layer over the library.

Every command parses its arguments, calls one library function and presents
the result. Errors derived from :class:`photdb.errors.PhotdbError` become one
red line on stderr and exit status 1.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.logging import RichHandler

from photdb import __version__
from photdb.errors import PhotdbError

console = Console()
err_console = Console(stderr=True)
#: Global options of this invocation (set by the root callback).
state = {"verbose": False}


def verbose() -> bool:
    """True when ``--verbose`` was given: every warning and refused row is printed."""
    return bool(state["verbose"])


app = typer.Typer(
    name="photdb",
    help="Time-domain photometry on PostgreSQL: a crowded-field variability pipeline "
    "and a small-telescope photometry archive.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"photdb {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show every warning and refused row; log what photdb does."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """photdb: time-domain photometry on PostgreSQL."""
    state["verbose"] = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
        force=True,
    )
    for noisy in ("yoyo", "psycopg", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _register() -> None:
    from photdb.cli import db  # noqa: F401

    for name in ("archive", "loads", "pipeline"):
        try:
            __import__(f"photdb.cli.{name}")
        except ModuleNotFoundError as exc:  # a half of photdb not yet installed
            if exc.name != f"photdb.cli.{name}":
                raise


def main() -> None:
    """Entry point of the ``photdb`` console script."""
    import psycopg

    _register()
    try:
        app()
    except PhotdbError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except psycopg.Error as exc:  # e.g. the server went away mid-command
        text = " ".join(str(exc).split()) or type(exc).__name__
        # no SQLSTATE (the socket broke), class 08 (connection) or 57P (shutdown): a lost server
        lost = exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P"))
        what = "lost the database server" if lost else "database error"
        err_console.print(f"[bold red]error:[/] {what}: {text}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
