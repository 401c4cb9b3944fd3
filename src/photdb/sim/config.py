"""Configuration and instrument constants for the survey simulator."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = [
    "CTIO_ELEV_M",
    "CTIO_LAT_DEG",
    "CTIO_LON_DEG",
    "DECAM_FILTER_NAMES",
    "COLOUR_VS_R",
    "ZEROPOINT_ADU_PER_S",
    "SimConfig",
]

#: Cerro Tololo (Blanco telescope) geodetic position.
CTIO_LAT_DEG = -30.16606
CTIO_LON_DEG = -70.81489
CTIO_ELEV_M = 2215.0

#: DECam FILTER keyword values (long form) per band.
DECAM_FILTER_NAMES = {
    "u": "u DECam c0006 3500.0 1000.0",
    "g": "g DECam SDSS c0001 4720.0 1520.0",
    "r": "r DECam SDSS c0002 6415.0 1480.0",
    "i": "i DECam SDSS c0003 7835.0 1470.0",
    "z": "z DECam SDSS c0004 9260.0 1520.0",
    "Y": "Y DECam c0005 10095.0 1130.0",
}

#: Nominal zero points (mag giving 1 ADU/s, photometric sky) per band.
ZEROPOINT_ADU_PER_S = {"u": 23.9, "g": 26.0, "r": 26.2, "i": 25.9, "z": 25.5, "Y": 24.4}

#: Mean colour (mag_band - mag_r) of a reddened bulge star, scaled per star by a redness factor.
COLOUR_VS_R = {"u": 2.6, "g": 1.3, "r": 0.0, "i": -0.6, "z": -0.95, "Y": -1.05}


@dataclass(frozen=True)
class SimConfig:
    """Settings of a simulated DECam-like crowded-field survey.

    Every quantity is drawn from a generator seeded with `seed`, so the same configuration
    always gives the same pixels and truth tables.

    Attributes
    ----------
    nx, ny : int
        Chip size in pixels (columns, rows); default 512 x 256 (DECam is 2048 x 4096).
    n_chips : int
        Number of chips, placed side by side along x on the sky; default 2.
    chip_gap_pix : int
        Gap between adjacent chips in pixels; default 153 (DECam).
    filters : tuple of str
        Bands observed, each from ``u g r i z Y``; default ``("g", "r")``.
    n_epochs : int
        Search exposures per filter; default 5.
    n_references : int
        Reference exposures per filter, each on its own night; default 3.
    start_mjd : float
        MJD (UTC) of the first night; default 59295 (2021-03-22, the notebook's data).
    reference_night_spacing_d : int
        Nights between successive reference nights; default 2.
    search_gap_d : int
        Nights between the last reference night and the first search night; default 7.
    search_span_d : int
        Search epochs are spread over this many nights; default 45.
    exptime_s : float
        Exposure time in seconds; default 90.
    overhead_s : float
        Read-out and slew time between exposures in seconds; default 30.
    visit_spacing_min : float
        Minutes between repeated visits on the same night; default 20.
    density_per_arcmin2 : float
        Surface density of field stars with reference-band (r) magnitude in `mag_range`,
        per arcmin^2; default 800 (bulge-like: ~2000 stars on a 512 x 256 chip).
    mag_range : tuple of float
        r-band magnitude range of the field luminosity function; default (14.5, 23.0).
    lf_slope : float
        Luminosity-function slope, dN/dm proportional to 10**(lf_slope * m); default 0.32.
    n_bright_per_chip : int
        Extra very bright (saturating, bleeding) stars placed on each chip; default 2.
    bright_mag_range : tuple of float
        r-band magnitude range of those bright stars; default (12.5, 14.0).
    pixscale_arcsec : float
        Pixel scale in arcsec/pixel; default 0.263.
    ra_center, dec_center : float
        Field centre in degrees (ICRS); default (271.49, -28.91), the notebook's field.
    rotation_deg : float
        Position angle of the chip y axis east of north, degrees; default 0.
    dither_arcsec : float
        Maximum true pointing offset of each exposure from the field centre, arcsec; default 3.
    seeing_range_arcsec : tuple of float
        Uniform range of the PSF FWHM of search exposures, arcsec; default (0.9, 1.6).
    reference_seeing_range_arcsec : tuple of float
        Uniform range of the PSF FWHM of reference exposures, arcsec; default (0.9, 1.2).
    psf_beta : float
        Moffat beta of the PSF; default 3.0.
    max_ellipticity : float
        PSF ellipticity (1 - b/a) drawn uniformly in [0, max]; default 0.05.
    sky_range_adu : tuple of float
        Uniform range of the sky level at the chip centre, ADU/pixel; default (300, 2000).
    sky_gradient : float
        Amplitude of the linear sky terms as a fraction of the level (quadratic terms a third of
        it); default 0.03.
    gain : float
        Mean gain in e-/ADU; each chip draws its own within +-`gain_scatter`; default 4.0.
    gain_scatter : float
        Fractional chip-to-chip gain scatter; default 0.05.
    read_noise_e : float
        Read noise in electrons; default 7.0.
    saturate_adu : float
        Saturation level (SATURATE) in ADU; charge above it bleeds along columns; default 40000.
    response_error : float
        Peak-to-peak amplitude in magnitudes of the smooth multiplicative response error
        (a random cubic 2-D Chebyshev surface in magnitude with zero mean over the chip, drawn
        anew for every exposure and chip); default 0.07.
    transparency_range_mag : tuple of float
        Uniform range of the per-exposure extinction by clouds, mag; default (0.0, 0.3).
    cosmic_rays_per_chip : int
        Cosmic-ray hits (1-3 pixels each) per chip and exposure; default 20.
    cosmic_ray_adu_range : tuple of float
        Log-uniform range of the charge per cosmic-ray pixel, ADU; default (300, 5000).
    bad_column_adu : float
        Constant value of the one dead column per chip, ADU; default 0.
    wcs_error_arcsec : float
        Offset of the header CRVAL from the true pointing (random direction, this size), arcsec;
        default 1.0.
    wcs_rotation_error_deg : float
        Header rotation error drawn uniformly in +-this, degrees; default 0.01.
    variable_fraction : float
        Fraction of field stars that are periodic variables; default 0.05.
    amplitude_range_mag : tuple of float
        Log-uniform range of the peak-to-peak amplitude of periodic variables, mag;
        default (0.1, 1.0).
    period_range_d : tuple of float
        Log-uniform range of the periods, days; default (0.2, 30).
    n_transients : int
        Number of new sources (absent from the references) in the field; default 6.
    transient_peak_mag_range : tuple of float
        Uniform range of the transients' r-band peak magnitude; default (17.0, 20.0).
    transient_rise_d : float
        Time from appearance (linear rise in flux) to peak, days; default 2.0.
    transient_decline_mag_per_d : float
        Linear decline after peak, mag/day; default 0.05.
    n_reference_offsets : int
        Constant stars (16-19.5 mag in the reference band, the first filter) that are off by
        a fixed amount on the reference exposures: stars "wrong on the reference night"
        (truth: ``stars["ref_offset_mag"]``); default 0 (opt-in).
    reference_offset_mag_range : tuple of float
        Uniform range of the size of that offset, mag; its sign is random; default (0.2, 0.5).
    reference_offset_exposures : str
        ``"all"``: the offset is on every reference exposure (default); ``"first"``: on the
        first reference exposure of each filter only.
    reference_artefact : bool
        Put artefacts on one reference exposure; default True.
    n_artefact_blobs : int
        Star-like blobs on top of known stars (brightening them); default 4.
    artefact_dmag_range : tuple of float
        Uniform range of the brightening caused by a blob, mag; default (0.3, 1.0).
    n_artefact_fakes : int
        Star-like blobs where no bright star is, r ~ 18-19; default 2.
    artefact_trail_adu : float
        Peak surface brightness of a satellite-trail segment, ADU/pixel (0: none); default 150.
    search_trail_fraction : float
        Fraction of search chips crossed by a satellite trail (a straight streak across the
        whole chip, PSF-wide); default 0 (none: opt-in).
    search_trail_adu_range : tuple of float
        Log-uniform range of those trails' peak surface brightness, ADU/pixel; default
        (40, 400).
    wing_tolerance : float
        PSF stamps are cut where the omitted wing flux is below this fraction of the star's own
        flux noise (and below `max_lost_frac` of its flux); default 0.05.
    max_lost_frac : float
        Upper bound on the fraction of a star's flux omitted by stamp truncation; default 1e-3.
    pm_dispersion_mas_yr : float
        Gaussian dispersion of the stars' proper motions per coordinate, mas/yr; default 4.5
        (bulge-like, 3-6). Truth ``ra, dec`` hold at ``start_mjd``; each exposure sees the
        stars moved to its epoch. Drawn from a generator of their own (the other draws are
        those of a survey without proper motions).
    catalog_epoch_yr : float
        Reference epoch (Julian year) of the simulated Gaia-like catalogue; default 2016.0
        (Gaia DR3).
    seed : int
        Seed of the random generator; default 0.
    """

    nx: int = 512
    ny: int = 256
    n_chips: int = 2
    chip_gap_pix: int = 153
    filters: tuple[str, ...] = ("g", "r")
    n_epochs: int = 5
    n_references: int = 3
    start_mjd: float = 59295.0
    reference_night_spacing_d: int = 2
    search_gap_d: int = 7
    search_span_d: int = 45
    exptime_s: float = 90.0
    overhead_s: float = 30.0
    visit_spacing_min: float = 20.0
    density_per_arcmin2: float = 800.0
    mag_range: tuple[float, float] = (14.5, 23.0)
    lf_slope: float = 0.32
    n_bright_per_chip: int = 2
    bright_mag_range: tuple[float, float] = (12.5, 14.0)
    pixscale_arcsec: float = 0.263
    ra_center: float = 271.49
    dec_center: float = -28.91
    rotation_deg: float = 0.0
    dither_arcsec: float = 3.0
    seeing_range_arcsec: tuple[float, float] = (0.9, 1.6)
    reference_seeing_range_arcsec: tuple[float, float] = (0.9, 1.2)
    psf_beta: float = 3.0
    max_ellipticity: float = 0.05
    sky_range_adu: tuple[float, float] = (300.0, 2000.0)
    sky_gradient: float = 0.03
    gain: float = 4.0
    gain_scatter: float = 0.05
    read_noise_e: float = 7.0
    saturate_adu: float = 40000.0
    response_error: float = 0.07
    transparency_range_mag: tuple[float, float] = (0.0, 0.3)
    cosmic_rays_per_chip: int = 20
    cosmic_ray_adu_range: tuple[float, float] = (300.0, 5000.0)
    bad_column_adu: float = 0.0
    wcs_error_arcsec: float = 1.0
    wcs_rotation_error_deg: float = 0.01
    variable_fraction: float = 0.05
    amplitude_range_mag: tuple[float, float] = (0.1, 1.0)
    period_range_d: tuple[float, float] = (0.2, 30.0)
    n_transients: int = 6
    transient_peak_mag_range: tuple[float, float] = (17.0, 20.0)
    transient_rise_d: float = 2.0
    transient_decline_mag_per_d: float = 0.05
    n_reference_offsets: int = 0
    reference_offset_mag_range: tuple[float, float] = (0.2, 0.5)
    reference_offset_exposures: str = "all"
    reference_artefact: bool = True
    n_artefact_blobs: int = 4
    artefact_dmag_range: tuple[float, float] = (0.3, 1.0)
    n_artefact_fakes: int = 2
    artefact_trail_adu: float = 150.0
    search_trail_fraction: float = 0.0
    search_trail_adu_range: tuple[float, float] = (40.0, 400.0)
    wing_tolerance: float = 0.05
    max_lost_frac: float = 1e-3
    pm_dispersion_mas_yr: float = 4.5
    catalog_epoch_yr: float = 2016.0
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [f for f in self.filters if f not in DECAM_FILTER_NAMES]
        if unknown or not self.filters or len(set(self.filters)) != len(self.filters):
            raise ValueError(f"filters must be distinct DECam bands, got {self.filters!r}")
        if self.nx < 16 or self.ny < 16 or self.n_chips < 1:
            raise ValueError("chips must be at least 16 x 16 pixels and n_chips >= 1")
        if self.n_epochs < 1 or self.n_references < 1:
            raise ValueError("n_epochs and n_references must be >= 1")
        fwhm_min = min(self.seeing_range_arcsec[0], self.reference_seeing_range_arcsec[0])
        if fwhm_min / self.pixscale_arcsec < 2.0:
            raise ValueError("the PSF must be sampled with FWHM >= 2 pixels")
        if self.psf_beta <= 1.5:
            raise ValueError("psf_beta must exceed 1.5")
        if self.reference_offset_exposures not in ("all", "first"):
            raise ValueError("reference_offset_exposures must be 'all' or 'first'")
        if not 0.0 <= self.variable_fraction <= 1.0:
            raise ValueError("variable_fraction must be in [0, 1]")
        if not 0.0 <= self.search_trail_fraction <= 1.0:
            raise ValueError("search_trail_fraction must be in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-serialisable dictionary."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SimConfig:
        """Build a configuration from `to_dict` output (lists become tuples)."""
        names = {f.name for f in fields(cls)}
        kwargs = {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names
        }
        return cls(**kwargs)
