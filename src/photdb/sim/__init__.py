"""Simulated DECam-like crowded-field survey with exact truth.

The simulator writes multi-extension FITS exposures of a crowded galactic-bulge field and
returns a `SimTruth` (astropy Tables) describing every star, exposure, chip, artefact and
cosmic ray. It is the ground truth for the pipeline's science tests.

Conventions
-----------
* Pixels: numpy order ``image[row, column]``; ``x`` = column, ``y`` = row; the centre of the
  first pixel is ``(0, 0)`` (FITS/WCS 1-based pixel = this + 1).
* Sky positions: ICRS degrees; the true WCS of each chip is an exact TAN projection, the
  header WCS is deliberately off by ``SimConfig.wcs_error_arcsec``.
* Times: UTC MJD; truth ``mjd`` is mid-exposure, the header ``MJD-OBS`` is the start.
* Fluxes: ADU in the exposure; a star's flux is the integral of its (unit-integral, Moffat
  effective) PSF, exact up to a documented stamp-truncation bound (<= 0.1%).

Examples
--------
>>> from photdb.sim import SimConfig, simulate_survey
>>> truth = simulate_survey("/tmp/sim", SimConfig(n_epochs=2))  # doctest: +SKIP
>>> truth.write("/tmp/sim/truth")  # doctest: +SKIP
"""

from photdb.sim.config import SimConfig
from photdb.sim.field import make_star_field, star_magnitudes
from photdb.sim.render import (
    add_noise,
    apply_saturation,
    moffat_psf,
    render_chip,
    render_stars,
)
from photdb.sim.survey import simulate_survey
from photdb.sim.truth import SimTruth

__all__ = [
    "SimConfig",
    "SimTruth",
    "add_noise",
    "apply_saturation",
    "make_star_field",
    "moffat_psf",
    "render_chip",
    "render_stars",
    "simulate_survey",
    "star_magnitudes",
]
