"""The simulated star field: positions, luminosity function, colours and light curves."""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from photdb.sim.config import COLOUR_VS_R, SimConfig

__all__ = ["focal_plane_extent", "make_star_field", "star_magnitudes", "tangent_wcs"]


def tangent_wcs(
    ra_deg: float,
    dec_deg: float,
    *,
    crpix: tuple[float, float],
    pixscale_arcsec: float,
    rotation_deg: float = 0.0,
) -> WCS:
    """Build a TAN WCS (ICRS) with a CD matrix: north up, east left when rotation is 0.

    `crpix` is the 1-based FITS reference pixel.
    """
    s = pixscale_arcsec / 3600.0
    t = np.deg2rad(rotation_deg)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.crval = [ra_deg, dec_deg]
    w.wcs.crpix = list(crpix)
    w.wcs.cd = s * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    w.wcs.radesys = "ICRS"
    w.wcs.set()
    return w


def focal_plane_extent(config: SimConfig) -> tuple[float, float]:
    """Half-extents (pixels) of the chip mosaic from its centre, along x and y."""
    width = config.n_chips * config.nx + (config.n_chips - 1) * config.chip_gap_pix
    return 0.5 * width, 0.5 * config.ny


def chip_centre_offset(config: SimConfig, chip: int) -> float:
    """x offset (pixels) of the centre of `chip` from the mosaic centre."""
    return (chip - 0.5 * (config.n_chips - 1)) * (config.nx + config.chip_gap_pix)


def _power_law_mags(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float):
    a, b = 10.0 ** (slope * lo), 10.0 ** (slope * hi)
    return np.log10(a + rng.uniform(size=n) * (b - a)) / slope


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size=n))


def make_star_field(config: SimConfig, rng: np.random.Generator) -> Table:
    """Draw the true star list.

    Field stars fill the chip mosaic plus a margin (so the chip edges are crowded too) with
    uniform density and a power-law luminosity function in r; other bands follow from a
    colour ``COLOUR_VS_R[band] * redness`` with ``redness ~ N(1, 0.2)``. A fraction are
    periodic variables; ``n_bright_per_chip`` saturating stars are placed on every chip and
    ``n_transients`` transients anywhere on the chips.

    Returns
    -------
    astropy.table.Table
        Columns ``star_id, ra, dec`` (deg, ICRS), ``mag_<band>`` (mean magnitude; peak for
        transients), ``kind`` (constant/periodic/transient), ``is_variable``, ``waveform``
        (none/sine/sawtooth), ``amplitude`` (peak-to-peak, mag, the same in every band),
        ``period_d``, ``phase`` (phase at MJD 0), ``t0`` (MJD of appearance of transients),
        ``rise_d``, ``decline_mag_per_d`` and ``neighbour_dist_arcsec`` (distance to the nearest
        star not more than 2.5 mag fainter in r).
    """
    hx, hy = focal_plane_extent(config)
    margin = 40.0 + config.dither_arcsec / config.pixscale_arcsec
    area_pix = (2 * (hx + margin)) * (2 * (hy + margin))
    area_arcmin2 = area_pix * (config.pixscale_arcsec / 60.0) ** 2
    n_field = int(rng.poisson(config.density_per_arcmin2 * area_arcmin2))
    fx = rng.uniform(-hx - margin, hx + margin, n_field)
    fy = rng.uniform(-hy - margin, hy + margin, n_field)
    mag_r = _power_law_mags(rng, n_field, *config.mag_range, config.lf_slope)
    kind = np.full(n_field, "constant", dtype="<U9")

    # bright, saturating stars: n per chip, kept 25 pixels inside the chip
    bx, by, bm = [], [], []
    for chip in range(config.n_chips):
        xc = chip_centre_offset(config, chip)
        for _ in range(config.n_bright_per_chip):
            bx.append(xc + rng.uniform(-0.5 * config.nx + 25, 0.5 * config.nx - 25))
            by.append(rng.uniform(-0.5 * config.ny + 25, 0.5 * config.ny - 25))
            bm.append(rng.uniform(*config.bright_mag_range))
    # transients anywhere on a chip, 10 pixels from the edges
    tx, ty = [], []
    for _ in range(config.n_transients):
        chip = int(rng.integers(0, config.n_chips))
        tx.append(chip_centre_offset(config, chip) + rng.uniform(-0.5, 0.5) * (config.nx - 20))
        ty.append(rng.uniform(-0.5, 0.5) * (config.ny - 20))
    tm = rng.uniform(*config.transient_peak_mag_range, size=config.n_transients)

    fx = np.concatenate([fx, bx, tx])
    fy = np.concatenate([fy, by, ty])
    mag_r = np.concatenate([mag_r, bm, tm])
    kind = np.concatenate([kind, ["constant"] * len(bx), ["transient"] * len(tx)]).astype("<U9")
    n = fx.size

    # periodic variables among the field stars
    is_per = np.zeros(n, dtype=bool)
    is_per[:n_field] = rng.uniform(size=n_field) < config.variable_fraction
    kind[is_per] = "periodic"
    amplitude = np.zeros(n)
    period = np.full(n, np.nan)
    phase = np.full(n, np.nan)
    waveform = np.full(n, "none", dtype="<U8")
    k = int(is_per.sum())
    amplitude[is_per] = _log_uniform(rng, *config.amplitude_range_mag, k)
    period[is_per] = _log_uniform(rng, *config.period_range_d, k)
    phase[is_per] = rng.uniform(size=k)
    waveform[is_per] = np.where(rng.uniform(size=k) < 0.5, "sine", "sawtooth")

    w = tangent_wcs(
        config.ra_center,
        config.dec_center,
        crpix=(1.0, 1.0),
        pixscale_arcsec=config.pixscale_arcsec,
        rotation_deg=config.rotation_deg,
    )
    ra, dec = w.wcs_pix2world(fx, fy, 0)
    redness = np.clip(rng.normal(1.0, 0.2, n), 0.3, None)

    tab = Table()
    tab["star_id"] = np.arange(n, dtype=np.int64)
    tab["ra"] = ra
    tab["dec"] = dec
    tab["ra"].unit = tab["dec"].unit = "deg"
    for band in config.filters:
        tab[f"mag_{band}"] = mag_r + COLOUR_VS_R[band] * redness
    tab["kind"] = kind
    tab["is_variable"] = kind != "constant"
    tab["waveform"] = waveform
    tab["amplitude"] = amplitude
    tab["period_d"] = period
    tab["phase"] = phase
    tab["t0"] = np.full(n, np.nan)
    tab["rise_d"] = np.where(kind == "transient", config.transient_rise_d, np.nan)
    tab["decline_mag_per_d"] = np.where(
        kind == "transient", config.transient_decline_mag_per_d, np.nan
    )
    tab["neighbour_dist_arcsec"] = _neighbour_distance(fx, fy, mag_r) * config.pixscale_arcsec
    return tab


