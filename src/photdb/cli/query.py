"""``photdb lightcurve`` and ``photdb cone``: reading both halves, in every export format.

Each command parses its arguments, calls :mod:`photdb.api` and presents the result:
a rich table on screen (whole when the output is not a terminal), ``--json``, or an
export (:mod:`photdb.export`).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path

import typer

from photdb.cli.app import app, err_console
from photdb.cli.archive import _NEGATIVE_OK, InputError, _connect
from photdb.cli.present import is_empty, show_table


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
