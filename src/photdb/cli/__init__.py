"""The ``photdb`` command: a thin typer + rich layer over the library.

Every command parses its arguments, calls one library function and presents
the result. Errors derived from :class:`photdb.errors.PhotdbError` become one
red line on stderr and exit status 1; so does a database error (a lost server).
"""

from __future__ import annotations

import sys

from photdb.cli.app import app, console, err_console, verbose
from photdb.errors import PhotdbError

__all__ = ["app", "console", "err_console", "main", "verbose"]


def _register() -> None:
    """Import the command modules: each registers its commands on :data:`app`."""
    from photdb.cli import archive, db, loads, pipeline, query, web  # noqa: F401


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