def _neighbour_distance(x: np.ndarray, y: np.ndarray, mag: np.ndarray) -> np.ndarray:
    """Distance (pixels) to the nearest star at most 2.5 mag fainter than each star."""
    n = x.size
    if n < 2:
        return np.full(n, np.inf)
    tree = cKDTree(np.column_stack([x, y]))
    kq = min(n, 64)
    dist, idx = tree.query(np.column_stack([x, y]), k=kq)
    ok = (mag[idx] < mag[:, None] + 2.5) & (np.arange(kq) > 0)
    dist = np.where(ok, dist, np.inf)
    return dist.min(axis=1)


def star_magnitudes(stars: Table, mjd: float, band: str) -> np.ndarray:
    """True magnitude of every star in `band` at time `mjd` (UTC MJD, mid-exposure).

    Periodic stars: ``phi = frac(mjd / period_d + phase)``; ``sine`` adds
    ``0.5 * amplitude * sin(2 pi phi)``, ``sawtooth`` adds ``amplitude * (phi - 0.5)`` (sudden
    brightening at phi = 0, then linear fading). Transients are absent (NaN) until ``t0``, rise
    linearly in flux to the peak magnitude over ``rise_d`` days and then fade linearly in
    magnitude at ``decline_mag_per_d``.

    Returns
    -------
    ndarray
        Magnitudes; NaN where the source is absent.
    """
    mag = np.array(stars[f"mag_{band}"], dtype=float)
    kind = np.asarray(stars["kind"])
    per = kind == "periodic"
    if per.any():
        phi = np.mod(mjd / np.asarray(stars["period_d"])[per] + np.asarray(stars["phase"])[per], 1)
        amp = np.asarray(stars["amplitude"])[per]
        saw = np.asarray(stars["waveform"])[per] == "sawtooth"
        dm = np.where(saw, amp * (phi - 0.5), 0.5 * amp * np.sin(2 * np.pi * phi))
        mag[per] += dm
    tr = kind == "transient"
    if tr.any():
        dt = mjd - np.asarray(stars["t0"])[tr]
        rise = np.asarray(stars["rise_d"])[tr]
        decl = np.asarray(stars["decline_mag_per_d"])[tr]
        with np.errstate(divide="ignore", invalid="ignore"):
            dm = np.where(
                dt < rise, -2.5 * np.log10(np.clip(dt / rise, 1e-300, None)), decl * (dt - rise)
            )
        mag[tr] = np.where(dt > 0, mag[tr] + dm, np.nan)
    return mag


def add_proper_motions(stars: Table, config: SimConfig, rng: np.random.Generator) -> None:
    """Add ``pmra`` (μα cos δ) and ``pmdec``, mas/yr, Gaussian with
    ``config.pm_dispersion_mas_yr`` per coordinate (transients: 0), in place."""
    n = len(stars)
    sig = config.pm_dispersion_mas_yr
    still = np.asarray(stars["kind"]) == "transient"
    for name in ("pmra", "pmdec"):
        stars[name] = np.where(still, 0.0, rng.normal(0.0, sig, n)) if sig > 0 else np.zeros(n)
        stars[name].unit = "mas / yr"


def positions_at(stars: Table, mjd: float, config: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """True ``ra, dec`` (deg) at ``mjd``: the truth's (at ``config.start_mjd``) moved
    linearly by the proper motions (exact to << 1 mas over decades at these speeds)."""
    ra, dec = np.asarray(stars["ra"], float), np.asarray(stars["dec"], float)
    if "pmra" not in stars.colnames:
        return ra, dec
    dt_yr = (mjd - config.start_mjd) / 365.25
    dec_t = dec + np.asarray(stars["pmdec"], float) * dt_yr / 3.6e6
    ra_t = ra + np.asarray(stars["pmra"], float) * dt_yr / 3.6e6 / np.cos(np.radians(dec))
    return ra_t, dec_t
