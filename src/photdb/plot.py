"""Light-curve plots (matplotlib, no display needed): one figure per light curve.

Works on the one light-curve shape of :mod:`photdb.lightcurve`, from either half of
photdb. No database.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table

__all__ = ["plot_lightcurve"]


def plot_lightcurve(lc: Table, path: str | Path, *, title: str = "") -> Path:
    """Write a PNG of a light curve: per band, magnitudes with error bars, reference
    epochs as open squares, magnitude axis inverted.

    Parameters
    ----------
    lc : astropy.table.Table
        A :func:`photdb.lightcurve.lightcurve_table` (``mjd, band, mag, mag_err,
        is_reference``).
    path : str or Path
        The PNG to write (folders are created).
    title : str
        Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4))
    is_ref = np.asarray(np.ma.filled(lc["is_reference"], False), bool)
    mjd = np.asarray(lc["mjd"], float)
    mag = np.ma.filled(lc["mag"].astype(float), np.nan)
    err = np.ma.filled(lc["mag_err"].astype(float), np.nan)
    bands = np.asarray(np.ma.filled(lc["band"], ""), str)
    for band in sorted(set(bands)):
        sel = bands == band
        ref, obs = sel & is_ref, sel & ~is_ref
        line = ax.errorbar(mjd[obs], mag[obs], yerr=err[obs], fmt="o", label=band, capsize=2)
        if ref.any():
            ax.errorbar(mjd[ref], mag[ref], yerr=err[ref], fmt="s", mfc="none",
                        color=line[0].get_color(), label=f"{band} reference")  # fmt: skip
    ax.invert_yaxis()
    ax.set_xlabel("MJD (UTC, mid-exposure)")
    ax.set_ylabel("mag")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
