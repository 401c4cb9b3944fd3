"""Simulate a whole survey: exposures on disk plus the truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from astropy.table import Table, vstack
from scipy import ndimage

from photdb.sim.config import ZEROPOINT_ADU_PER_S, SimConfig
from photdb.sim.exposure import (
    chip_header,
    chip_wcs,
    exposure_filename,
    offset_radec,
    primary_header,
    write_exposure,
)
from photdb.sim.field import add_proper_motions, make_star_field, positions_at, star_magnitudes
from photdb.sim.render import (
    add_cosmic_rays,
    add_noise,
    apply_saturation,
    chebyshev_surface,
    render_stars,
    stamp_halfwidths,
    stamp_loss_fraction,
)
from photdb.sim.schedule import make_schedule
from photdb.sim.truth import TRAIL_COLUMNS, SimTruth

__all__ = ["simulate_survey"]

_OBS_DTYPES = {
    "exposure": np.int64,
    "chip": np.int64,
    "star_id": np.int64,
    "x": float,
    "y": float,
    "on_chip": bool,
    "mag": float,
    "response": float,
    "flux_adu": float,
    "saturated": bool,
    "near_defect": bool,
}
_ART_DTYPES = {
    "exposure": np.int64,
    "chip": np.int64,
    "kind": "<U5",
    "x": float,
    "y": float,
    "ra": float,
    "dec": float,
    "x_end": float,
    "y_end": float,
    "flux_adu": float,
    "delta_mag": float,
    "star_ids": "<U200",
}
_CR_DTYPES = {
    "exposure": np.int64,
    "chip": np.int64,
    "x": np.int64,
    "y": np.int64,
    "npix": np.int64,
    "adu": float,
}


def _table(rows: list[dict], dtypes: dict) -> Table:
    """Table with fixed columns even when `rows` is empty."""
    return Table({k: np.array([r[k] for r in rows], dtype=dt) for k, dt in dtypes.items()})


def _random_surface(
    rng: np.random.Generator, shape: tuple[int, int], order: int, peak_to_peak: float
) -> np.ndarray:
    """Chebyshev coefficients of a zero-mean surface of total degree <= `order`."""
    c = np.zeros((order + 1, order + 1))
    for i in range(order + 1):
        for j in range(order + 1 - i):
            if i + j > 0:
                c[i, j] = rng.normal()
    yy, xx = np.meshgrid(np.linspace(0, shape[0] - 1, 17), np.linspace(0, shape[1] - 1, 33))
    vals = chebyshev_surface(xx, yy, c, shape=shape)
    ptp = float(vals.max() - vals.min())
    if peak_to_peak <= 0 or ptp == 0:
        return np.zeros_like(c)
    c *= peak_to_peak / ptp
    c[0, 0] = -float(np.mean(vals) * peak_to_peak / ptp)
    return c


def _sky_coeffs(rng: np.random.Generator, gradient: float) -> np.ndarray:
    c = np.zeros((3, 3))
    c[0, 0] = 1.0
    c[1, 0], c[0, 1] = rng.uniform(-gradient, gradient, 2)
    c[2, 0], c[1, 1], c[0, 2] = rng.uniform(-gradient / 3, gradient / 3, 3)
    return c


def _segment_distance(xx, yy, x0, y0, x1, y1):
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))


def _add_search_trail(model, rng, *, config, fwhm_pix) -> dict:
    """Add a straight satellite trail across the whole chip to `model`; return its row."""
    ny, nx = model.shape
    xc, yc = rng.uniform(0.2, 0.8) * nx, rng.uniform(0.2, 0.8) * ny
    ang = rng.uniform(0.0, np.pi)
    c, s = np.cos(ang), np.sin(ang)
    peak = float(np.exp(rng.uniform(*np.log(config.search_trail_adu_range))))
    sig = fwhm_pix / 2.3548
    yy, xx = np.mgrid[0:ny, 0:nx]
    model += peak * np.exp(-0.5 * (((xx - xc) * s - (yy - yc) * c) / sig) ** 2)
    # ends: where the line leaves the chip
    ts = [t for t in ((-xc) / c, (nx - 1 - xc) / c) if abs(c) > 1e-9]
    ts += [t for t in ((-yc) / s, (ny - 1 - yc) / s) if abs(s) > 1e-9]
    inside = [t for t in ts if -0.5 <= xc + t * c <= nx - 0.5 and -0.5 <= yc + t * s <= ny - 0.5]
    t0, t1 = min(inside), max(inside)
    return dict(x0=xc + t0 * c, y0=yc + t0 * s, x1=xc + t1 * c, y1=yc + t1 * s,
                peak_adu=peak, sigma_pix=sig)  # fmt: skip


def _add_artefacts(model, *, config, rng, exposure, chip, w, x, y, flux, on, stars, band, ep):
    """Add blobs, fakes and a trail to `model` in place; return artefact rows."""
    rows = []
    ny, nx = model.shape
    fwhm_pix = ep["seeing_fwhm_arcsec"] / config.pixscale_arcsec
    psf = dict(
        fwhm_pix=fwhm_pix,
        beta=ep["psf_beta"],
        ellipticity=ep["ellipticity"],
        pa_deg=ep["psf_pa_deg"],
        max_lost_frac=1e-4,
    )
    base = {"exposure": exposure, "chip": chip, "x_end": np.nan, "y_end": np.nan}
    mags = np.asarray(stars[f"mag_{band}"])
    ok = (
        on
        & (np.asarray(stars["kind"]) == "constant")
        & (mags > 16.0)
        & (mags < 20.0)
        & (x > 10)
        & (x < nx - 11)
        & (y > 10)
        & (y < ny - 11)
    )
    cand = np.nonzero(ok)[0]
    pick = rng.choice(cand, min(config.n_artefact_blobs, cand.size), replace=False)
    for i in np.sort(pick):
        dmag = rng.uniform(*config.artefact_dmag_range)
        extra = flux[i] * (10 ** (0.4 * dmag) - 1.0)
        model += render_stars([x[i]], [y[i]], [extra], shape=model.shape, **psf)
        ra, dec = w.wcs_pix2world([x[i]], [y[i]], 0)
        rows.append(
            base
            | dict(kind="blob", x=x[i], y=y[i], ra=ra[0], dec=dec[0], flux_adu=extra)
            | dict(delta_mag=-dmag, star_ids=str(int(stars["star_id"][i])))
        )
    for _ in range(config.n_artefact_fakes):
        fx, fy = rng.uniform(10, nx - 11), rng.uniform(10, ny - 11)
        fflux = ep["exptime_s"] * 10 ** (
            -0.4 * (rng.uniform(18.0, 19.0) + ep["transparency_mag"] - ep["zeropoint_adu_per_s"])
        )
        model += render_stars([fx], [fy], [fflux], shape=model.shape, **psf)
        near = on & (np.hypot(x - fx, y - fy) < fwhm_pix)
        ra, dec = w.wcs_pix2world([fx], [fy], 0)
        rows.append(
            base
            | dict(kind="fake", x=fx, y=fy, ra=ra[0], dec=dec[0], flux_adu=fflux, delta_mag=np.nan)
            | dict(star_ids=",".join(str(int(s)) for s in stars["star_id"][near]))
        )
    if config.artefact_trail_adu > 0:
        x0, y0 = rng.uniform(0.05, 0.35) * nx, rng.uniform(0.2, 0.8) * ny
        ang = rng.uniform(-0.5, 0.5)
        x1, y1 = x0 + 0.6 * nx * np.cos(ang), y0 + 0.6 * nx * np.sin(ang)
        yy, xx = np.mgrid[0:ny, 0:nx]
        sig = fwhm_pix / 2.3548
        model += config.artefact_trail_adu * np.exp(
            -0.5 * (_segment_distance(xx, yy, x0, y0, x1, y1) / sig) ** 2
        )
        near = on & (_segment_distance(x, y, x0, y0, x1, y1) < 1.5 * fwhm_pix)
        ra, dec = w.wcs_pix2world([x0], [y0], 0)
        rows.append(
            base
            | dict(kind="trail", x=x0, y=y0, ra=ra[0], dec=dec[0], x_end=x1, y_end=y1)
            | dict(flux_adu=config.artefact_trail_adu, delta_mag=np.nan)
            | dict(star_ids=",".join(str(int(s)) for s in stars["star_id"][near]))
        )
    return rows


def _well_inside(stars: Table, config: SimConfig, margin: float = 20.0) -> np.ndarray:
    """Stars at least ``margin`` pixels inside a chip at the undithered pointing."""
    inside = np.zeros(len(stars), bool)
    for chip in range(config.n_chips):
        w = chip_wcs(config, chip, config.ra_center, config.dec_center, config.rotation_deg)
        x, y = w.wcs_world2pix(np.asarray(stars["ra"]), np.asarray(stars["dec"]), 0)
        inside |= ((x > margin) & (x < config.nx - 1 - margin)
                   & (y > margin) & (y < config.ny - 1 - margin))  # fmt: skip
    return inside


def _reference_offsets(stars: Table, config: SimConfig, inside: np.ndarray) -> np.ndarray:
    """Per star, its offset on the reference exposures (0 for all but the chosen few, which
    are constant stars of 16-19.5 mag well inside a chip)."""
    out = np.zeros(len(stars))
    if config.n_reference_offsets <= 0:
        return out
    rng = np.random.default_rng([config.seed, 7351])  # its own stream: nothing else moves
    mag = np.asarray(stars[f"mag_{config.filters[0]}"])
    cand = np.flatnonzero((np.asarray(stars["kind"]) == "constant") & (mag > 16.0) & (mag < 19.5)
                          & inside)  # fmt: skip
    pick = rng.choice(cand, min(config.n_reference_offsets, cand.size), replace=False)
    size = rng.uniform(*config.reference_offset_mag_range, pick.size)
    out[pick] = size * rng.choice([-1.0, 1.0], pick.size)
    return out


def _offset_exposures(epochs: Table, config: SimConfig) -> set[int]:
    """Exposures on which the reference offsets show."""
    ref = epochs[np.asarray(epochs["is_reference"])]
    if config.reference_offset_exposures == "all":
        return {int(e) for e in ref["exposure"]}
    return {int(ref["exposure"][np.asarray(ref["filter"]) == f][0])
            for f in set(ref["filter"])}  # fmt: skip


def simulate_survey(outdir: str | Path, config: SimConfig = SimConfig()) -> SimTruth:
    """Simulate a DECam-like crowded-field survey and write its exposures.

    One multi-extension FITS file per exposure is written to `outdir` (named
    ``c4d_<yymmdd>_<hhmmss>_ooi_<band>_v1.fits`` from the UTC start), with an empty primary
    HDU carrying the exposure header and one float32 ``ImageHDU`` per chip (``S1``, ``S2``, ...)
    holding ADU with the sky included. Chip headers carry a TAN WCS whose CRVAL is off by
    ``wcs_error_arcsec`` (plus a small rotation) from the truth.

    Each chip image is: stars (unit-integral Moffat effective PSF, exact flux
    ``10**(-0.4 (mag + transparency - zp)) * exptime * response``) + artefacts (one reference
    exposure only) + sky (level times a quadratic Chebyshev surface), then Poisson noise in
    electrons and Gaussian read noise, cosmic rays, charge bleeding along columns above
    SATURATE and clipping at it, and one dead column. With ``search_trail_fraction`` > 0,
    that fraction of search chips is crossed by a satellite trail (added before the noise).

    Parameters
    ----------
    outdir : str or Path
        Directory for the FITS files (created if needed). The truth is not written; call
        ``truth.write(path)`` for that.
    config : SimConfig, optional
        Survey settings; the output is a deterministic function of them.

    Returns
    -------
    SimTruth
        Stars, exposures, images, per-star observations, artefacts and cosmic rays.

    Examples
    --------
    >>> truth = simulate_survey(tmp_path, SimConfig(n_epochs=2))  # doctest: +SKIP
    >>> truth.epochs["filename", "filter", "is_reference"]  # doctest: +SKIP
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence(config.seed).spawn(6)  # 5th: proper motions, 6th: trails
    rng_field, rng_sched, rng_wcs, rng_img = (np.random.default_rng(s) for s in seeds[:4])
    rng_trail = np.random.default_rng(seeds[5])
    shape = (config.ny, config.nx)

    stars = make_star_field(config, rng_field)
    add_proper_motions(stars, config, np.random.default_rng(seeds[4]))
    epochs = make_schedule(config, rng_sched)
    stars["ref_offset_mag"] = _reference_offsets(stars, config, _well_inside(stars, config))
    offset_on = _offset_exposures(epochs, config)

    is_ref = np.asarray(epochs["is_reference"])
    ref_end = float(np.max(epochs["mjd"][is_ref]))
    last = float(np.max(epochs["mjd"]))
    tr = np.asarray(stars["kind"]) == "transient"
    lo = ref_end + 0.5
    stars["t0"][tr] = rng_wcs.uniform(lo, lo + 0.6 * max(last - lo, 0.0), tr.sum())

    gains = config.gain * (
        1 + rng_wcs.uniform(-config.gain_scatter, config.gain_scatter, config.n_chips)
    )
    bad_cols = rng_wcs.integers(2, config.nx - 2, config.n_chips)
    art_exposure = int(rng_wcs.choice(np.nonzero(is_ref)[0])) if config.reference_artefact else -1
    art_chip = int(rng_wcs.integers(0, config.n_chips))

    extra = {k: [] for k in ("filename", "path", "zeropoint_adu_per_s", "magzero")}
    extra |= {k: [] for k in ("ra_pointing", "dec_pointing", "ra_header", "dec_header")}
    extra |= {k: [] for k in ("wcs_offset_arcsec", "wcs_rotation_error_deg", "has_artefact")}
    images, obs_tables, art_rows, cr_rows, trail_rows = [], [], [], [], []

    for ep in epochs:
        exposure = int(ep["exposure"])
        band = str(ep["filter"])
        zp = ZEROPOINT_ADU_PER_S[band]
        magzero = zp + 2.5 * np.log10(ep["exptime_s"]) - ep["transparency_mag"]
        ra_t, dec_t = offset_radec(
            config.ra_center, config.dec_center, ep["dither_dra_arcsec"], ep["dither_ddec_arcsec"]
        )
        phi = rng_wcs.uniform(0, 2 * np.pi)
        ra_h, dec_h = offset_radec(
            ra_t,
            dec_t,
            config.wcs_error_arcsec * np.cos(phi),
            config.wcs_error_arcsec * np.sin(phi),
        )
        drot = rng_wcs.uniform(-config.wcs_rotation_error_deg, config.wcs_rotation_error_deg)
        fwhm_pix = ep["seeing_fwhm_arcsec"] / config.pixscale_arcsec
        psf = dict(
            fwhm_pix=fwhm_pix,
            beta=ep["psf_beta"],
            ellipticity=ep["ellipticity"],
            pa_deg=ep["psf_pa_deg"],
        )
        mags = star_magnitudes(stars, float(ep["mjd"]), band)
        if exposure in offset_on:  # stars wrong on the reference night
            mags = mags + np.asarray(stars["ref_offset_mag"])
        ep_dict = {k: ep[k] for k in ep.colnames} | {"zeropoint_adu_per_s": zp}
        chips = []
        ra_e, dec_e = positions_at(stars, float(ep["mjd"]), config)
        for chip in range(config.n_chips):
            w = chip_wcs(config, chip, ra_t, dec_t, config.rotation_deg)
            x, y = w.wcs_world2pix(ra_e, dec_e, 0)
            resp_c = _random_surface(rng_img, shape, 3, config.response_error)
            # off-chip stars (wings only) take the response of the nearest chip edge
            xc, yc = np.clip(x, 0, config.nx - 1), np.clip(y, 0, config.ny - 1)
            response = 10.0 ** (-0.4 * chebyshev_surface(xc, yc, resp_c, shape=shape))
            flux = np.where(np.isfinite(mags), 10.0 ** (-0.4 * (mags - magzero)), 0.0) * response
            sky_c = _sky_coeffs(rng_img, config.sky_gradient)
            lost = stamp_loss_fraction(
                flux,
                sky_adu=ep["sky_adu"],
                gain=gains[chip],
                read_noise_e=config.read_noise_e,
                wing_tolerance=config.wing_tolerance,
                max_lost_frac=config.max_lost_frac,
                fwhm_pix=fwhm_pix,
            )
            half = stamp_halfwidths(
                lost, fwhm_pix=fwhm_pix, beta=ep["psf_beta"], ellipticity=ep["ellipticity"]
            )
            ix, iy = np.rint(x), np.rint(y)
            on = (ix >= 0) & (ix <= config.nx - 1) & (iy >= 0) & (iy <= config.ny - 1)
            touch = (
                (ix + half >= 0)
                & (ix - half <= config.nx - 1)
                & (iy + half >= 0)
                & (iy - half <= config.ny - 1)
                & ((flux > 0) | on)
            )
            model = render_stars(
                x[touch], y[touch], flux[touch], shape=shape, max_lost_frac=lost[touch], **psf
            )
            if exposure == art_exposure and chip == art_chip:
                art_rows += _add_artefacts(
                    model, config=config, rng=rng_img, exposure=exposure, chip=chip, w=w,
                    x=x, y=y, flux=flux, on=on, stars=stars, band=band, ep=ep_dict,
                )  # fmt: skip
            if not ep["is_reference"] and config.search_trail_fraction > 0:
                if rng_trail.uniform() < config.search_trail_fraction:
                    row = _add_search_trail(model, rng_trail, config=config, fwhm_pix=fwhm_pix)
                    trail_rows.append(dict(exposure=exposure, chip=chip) | row)
            yy, xx = np.mgrid[0 : config.ny, 0 : config.nx]
            model += ep["sky_adu"] * chebyshev_surface(xx, yy, sky_c, shape=shape)
            img = add_noise(model, gain=gains[chip], read_noise_e=config.read_noise_e, rng=rng_img)
            before = img.copy()
            hits = add_cosmic_rays(
                img, config.cosmic_rays_per_chip, rng=rng_img, adu_range=config.cosmic_ray_adu_range
            )
            cr_mask = img != before
            img = apply_saturation(img, config.saturate_adu)
            img[:, bad_cols[chip]] = config.bad_column_adu
            sat_mask = img >= config.saturate_adu
            defect = sat_mask | cr_mask
            defect[:, bad_cols[chip]] = True
            defect = ndimage.binary_dilation(defect, structure=np.ones((7, 7), dtype=bool))

            sel = np.nonzero(touch)[0]
            jx = np.clip(ix[sel], 0, config.nx - 1).astype(np.int64)
            jy = np.clip(iy[sel], 0, config.ny - 1).astype(np.int64)
            obs = Table()
            obs["exposure"] = np.full(sel.size, exposure, dtype=np.int64)
            obs["chip"] = np.full(sel.size, chip, dtype=np.int64)
            obs["star_id"] = np.asarray(stars["star_id"])[sel]
            obs["x"] = x[sel]
            obs["y"] = y[sel]
            obs["on_chip"] = on[sel]
            obs["mag"] = mags[sel]
            obs["response"] = response[sel]
            obs["flux_adu"] = flux[sel]
            obs["saturated"] = on[sel] & sat_mask[jy, jx]
            obs["near_defect"] = on[sel] & defect[jy, jx]
            obs_tables.append(obs)
            cr_rows += [
                dict(exposure=exposure, chip=chip, x=h[0], y=h[1], npix=h[2], adu=h[3])
                for h in hits
            ]
            cd = w.wcs.cd
            images.append(
                dict(
                    exposure=exposure, chip=chip, extname=f"S{chip + 1}", ccdnum=chip + 1,
                    gain=float(gains[chip]), fwhm_pix=fwhm_pix, bad_column=int(bad_cols[chip]),
                    sky_adu=float(ep["sky_adu"]), sky_coeffs=json.dumps(sky_c.tolist()),
                    response_coeffs=json.dumps(resp_c.tolist()), n_cosmic_rays=len(hits),
                    crval1=w.wcs.crval[0], crval2=w.wcs.crval[1], crpix1=w.wcs.crpix[0],
                    crpix2=w.wcs.crpix[1], cd1_1=cd[0, 0], cd1_2=cd[0, 1], cd2_1=cd[1, 0],
                    cd2_2=cd[1, 1],
                )
            )  # fmt: skip
            w_hdr = chip_wcs(config, chip, ra_h, dec_h, config.rotation_deg + drot)
            chips.append(
                (img, chip_header(config, chip, w_hdr, gain=float(gains[chip]), fwhm_pix=fwhm_pix))
            )
        fname = exposure_filename(float(ep["mjd_start"]), band)
        write_exposure(outdir / fname, primary_header(config, ep_dict, ra_h, dec_h), chips)
        extra["filename"].append(fname)
        extra["path"].append(str((outdir / fname).resolve()))
        extra["zeropoint_adu_per_s"].append(zp)
        extra["magzero"].append(magzero)
        extra["ra_pointing"].append(ra_t)
        extra["dec_pointing"].append(dec_t)
        extra["ra_header"].append(ra_h)
        extra["dec_header"].append(dec_h)
        extra["wcs_offset_arcsec"].append(config.wcs_error_arcsec)
        extra["wcs_rotation_error_deg"].append(drot)
        extra["has_artefact"].append(exposure == art_exposure)

    for k, v in extra.items():
        epochs[k] = v
    return SimTruth(
        config=config,
        stars=stars,
        epochs=epochs,
        images=Table(rows=images),
        observations=vstack(obs_tables) if obs_tables else _table([], _OBS_DTYPES),
        artefacts=_table(art_rows, _ART_DTYPES),
        cosmic_rays=_table(cr_rows, _CR_DTYPES),
        trails=_table(trail_rows, TRAIL_COLUMNS),
    )
