"""Light-curve plots: one description of the plot, drawn by matplotlib or by the web page.

:func:`plot_series` turns a light curve (the one shape of :mod:`photdb.lightcurve`,
from either half of photdb) into what is drawn: one series per band, labelled by band
family and system ("g (DECam)") in that family's colour, with error bars, reference
epochs marked as open squares, the magnitude axis inverted and its label naming the
magnitude system. :func:`plot_lightcurve` draws it with matplotlib (PNG, SVG or PDF by
the file's suffix); the web page draws the same description in the browser
(``photdb/web/static/lightcurve.js``). No database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from photdb.lightcurve import band_colour, band_label, lightcurve_title, magnitude_system

__all__ = ["plot_lightcurve", "plot_series"]


def _floats(lc: Table, name: str) -> np.ndarray:
    if name not in lc.colnames:
        return np.full(len(lc), np.nan)
    return np.asarray(np.ma.filled(np.ma.asarray(lc[name], dtype=float), np.nan), float)


def plot_series(lc: Table) -> dict[str, Any]:
    """What a light-curve plot shows, as plain data (JSON-ready).

    Returns
    -------
    dict
        ``title``, ``xlabel``, ``ylabel``, ``inverted`` (True: magnitudes) and
        ``series``: per band ``band``, ``label``, ``colour`` and the points
        ``mjd``, ``mag``, ``err``, ``reference`` (bool) and ``row`` (index into ``lc``).
        Points without a finite magnitude are left out. A band with no calibrated
        magnitude shows its differential magnitudes (``kind = 'differential'``).
    """
    mjd = _floats(lc, "mjd")
    mag, err = _floats(lc, "mag"), _floats(lc, "mag_err")
    dmag, derr = _floats(lc, "mag_diff"), _floats(lc, "mag_diff_err")
    bands = [str(b) for b in np.ma.filled(np.ma.asarray(lc["band"]).astype(str), "")]
    is_ref = (np.asarray(np.ma.filled(lc["is_reference"], False), bool)
              if "is_reference" in lc.colnames else np.zeros(len(lc), bool))  # fmt: skip
    series, systems, kinds = [], {}, set()
    for band in sorted(set(bands), key=lambda b: (band_colour(b), b)):
        sel = np.array([b == band for b in bands], bool)
        y, e, kind = mag, err, "magnitude"
        if not np.isfinite(mag[sel]).any() and np.isfinite(dmag[sel]).any():
            y, e, kind = dmag, derr, "differential"
        rows = np.flatnonzero(sel & np.isfinite(y) & np.isfinite(mjd))
        if not len(rows):
            continue
        kinds.add(kind)
        system = magnitude_system(band) if kind == "magnitude" else None
        if system:
            systems.setdefault(system, []).append(band_label(band))
        series.append({
            "band": band, "label": band_label(band), "colour": band_colour(band),
            "kind": kind, "system": system,
            "mjd": mjd[rows].tolist(), "mag": y[rows].tolist(),
            "err": [None if not np.isfinite(v) else float(v) for v in e[rows]],
            "reference": is_ref[rows].tolist(), "row": rows.tolist(),
        })  # fmt: skip
    if kinds == {"differential"}:
        ylabel = "differential magnitude"
    elif len(systems) == 1 and sum(s["kind"] == "magnitude" for s in series) == sum(
        len(v) for v in systems.values()
    ):
        ylabel = f"{next(iter(systems))} magnitude"
    else:
        named = "; ".join(f"{s}: {', '.join(v)}" for s, v in sorted(systems.items()))
        ylabel = "magnitude" + (f" ({named})" if named else "")
    if "differential" in kinds and kinds != {"differential"}:
        ylabel += " / differential magnitude"
    return {"title": lightcurve_title(lc), "xlabel": "MJD (UTC, mid-exposure)",
            "ylabel": ylabel, "inverted": True, "series": series}  # fmt: skip


def plot_lightcurve(lc: Table, path: str | Path, *, title: str | None = None) -> Path:
    """Draw a light curve to ``path`` (PNG, SVG or PDF by suffix): per band, magnitudes
    with error bars in the band's colour, reference epochs as open squares, magnitude
    axis inverted, the magnitude system named; the same plot as the web page.

    Parameters
    ----------
    lc : astropy.table.Table
        A :func:`photdb.lightcurve.lightcurve_table`.
    path : str or Path
        The file to write (folders are created).
    title : str, optional
        Figure title; default :func:`photdb.lightcurve.lightcurve_title`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = plot_series(lc)
    path = Path(path)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for s in spec["series"]:
        x, y = np.array(s["mjd"]), np.array(s["mag"])
        e = np.array([np.nan if v is None else v for v in s["err"]], float)
        ref = np.array(s["reference"], bool)
        ax.errorbar(x[~ref], y[~ref], yerr=e[~ref], fmt="o", ms=4, color=s["colour"],
                    ecolor=s["colour"], elinewidth=1, capsize=2, label=s["label"])  # fmt: skip
        if ref.any():
            ax.errorbar(x[ref], y[ref], yerr=e[ref], fmt="s", ms=6, mfc="none",
                        color=s["colour"], capsize=2,
                        label=f"{s['label']} reference")  # fmt: skip
    if not spec["series"]:
        ax.text(0.5, 0.5, "no points with a magnitude", ha="center", transform=ax.transAxes)
    ax.invert_yaxis()
    ax.set_xlabel(spec["xlabel"])
    ax.set_ylabel(spec["ylabel"])
    ax.set_title(spec["title"] if title is None else title, fontsize="medium")
    ax.grid(alpha=0.25)
    if spec["series"]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
