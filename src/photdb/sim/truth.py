"""The truth of a simulated survey: astropy Tables with ECSV persistence."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from photdb.sim.config import SimConfig
from photdb.sim.render import chebyshev_surface

__all__ = ["TABLE_NAMES", "SimTruth"]

#: Tables of a `SimTruth`, in the order they are written.
TABLE_NAMES = ("stars", "epochs", "images", "observations", "artefacts", "cosmic_rays", "trails")

#: Columns of the ``trails`` table (an empty one has them too).
TRAIL_COLUMNS = {"exposure": np.int64, "chip": np.int64, "x0": float, "y0": float,
                 "x1": float, "y1": float, "peak_adu": float, "sigma_pix": float}  # fmt: skip


def empty_trails() -> Table:
    """A ``trails`` table with no rows."""
    return Table({k: np.zeros(0, dtype=t) for k, t in TRAIL_COLUMNS.items()})


@dataclass(frozen=True)
class SimTruth:
    """Everything that is true about a simulated survey.

    Pixel positions use the numpy convention: ``x`` is the column, ``y`` the row and the centre
    of the first pixel is ``(0, 0)`` (FITS pixel = this + 1). Times are UTC MJD; ``mjd`` is
    mid-exposure (light curves are evaluated there), ``mjd_start`` the MJD-OBS of the header.

    Attributes
    ----------
    config : SimConfig
        The configuration that produced the survey.
    stars : astropy.table.Table
        One row per source, see `photdb.sim.field.make_star_field`; transients carry ``t0``.
    epochs : astropy.table.Table
        One row per exposure: ``exposure, expnum, filter, night, mjd_start, mjd, exptime_s,
        is_reference, hour_angle_h, airmass, seeing_fwhm_arcsec, psf_beta, ellipticity,
        psf_pa_deg, transparency_mag, sky_adu, dither_dra_arcsec, dither_ddec_arcsec,
        filename, path, zeropoint_adu_per_s`` (nominal), ``magzero`` (mag giving 1 ADU in the
        exposure: nominal + 2.5 log10(exptime) - transparency), ``ra_pointing, dec_pointing``
        (true), ``ra_header, dec_header`` (header CRVAL), ``wcs_offset_arcsec,
        wcs_rotation_error_deg, has_artefact``.
    images : astropy.table.Table
        One row per (exposure, chip): ``exposure, chip`` (0-based), ``extname, ccdnum, gain,
        fwhm_pix, bad_column`` (dead column index), ``sky_adu`` (level), ``sky_coeffs`` and
        ``response_coeffs`` (JSON 2-D Chebyshev coefficients, see `sky_image` and `response`),
        ``n_cosmic_rays`` and the *true* WCS ``crval1, crval2, crpix1, crpix2, cd1_1, cd1_2,
        cd2_1, cd2_2`` (see `true_wcs`).
    observations : astropy.table.Table
        One row per (exposure, chip, rendered star): ``x, y`` (true pixel position), ``on_chip``
        (centre inside the chip; off-chip rows only contribute wings), ``mag`` (true magnitude
        at ``mjd``; NaN if absent), ``response`` (multiplicative response error at the star),
        ``flux_adu`` (total flux rendered in ADU = 10**(-0.4 (mag - magzero)) * response;
        0 if absent), ``saturated`` (nearest pixel at SATURATE) and ``near_defect`` (within
        3 pixels of a saturated, cosmic-ray or bad-column pixel).
    artefacts : astropy.table.Table
        Artefacts on the one reference exposure: ``exposure, chip, kind`` (blob: on a known
        star, fake: a star-like blob elsewhere, trail: satellite-trail segment), ``x, y, ra,
        dec`` (blob centre or trail start), ``x_end, y_end`` (trail end), ``flux_adu`` (blob
        flux, or trail peak ADU/pixel), ``delta_mag`` (brightening of the star for blobs, < 0)
        and ``star_ids`` (comma-separated ids of stars affected).
    cosmic_rays : astropy.table.Table
        ``exposure, chip, x, y, npix, adu`` for each hit.
    trails : astropy.table.Table
        Satellite trails across search chips (``SimConfig.search_trail_fraction``):
        ``exposure, chip, x0, y0, x1, y1`` (the line's ends on the chip border, pixels),
        ``peak_adu`` (surface brightness on the line, ADU/pixel) and ``sigma_pix`` (its
        Gaussian width). Empty when the option is off.
    """

    config: SimConfig
    stars: Table
    epochs: Table
    images: Table
    observations: Table
    artefacts: Table
    cosmic_rays: Table
    trails: Table = field(default_factory=empty_trails)

    def write(self, path: str | Path) -> Path:
        """Write the tables as ``<name>.ecsv`` and the configuration as ``config.json``.

        Parameters
        ----------
        path : str or Path
            Directory (created if needed).

        Returns
        -------
        Path
            The directory.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name in TABLE_NAMES:
            getattr(self, name).write(path / f"{name}.ecsv", format="ascii.ecsv", overwrite=True)
        (path / "config.json").write_text(json.dumps(self.config.to_dict(), indent=1))
        return path

    @classmethod
    def read(cls, path: str | Path) -> SimTruth:
        """Read a truth directory written by `write`."""
        path = Path(path)
        config = SimConfig.from_dict(json.loads((path / "config.json").read_text()))
        tables = {
            n: Table.read(path / f"{n}.ecsv", format="ascii.ecsv")
            for n in TABLE_NAMES
            if n != "trails" or (path / f"{n}.ecsv").exists()  # older truth: no trails
        }
        for tab in tables.values():
            for name in tab.colnames:  # ECSV writes "" as a blank read back as masked
                if tab[name].dtype.kind == "U" and getattr(tab[name], "mask", None) is not None:
                    tab[name] = tab[name].filled("")
        return cls(config=config, **tables)

    def astrometric_catalog(
        self, *, mag_limit: float = 20.0, noise_mas: float = 15.0, seed: int = 0,
        proper_motions: bool = True,
    ) -> Table:  # fmt: skip
        """A Gaia-like astrometric catalogue of the field: the truth, a little noisy.

        Parameters
        ----------
        mag_limit : float
            Faintest star kept (mag in the first simulated filter).
        noise_mas : float
            Without proper motions: Gaussian position error per coordinate
            (milliarcsec) at the survey's start. With them the errors are Gaia DR3's
            (:meth:`gaia_dr3`).
        seed : int
            Seed of the noise.
        proper_motions : bool
            True (default): positions at ``config.catalog_epoch_yr`` with the Gaia
            columns ``pmra``, ``pmdec``, ``ref_epoch`` and their errors; False: the
            older form, positions at the survey's start and no proper motions.

        Returns
        -------
        astropy.table.Table
            ``ra``, ``dec`` (deg), ``mag`` (first filter), ``mag_<band>`` and
            ``mag_<band>_err`` for every simulated band (true mean magnitude plus
            Gaussian noise of the stated error), ``star_id`` and, with proper
            motions, Gaia's astrometric columns; transients are left out.
        """
        band = self.config.filters[0]
        mag = np.asarray(self.stars[f"mag_{band}"], float)
        keep = (mag <= mag_limit) & (np.asarray(self.stars["kind"]) != "transient")
        rng = np.random.default_rng(seed)
        n = int(keep.sum())
        dec = np.asarray(self.stars["dec"], float)[keep]
        sig = noise_mas / 3.6e6
        out = Table()
        out["star_id"] = np.asarray(self.stars["star_id"])[keep]
        out["ra"] = np.asarray(self.stars["ra"], float)[keep] + rng.normal(0, sig, n) / np.cos(
            np.radians(dec)
        )
        out["dec"] = dec + rng.normal(0, sig, n)
        out["mag"] = mag[keep]
        out["mag"].unit = "mag"
        # survey-band photometry (DECaPS/Pan-STARRS-like): the mean magnitude with an
        # error of 5 mmag plus photon noise reaching 0.02 mag at 20 mag
        for b in self.config.filters:
            m = np.asarray(self.stars[f"mag_{b}"], float)[keep]
            err = np.hypot(0.005, 0.02 * 10 ** (0.4 * (m - 20.0)))
            out[f"mag_{b}"] = m + rng.normal(0.0, err)
            out[f"mag_{b}_err"] = err
            out[f"mag_{b}"].unit = out[f"mag_{b}_err"].unit = "mag"
        out["ra"].unit = out["dec"].unit = "deg"
        if proper_motions:
            gaia = self.gaia_dr3(mag_limit=np.inf, seed=seed + 1)
            row = {int(v) - 4_000_000_000: k for k, v in enumerate(gaia["source_id"])}
            gaia = gaia[[row[int(v)] for v in out["star_id"]]]
            for name in ("ra", "dec"):
                out[name] = gaia[name]
            for name in ("ra_error", "dec_error", "pmra", "pmra_error", "pmdec",
                         "pmdec_error", "ref_epoch"):  # fmt: skip
                out[name] = gaia[name]
        return out

    def gaia_dr3(self, *, mag_limit: float = 20.0, seed: int = 1) -> Table:
        """The field as the Gaia archive delivers DR3 ``gaia_source`` rows.

        Columns (names, units and order of the archive): ``source_id``, ``ref_epoch``
        (yr, ``config.catalog_epoch_yr``), ``ra``, ``ra_error``, ``dec``,
        ``dec_error`` (deg, mas), ``parallax``, ``parallax_error`` (mas), ``pmra``,
        ``pmra_error``, ``pmdec``, ``pmdec_error`` (mas/yr), ``phot_g_mean_mag``
        (mag: the simulated r). Positions are the truth moved back from the survey's
        start to the catalogue epoch, plus noise of the quoted errors, which follow
        DR3's dependence on G (0.09 mas at G = 17, x 1.66 per magnitude fainter;
        proper-motion errors 1.25 times those, per year). Transients are left out;
        ``source_id`` is the truth's ``star_id`` plus a large constant.
        """
        cfg = self.config
        g = np.asarray(self.stars["mag_r" if "mag_r" in self.stars.colnames
                                  else f"mag_{cfg.filters[0]}"], float)  # fmt: skip
        keep = (g <= mag_limit) & (np.asarray(self.stars["kind"]) != "transient")
        rng = np.random.default_rng(seed)
        n = int(keep.sum())
        g = g[keep]
        pos_err = np.maximum(0.09 * 10 ** (0.22 * (g - 17.0)), 0.02)  # mas
        pm_err = 1.25 * pos_err  # mas/yr
        ra0 = np.asarray(self.stars["ra"], float)[keep]
        dec0 = np.asarray(self.stars["dec"], float)[keep]
        pmra = np.asarray(self.stars["pmra"], float)[keep] if "pmra" in self.stars.colnames \
            else np.zeros(n)  # fmt: skip
        pmdec = np.asarray(self.stars["pmdec"], float)[keep] if "pmdec" in self.stars.colnames \
            else np.zeros(n)  # fmt: skip
        start_yr = 2000.0 + (cfg.start_mjd - 51544.5) / 365.25
        dt = cfg.catalog_epoch_yr - start_yr
        dec = dec0 + (pmdec * dt + rng.normal(0.0, pos_err)) / 3.6e6
        ra = ra0 + (pmra * dt + rng.normal(0.0, pos_err)) / 3.6e6 / np.cos(np.radians(dec0))
        out = Table()
        out["source_id"] = np.asarray(self.stars["star_id"], np.int64)[keep] + 4_000_000_000
        out["ref_epoch"] = np.full(n, cfg.catalog_epoch_yr)
        out["ra"], out["ra_error"] = ra, pos_err
        out["dec"], out["dec_error"] = dec, pos_err
        out["parallax"] = np.full(n, 0.125) + rng.normal(0.0, pos_err)  # bulge, 8 kpc
        out["parallax_error"] = pos_err
        out["pmra"], out["pmra_error"] = pmra + rng.normal(0.0, pm_err), pm_err
        out["pmdec"], out["pmdec_error"] = pmdec + rng.normal(0.0, pm_err), pm_err
        out["phot_g_mean_mag"] = g
        units = {"ref_epoch": "yr", "ra": "deg", "dec": "deg", "phot_g_mean_mag": "mag"}
        units |= {k: "mas" for k in ("ra_error", "dec_error", "parallax", "parallax_error")}
        units |= {k: "mas / yr" for k in ("pmra", "pmra_error", "pmdec", "pmdec_error")}
        for k, v in units.items():
            out[k].unit = v
        return out

    def _image_row(self, exposure: int, chip: int):
        sel = (self.images["exposure"] == exposure) & (self.images["chip"] == chip)
        if sel.sum() != 1:
            raise KeyError(f"no image for exposure {exposure}, chip {chip}")
        return self.images[np.nonzero(sel)[0][0]]

    def true_wcs(self, exposure: int, chip: int) -> WCS:
        """The exact TAN WCS of a chip (the header WCS is deliberately off)."""
        row = self._image_row(exposure, chip)
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.cunit = ["deg", "deg"]
        w.wcs.crval = [row["crval1"], row["crval2"]]
        w.wcs.crpix = [row["crpix1"], row["crpix2"]]
        w.wcs.cd = [[row["cd1_1"], row["cd1_2"]], [row["cd2_1"], row["cd2_2"]]]
        w.wcs.radesys = "ICRS"
        w.wcs.set()
        return w

    def sky_image(self, exposure: int, chip: int) -> np.ndarray:
        """The noiseless sky (ADU per pixel) of a chip."""
        row = self._image_row(exposure, chip)
        shape = (self.config.ny, self.config.nx)
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
        coeffs = np.array(json.loads(row["sky_coeffs"]))
        return row["sky_adu"] * chebyshev_surface(xx, yy, coeffs, shape=shape)

    def response(self, exposure: int, chip: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Multiplicative response error at pixel positions of a chip (clipped to the chip)."""
        row = self._image_row(exposure, chip)
        coeffs = np.array(json.loads(row["response_coeffs"]))
        shape = (self.config.ny, self.config.nx)
        x = np.clip(np.asarray(x, dtype=float), 0, shape[1] - 1)
        y = np.clip(np.asarray(y, dtype=float), 0, shape[0] - 1)
        return 10.0 ** (-0.4 * chebyshev_surface(x, y, coeffs, shape=shape))
