"""Absolute photometric calibration of a reference catalogue against an external one.

The notebook defines the photometric system by the reference image, with a zero
point good to "10% or 20%". Whatever flat-field or illumination error the
reference carries (several percent across a chip) is then built into every light
curve's zero point, and differs between chips and filters. Given a photometric
catalogue of the field (e.g. DECaPS, Pan-STARRS or Gaia synthetic photometry in
the survey's band), :func:`flatten_reference` fits ``m_cat - m_ref`` with a zero
point and a Chebyshev surface, robustly, on well-measured isolated stars, and puts
the reference on the catalogue's system: flat and absolute. Search images are
calibrated to the reference as before, so they inherit it. No I/O happens here.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from photdb.calibration import (
    CalibrationConfig,
    affordable_order,
    fit_delta_mag_surface,
    fit_zero_point,
)

__all__ = ["flatten_reference"]


def flatten_reference(
    catalog: Table,
    photometric: Table,
    column: str,
    *,
    shape: tuple[int, int],
    config: CalibrationConfig = CalibrationConfig(),
    use: np.ndarray | None = None,
    match_radius_arcsec: float = 0.5,
    min_stars_per_term: float = 10.0,
) -> tuple[Table, dict]:
    """Put a reference catalogue on an external catalogue's photometric system.

    Parameters
    ----------
    catalog : astropy.table.Table
        Reference catalogue with ``ra``, ``dec`` (deg, absolute), ``x``, ``y`` (pix),
        ``mag``, ``magerr``.
    photometric : astropy.table.Table
        External catalogue with ``ra``, ``dec`` (deg) and the magnitude ``column``
        (and ``<column>_err`` when known).
    column : str
        The magnitude column in the survey's band, e.g. ``"mag_r"``.
    shape : tuple of int
        ``(ny, nx)`` of the reference image.
    config : CalibrationConfig
        Surface order, clipping, error floor, ``max_fit_magerr``, ``min_stars``.
    use : numpy.ndarray of bool, optional
        Reference stars good enough for the fit (the pipeline passes its calibration
        quality cuts: ``qf``, ``fracflux``, flags); default all.
    match_radius_arcsec : float
        Association radius. Default 0.5.
    min_stars_per_term : float
        The surface's order (at most ``config.chebyshev_order``) is the highest with
        this many matched stars per term. Default 10: an external catalogue is
        sparser than the search-vs-reference comparison, and an under-determined
        surface would add structure rather than remove it.

    Returns
    -------
    catalog : astropy.table.Table
        A copy with ``mag`` corrected (``mag_uncal`` keeps the input).
    stats : dict
        ``zp`` (mean correction added over the chip, mag), ``p2p`` (peak-to-peak of
        the surface, mag), ``n`` (stars in the final fit), ``rms`` (their residual
        rms, mag), ``coeffs`` (Chebyshev surface; its size gives the order used),
        ``column``.

    Raises
    ------
    ValueError
        Too few usable matches (``config.min_stars``).
    """
    ra, dec = np.asarray(catalog["ra"], float), np.asarray(catalog["dec"], float)
    mref = np.asarray(catalog["mag"], float)
    eref = np.asarray(catalog["magerr"], float)
    mcat = np.asarray(photometric[column], float)
    ecol = f"{column}_err"
    ecat = np.asarray(photometric[ecol], float) if ecol in photometric.colnames else None
    ref_sky = SkyCoord(ra * u.deg, dec * u.deg)
    cat_sky = SkyCoord(np.asarray(photometric["ra"], float) * u.deg,
                       np.asarray(photometric["dec"], float) * u.deg)  # fmt: skip
    idx, sep, _ = ref_sky.match_to_catalog_sky(cat_sky)
    ok = (sep.arcsec <= match_radius_arcsec) & np.isfinite(mcat[idx]) & np.isfinite(mref)
    ok &= np.isfinite(eref) & (eref <= config.max_fit_magerr)
    if use is not None:
        ok &= np.asarray(use, bool)
    # one reference star per catalogue star: a catalogue star matched twice is a blend
    counts = np.bincount(idx[ok], minlength=len(photometric))
    ok &= counts[idx] == 1
    if ok.sum() < config.min_stars:
        raise ValueError(f"{int(ok.sum())} catalogue matches < min_stars={config.min_stars}")
    rows = np.flatnonzero(ok)
    d = mcat[idx[rows]] - mref[rows]
    err = np.hypot(eref[rows], config.error_floor_mag)
    if ecat is not None:
        err = np.hypot(err, np.nan_to_num(ecat[idx[rows]]))
    zp, _, _ = fit_zero_point(mref[rows], mcat[idx[rows]], clip_sigma=config.clip_sigma)
    order = affordable_order(rows.size, replace(config, min_stars_per_term=min_stars_per_term))
    x, y = np.asarray(catalog["x"], float), np.asarray(catalog["y"], float)
    surface, used = fit_delta_mag_surface(
        x[rows], y[rows], d - zp, err, shape=shape, config=replace(config, chebyshev_order=order)
    )
    out = catalog.copy()
    out["mag_uncal"] = out["mag"]
    out["mag"] = mref + zp + surface(x, y)
    resid = d[used] - zp - surface(x[rows][used], y[rows][used])
    ny, nx = shape
    gy, gx = np.mgrid[0 : ny - 1 : 16j, 0 : nx - 1 : 16j]
    return out, {
        "column": column,
        "zp": float(zp + np.mean(surface(gx, gy))),
        "p2p": float(np.ptp(surface(gx, gy))),
        "n": int(used.sum()),
        "rms": float(np.sqrt(np.mean(resid**2))),
        "coeffs": surface.to_list(),
    }
