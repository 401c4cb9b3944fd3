"""DECam-like exposure files: chip WCS, primary and chip headers, multi-extension FITS."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from astropy.coordinates import Angle
from astropy.io import fits
from astropy.wcs import WCS

from photdb.sim.config import (
    CTIO_ELEV_M,
    CTIO_LAT_DEG,
    CTIO_LON_DEG,
    DECAM_FILTER_NAMES,
    ZEROPOINT_ADU_PER_S,
    SimConfig,
)
from photdb.sim.field import chip_centre_offset, tangent_wcs

__all__ = [
    "chip_wcs",
    "exposure_filename",
    "mjd_to_datetime",
    "offset_radec",
    "write_exposure",
]

_MJD0 = datetime(1858, 11, 17)


def mjd_to_datetime(mjd: float) -> datetime:
    """Convert a UTC MJD to a naive UTC datetime (no leap-second tables needed)."""
    return _MJD0 + timedelta(days=float(mjd))


def exposure_filename(mjd_start: float, band: str) -> str:
    """DECam archive-style name ``c4d_<yymmdd>_<hhmmss>_ooi_<band>_v1.fits`` (UTC start)."""
    t = mjd_to_datetime(mjd_start)
    return f"c4d_{t:%y%m%d}_{t:%H%M%S}_ooi_{band}_v1.fits"


def offset_radec(
    ra_deg: float, dec_deg: float, dra_arcsec: float, ddec_arcsec: float
) -> tuple[float, float]:
    """Move a position by small offsets east (``dra``, on the sky) and north, arcsec."""
    dec = dec_deg + ddec_arcsec / 3600.0
    ra = ra_deg + dra_arcsec / 3600.0 / np.cos(np.deg2rad(0.5 * (dec + dec_deg)))
    return float(ra), float(dec)


def chip_wcs(
    config: SimConfig, chip: int, ra_deg: float, dec_deg: float, rotation_deg: float
) -> WCS:
    """TAN WCS of `chip` for a pointing: CRVAL is the pointing, CRPIX places the chip.

    The chip centre sits at ``chip_centre_offset`` pixels along x from the pointing, so chips
    lie side by side on the sky.
    """
    crpix1 = 0.5 * (config.nx - 1) - chip_centre_offset(config, chip) + 1.0
    crpix2 = 0.5 * (config.ny - 1) + 1.0
    return tangent_wcs(
        ra_deg,
        dec_deg,
        crpix=(crpix1, crpix2),
        pixscale_arcsec=config.pixscale_arcsec,
        rotation_deg=rotation_deg,
    )


def _sexagesimal(ra_deg: float, dec_deg: float) -> tuple[str, str]:
    ra = Angle(ra_deg, unit="deg").to_string(unit="hourangle", sep=":", precision=2, pad=True)
    dec = Angle(dec_deg, unit="deg").to_string(
        unit="deg", sep=":", precision=1, pad=True, alwayssign=True
    )
    return ra, dec


def primary_header(config: SimConfig, epoch: dict, ra_hdr: float, dec_hdr: float) -> fits.Header:
    """Exposure-level header (empty primary HDU) in DECam InstCal style."""
    t0 = mjd_to_datetime(epoch["mjd_start"])
    ra_s, dec_s = _sexagesimal(ra_hdr, dec_hdr)
    band = epoch["filter"]
    h = fits.Header()
    h["OBSTYPE"] = ("object", "Observation type")
    h["PROCTYPE"] = ("InstCal", "Processing type")
    h["PRODTYPE"] = ("image", "Product type")
    h["INSTRUME"] = ("DECam", "Instrument")
    h["TELESCOP"] = ("CTIO 4.0-m telescope", "Telescope")
    h["OBSERVAT"] = ("CTIO", "Observatory")
    h["OBS-LAT"] = (CTIO_LAT_DEG, "[deg] Observatory latitude")
    h["OBS-LONG"] = (CTIO_LON_DEG, "[deg] Observatory east longitude")
    h["OBS-ELEV"] = (CTIO_ELEV_M, "[m] Observatory elevation")
    h["EXPNUM"] = (int(epoch["expnum"]), "Exposure number")
    h["OBJECT"] = ("photdb-sim bulge", "Field name")
    h["TIMESYS"] = ("UTC", "Time system")
    h["DATE-OBS"] = (t0.isoformat(timespec="microseconds"), "UTC start of exposure")
    h["TIME-OBS"] = (t0.strftime("%H:%M:%S.%f"), "UTC start of exposure")
    h["MJD-OBS"] = (float(epoch["mjd_start"]), "MJD (UTC) of exposure start")
    h["MJD-END"] = (float(epoch["mjd_start"]) + epoch["exptime_s"] / 86400.0, "MJD of end")
    h["EXPTIME"] = (float(epoch["exptime_s"]), "[s] Exposure time")
    h["EXPREQ"] = (float(epoch["exptime_s"]), "[s] Requested exposure time")
    h["FILTER"] = (DECAM_FILTER_NAMES[band], "Unique filter identifier")
    h["BAND"] = (band, "Filter band")
    h["RA"] = (ra_s, "[HH:MM:SS] Target RA")
    h["DEC"] = (dec_s, "[DD:MM:SS] Target Dec")
    h["TELRA"] = (ra_s, "[HH:MM:SS] Telescope RA")
    h["TELDEC"] = (dec_s, "[DD:MM:SS] Telescope Dec")
    h["RADESYS"] = ("ICRS", "Coordinate system")
    h["HA"] = (float(epoch["hour_angle_h"]), "[h] Hour angle at start")
    h["AIRMASS"] = (round(float(epoch["airmass"]), 4), "Airmass at start")
    h["MAGZERO"] = (
        round(ZEROPOINT_ADU_PER_S[band] + 2.5 * np.log10(epoch["exptime_s"]), 3),
        "Nominal zero point (mag for 1 ADU), approximate",
    )
    h["NEXTEND"] = (config.n_chips, "Number of extensions")
    h["SIMULATE"] = (True, "Simulated by photdb.sim")
    h["SIMSEED"] = (config.seed, "photdb.sim random seed")
    return h


def chip_header(
    config: SimConfig, chip: int, w: WCS, *, gain: float, fwhm_pix: float
) -> fits.Header:
    """Chip header: identification, detector keywords and the (header) TAN WCS with CD."""
    h = fits.Header()
    name = f"S{chip + 1}"
    h["EXTNAME"] = (name, "Extension name")
    h["CCDNUM"] = (chip + 1, "CCD number")
    h["DETPOS"] = (name, "Detector position")
    h["INHERIT"] = (True, "Inherit the primary header")
    h["GAINA"] = (round(gain, 4), "[e-/ADU] Gain amp A")
    h["GAINB"] = (round(gain, 4), "[e-/ADU] Gain amp B")
    h["GAIN"] = (round(gain, 4), "[e-/ADU] Gain")
    h["RDNOISEA"] = (config.read_noise_e, "[e-] Read noise amp A")
    h["RDNOISEB"] = (config.read_noise_e, "[e-] Read noise amp B")
    h["RDNOISE"] = (config.read_noise_e, "[e-] Read noise")
    h["SATURATA"] = (config.saturate_adu, "[ADU] Saturation amp A")
    h["SATURATB"] = (config.saturate_adu, "[ADU] Saturation amp B")
    h["SATURATE"] = (config.saturate_adu, "[ADU] Saturation level")
    h["FWHM"] = (round(fwhm_pix, 3), "[pix] PSF FWHM")
    h["WCSAXES"] = 2
    h["CTYPE1"] = "RA---TAN"
    h["CTYPE2"] = "DEC--TAN"
    h["CUNIT1"] = "deg"
    h["CUNIT2"] = "deg"
    h["CRVAL1"] = float(w.wcs.crval[0])
    h["CRVAL2"] = float(w.wcs.crval[1])
    h["CRPIX1"] = float(w.wcs.crpix[0])
    h["CRPIX2"] = float(w.wcs.crpix[1])
    cd = w.wcs.cd
    h["CD1_1"] = float(cd[0, 0])
    h["CD1_2"] = float(cd[0, 1])
    h["CD2_1"] = float(cd[1, 0])
    h["CD2_2"] = float(cd[1, 1])
    h["RADESYS"] = "ICRS"
    return h


def write_exposure(
    path: Path, primary: fits.Header, chips: list[tuple[np.ndarray, fits.Header]]
) -> None:
    """Write an empty primary HDU followed by one float32 ``ImageHDU`` per chip."""
    hdus = [fits.PrimaryHDU(header=primary)]
    for data, header in chips:
        hdus.append(fits.ImageHDU(data=np.asarray(data, dtype=np.float32), header=header))
    fits.HDUList(hdus).writeto(path, overwrite=True)
