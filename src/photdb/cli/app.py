"""The ``photdb`` typer application and its consoles; command modules register on it."""

from __future__ import annotations

import logging
import os
import sys

import typer
from rich.console import Console
from rich.logging import RichHandler

from photdb import __version__


def _console(stderr: bool = False) -> Console:
    """A rich console; when the output is not a terminal (a pipe, a file) and COLUMNS is
    not set, wide enough that tables are never cut or wrapped."""
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and not os.environ.get("COLUMNS")
    return Console(stderr=stderr, width=10_000 if wide else None)


console = _console()
err_console = _console(stderr=True)
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
    level = logging.DEBUG if verbose else logging.WARNING
    # the handler's own level too: libraries that set their loggers to INFO (Dask's
    # scheduler and nanny) propagate to it; a plain line when stderr is not a terminal
    # (rich would pad each record to the wide console)
    if err_console.is_terminal:
        handler = RichHandler(console=err_console, show_path=False, show_time=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.setLevel(level)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("yoyo", "psycopg", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
