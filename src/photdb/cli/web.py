"""``photdb serve`` (the web pages and VO services) and ``photdb diffphot``."""

from __future__ import annotations

from pathlib import Path

import typer

from photdb.cli.app import app, console, err_console
from photdb.errors import PhotdbError
from photdb.settings import load_settings


class DiffPhotInputError(PhotdbError):
    """A photometry table the differential photometry cannot use."""


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", "-p", min=1, max=65535, help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Server processes."),
    timeout: float = typer.Option(
        10.0, "--timeout", min=0.1, help="Statement timeout in seconds for every query."
    ),
) -> None:
    """Serve the web pages and the VO services (TAP, cone search) over the read-only role.

    Example: photdb serve, then open http://127.0.0.1:8000/ (candidates at /candidates;
    TAP at /tap, cone search at /scs/objects and /scs/galsources for TOPCAT or pyvo).
    """
    from photdb.db.connection import resolve
    from photdb.web.app import serve as run
    from photdb.web.service import WebConfig

    settings = resolve(load_settings())
    console.print(f"photdb serving http://{host}:{port}/ (TAP http://{host}:{port}/tap); "
                  "Ctrl-C stops it", highlight=False)  # fmt: skip
    run(host, port, settings=settings, config=WebConfig(statement_timeout_s=timeout),
        workers=workers)  # fmt: skip


@app.command("diffphot")
def diffphot(
    photometry: Path = typer.Argument(
        ...,
        help="Table (FITS, ECSV, CSV, VOTable) with one row per frame and star: frame, star, "
        "instrumental magnitude and its error, and the frame's time (see the column options).",
    ),
    target: str = typer.Option(..., "--target", help="The target's value in the star column."),
    object: str = typer.Option(
        ..., "--object", help="The target's object (name or id) in the archive's objects."
    ),
    band: str = typer.Option(..., "--band", help="Band of the frames (e.g. R, V, r_sdss)."),
    datasource: str = typer.Option(
        ..., "--datasource", help="Data source progid (created if new)."
    ),
    comps: str | None = typer.Option(
        None,
        "--comps",
        help="Comparison stars: comma-separated star-column values; default every star "
        "of --comp-catalog, else every star but the target.",
    ),
    comp_catalog: Path | None = typer.Option(
        None,
        "--comp-catalog",
        help="Table of comparison stars with columns star (the star-column value), name "
        "(e.g. the AAVSO AUID, stored in comp_stars) and mag (catalogue magnitude in --band); "
        "with it the magnitudes are calibrated.",
    ),
    frame_col: str = typer.Option("file", "--frame-col", help="Column naming the frame."),
    star_col: str = typer.Option("star_id", "--star-col", help="Column naming the star."),
    mag_col: str = typer.Option("mag_inst", "--mag-col", help="Instrumental magnitude column."),
    err_col: str = typer.Option("mag_error", "--err-col", help="Its error column."),
    time_col: str = typer.Option(
        "date-obs", "--time-col", help="Time of the frame (ISO, UTC, mid-exposure)."
    ),
    exptime_col: str | None = typer.Option(
        "exposure", "--exptime-col", help="Exposure time column (s), stored as exp_time."
    ),
) -> None:
    """Ensemble differential photometry of a target, loaded into the archive.

    Variable comparison stars are rejected; the light curve goes into lightcurves with
    comp_stars, num_comp, aver_comp, differential and exp_time in metadata_lc_json.
    Example: photdb diffphot ey-uma.fits --target 9 --object "EY UMa" --band R
    --datasource UPJS --comp-catalog comps.ecsv --mag-col mag_inst_R
    """
    from astropy.table import Table

    from photdb.api import load_differential_photometry

    try:
        phot = Table.read(photometry)
        cat = Table.read(comp_catalog) if comp_catalog is not None else None
    except (OSError, ValueError) as exc:
        raise DiffPhotInputError(f"cannot read the table ({exc})") from None
    for col in (frame_col, star_col, mag_col, err_col, time_col):
        if col not in phot.colnames:
            raise DiffPhotInputError(f"{photometry}: no column {col!r} "
                                     f"(has {', '.join(phot.colnames[:12])})")  # fmt: skip
    stars = {str(v): v for v in phot[star_col].tolist()}
    if str(target) not in stars:
        raise DiffPhotInputError(f"{photometry}: no star {target!r} in column {star_col}")
    tgt = stars[str(target)]
    names, mags = None, None
    if cat is not None:
        missing = {"star", "name", "mag"} - set(cat.colnames)
        if missing:
            raise DiffPhotInputError(f"{comp_catalog}: needs columns {sorted(missing)}")
        names = {stars.get(str(s), s): str(n) for s, n in zip(cat["star"], cat["name"],
                                                              strict=True)}  # fmt: skip
        mags = {stars.get(str(s), s): float(m) for s, m in zip(cat["star"], cat["mag"],
                                                               strict=True)}  # fmt: skip
    if comps:
        chosen = [stars[c.strip()] for c in comps.split(",") if c.strip() in stars]
    elif cat is not None:
        chosen = list(names)
    else:
        chosen = [v for v in stars.values() if v != tgt]
    times = {f: t for f, t in zip(phot[frame_col].tolist(), phot[time_col].tolist(),
                                  strict=True)}  # fmt: skip
    exptime = None
    if exptime_col and exptime_col in phot.colnames:
        exptime = float(phot[exptime_col][0])
    try:
        result, report = load_differential_photometry(
            phot, tgt, chosen, times=times, band=band, datasource=datasource,
            object=int(object) if object.isdigit() else object, catalog_mags=mags,
            names=names, exp_time=exptime, settings=load_settings(),
            frame_col=frame_col, star_col=star_col, mag_col=mag_col, err_col=err_col,
        )  # fmt: skip
    except ValueError as exc:
        raise DiffPhotInputError(f"{photometry}: {exc}; nothing loaded") from None
    console.print(f"{report.inserted} points of {object} loaded ({band}, {datasource}); "
                  f"{len(result.comp_stars)} comparison stars: {', '.join(result.comp_stars)}",
                  highlight=False)  # fmt: skip
    for name, why in result.rejected.items():
        err_console.print(f"[yellow]not used:[/] {name}: {why}", highlight=False)
