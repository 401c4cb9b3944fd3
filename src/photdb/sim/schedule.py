"""Observing schedule: references on separate early nights, then search epochs."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from photdb.sim.config import CTIO_LAT_DEG, CTIO_LON_DEG, SimConfig

__all__ = ["airmass", "make_schedule", "transit_mjd"]


def transit_mjd(night_mjd: float, ra_deg: float, lon_deg: float = CTIO_LON_DEG) -> float:
    """MJD (UTC) of the meridian transit of `ra_deg` closest after ``floor(night_mjd)``.

    Uses the IAU 1982 GMST polynomial (ample for scheduling; no IERS tables needed).
    """
    day = np.floor(night_mjd)
    gmst0 = 18.697374558 + 24.06570982441908 * (day + 2400000.5 - 2451545.0)
    lst0 = np.mod(gmst0 + lon_deg / 15.0, 24.0)
    hours = np.mod(ra_deg / 15.0 - lst0, 24.0) / 1.00273790935
    return float(day + hours / 24.0)


def airmass(hour_angle_h: float, dec_deg: float, lat_deg: float = CTIO_LAT_DEG) -> float:
    """Plane-parallel airmass ``sec z`` for an hour angle in hours."""
    h = np.deg2rad(15.0 * hour_angle_h)
    d, p = np.deg2rad(dec_deg), np.deg2rad(lat_deg)
    cosz = np.sin(p) * np.sin(d) + np.cos(p) * np.cos(d) * np.cos(h)
    return float(1.0 / cosz)


def make_schedule(config: SimConfig, rng: np.random.Generator) -> Table:
    """Exposure times, bands and per-exposure conditions, in chronological order.

    Reference exposures (one per band per night) are taken on `n_references` nights spaced by
    ``reference_night_spacing_d``; search epochs follow ``search_gap_d`` nights later: half
    of them (rounded up) as repeated visits on the first search night, the rest on distinct
    random later nights within ``search_span_d``. Each visit takes one exposure per band.
    Exposures start near the field's transit.

    Returns
    -------
    astropy.table.Table
        ``exposure, expnum, filter, night, mjd_start, mjd`` (mid-exposure, UTC), ``exptime_s``,
        ``is_reference, hour_angle_h, airmass, seeing_fwhm_arcsec, psf_beta, ellipticity,
        psf_pa_deg, transparency_mag, sky_adu, dither_dra_arcsec, dither_ddec_arcsec``.
    """
    c = config
    ref_nights = [k * c.reference_night_spacing_d for k in range(c.n_references)]
    first = ref_nights[-1] + c.search_gap_d
    n_first = (c.n_epochs + 1) // 2
    n_rest = c.n_epochs - n_first
    later = np.sort(
        rng.choice(np.arange(1, max(c.search_span_d, n_rest + 1) + 1), n_rest, replace=False)
    )
    visits = [(n, True, 0) for n in ref_nights]
    visits += [(first, False, k) for k in range(n_first)]
    visits += [(first + int(n), False, 0) for n in later]

    rows = []
    exp_len_d = (c.exptime_s + c.overhead_s) / 86400.0
    ha0 = {night: rng.uniform(-1.5, -0.5) for night in sorted({v[0] for v in visits})}
    for night, is_ref, k in visits:
        t_transit = transit_mjd(c.start_mjd + night, c.ra_center)
        t = t_transit + ha0[night] / 24.0 + k * c.visit_spacing_min / 1440.0
        for band in c.filters:
            seeing_range = c.reference_seeing_range_arcsec if is_ref else c.seeing_range_arcsec
            ha = (t - t_transit) * 24.0 * 1.00273790935
            rows.append(
                {
                    "filter": band,
                    "night": int(night),
                    "mjd_start": t,
                    "mjd": t + 0.5 * c.exptime_s / 86400.0,
                    "exptime_s": c.exptime_s,
                    "is_reference": is_ref,
                    "hour_angle_h": ha,
                    "airmass": airmass(ha, c.dec_center),
                    "seeing_fwhm_arcsec": rng.uniform(*seeing_range),
                    "psf_beta": c.psf_beta,
                    "ellipticity": rng.uniform(0.0, c.max_ellipticity),
                    "psf_pa_deg": rng.uniform(0.0, 180.0),
                    "transparency_mag": rng.uniform(*c.transparency_range_mag),
                    "sky_adu": rng.uniform(*c.sky_range_adu),
                }
            )
            t += exp_len_d
    rows.sort(key=lambda r: r["mjd_start"])
    tab = Table(rows=rows)
    r = c.dither_arcsec * np.sqrt(rng.uniform(size=len(tab)))
    ang = rng.uniform(0.0, 2 * np.pi, size=len(tab))
    tab["dither_dra_arcsec"] = r * np.cos(ang)
    tab["dither_ddec_arcsec"] = r * np.sin(ang)
    tab.add_column(np.arange(len(tab), dtype=np.int64), name="exposure", index=0)
    tab.add_column(900000 + tab["exposure"], name="expnum", index=1)
    return tab
