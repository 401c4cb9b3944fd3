"""``photdb db``: the embedded server, connection URLs and schema migrations."""

from __future__ import annotations

import typer

from photdb.cli.app import app, console
from photdb.settings import ROLES, load_settings

db_app = typer.Typer(
    help="Manage the database: embedded server, URLs, schema.", no_args_is_help=True
)
app.add_typer(db_app, name="db")


def _server():
    from photdb.db.server import EmbeddedServer
    from photdb.errors import ConfigError

    settings = load_settings()
    if not settings.embedded:
        raise ConfigError(
            f"a server is configured (DB_HOST={settings.host}); "
            "start/stop/status apply to the embedded cluster only"
        )
    return settings, EmbeddedServer(settings.home)


@db_app.command("start")
def start(
    port: int | None = typer.Option(
        None,
        "--port",
        help="Move the cluster to this TCP port first (it keeps its port otherwise).",
        min=1,
        max=65535,
    ),
) -> None:
    """Start the embedded PostgreSQL cluster (created and migrated on first use).

    Example: photdb db start
    """
    from photdb.db.embedded import ensure_cluster

    settings, server = _server()
    if port is not None and server.is_ready() and port != server.port():
        with server.lock():
            server.stop()
            server.set_port(port)
    server = ensure_cluster(settings)
    console.print(f"embedded PostgreSQL running on 127.0.0.1:{server.port()} ({server.datadir})")


@db_app.command("stop")
def stop() -> None:
    """Stop the embedded PostgreSQL cluster.

    Example: photdb db stop
    """
    _, server = _server()
    was = server.stop()
    console.print("stopped" if was else "not running")


@db_app.command("status")
def status() -> None:
    """Show whether the embedded cluster exists and runs, or which server is configured.

    Example: photdb db status
    """
    settings = load_settings()
    if not settings.embedded:
        console.print(f"configured server: {settings.host}:{settings.port}/{settings.dbname}")
        return
    _, server = _server()
    st = server.status()
    if not st.initialised:
        console.print(f"no embedded cluster yet in {st.datadir} (created on first use)")
        raise typer.Exit(3)
    state = f"running (pid {st.pid}) on 127.0.0.1:{st.port}" if st.running else "stopped"
    console.print(f"embedded PostgreSQL {state}; data in {st.datadir}")
    if not st.running:
        raise typer.Exit(3)


@db_app.command("url")
def url(
    role: str = typer.Option("readonly", "--role", "-r", help=f"One of: {', '.join(ROLES)}."),
) -> None:
    """Print a libpq URL for psql; the password stays in $PHOTDB_HOME/pgpass.

    Example: psql "$(photdb db url --role readonly)"
    """
    from photdb.db import database_url

    print(database_url(role, load_settings()))


@db_app.command("init")
def init() -> None:
    """Create or upgrade the schema and the admin/writer/readonly roles (idempotent).

    Example: photdb db init
    """
    from photdb.db import init_database
    from photdb.db.embedded import init_embedded

    settings = load_settings()
    applied = init_embedded(settings) if settings.embedded else init_database(settings)
    if applied:
        console.print(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        console.print("schema is up to date; nothing to do")
