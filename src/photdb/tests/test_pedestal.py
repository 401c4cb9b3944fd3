"""Tests of photdb.pedestal: additive and multiplicative flux surfaces against truth."""

import numpy as np
import pytest

from photdb.calibration import fit_delta_mag_surface
from photdb.pedestal import fit_flux_pedestal

NY, NX = 400, 800


def _field(rng, n=4000):
    x, y = rng.uniform(0, NX, n), rng.uniform(0, NY, n)
    mag = 14.0 + 8.0 * rng.power(3.0, n)  # mostly faint, as in a crowded field
    f_ref = 10 ** (-0.4 * (mag - 30.0))
    gain = 1.0 + 0.06 * (x / NX) ** 2 - 0.03 * (y / NY)  # response/transparency
    ped = -150.0 + 120.0 * (x / NX) + 60.0 * (y / NY) ** 2  # sky error * N_eff, ADU
    err = np.sqrt(np.abs(gain * f_ref) + 40.0**2)
    f = gain * f_ref + ped + rng.normal(0, err)
    return x, y, mag, f_ref, f, err, gain, ped


def test_separates_pedestal_from_response():
    rng = np.random.default_rng(21)
    x, y, mag, f_ref, f, err, gain, ped = _field(rng)
    var = rng.random(f.size) < 0.05
    f[var] *= rng.uniform(1.5, 3.0, var.sum())
    fit = fit_flux_pedestal(x, y, f, err, f_ref, shape=(NY, NX), order=2, gain_order=4)
    gy, gx = np.mgrid[0:NY:20, 0:NX:20]
    truth = -150.0 + 120.0 * (gx / NX) + 60.0 * (gy / NY) ** 2
    d = fit.surface(gx, gy) - truth  # ADU, against a 180 ADU range and 40 ADU per star
    assert np.sqrt(np.mean(d**2)) < 8.0 and np.max(np.abs(d)) < 35.0
    tgain = 1.0 + 0.06 * (gx / NX) ** 2 - 0.03 * (gy / NY)
    assert np.max(np.abs(fit.gain(gx, gy) / tgain - 1)) < 0.004
    assert fit.n_used < f.size - 0.8 * var.sum()  # the variables were clipped
    assert fit.mean_adu == pytest.approx(np.mean(truth), abs=5.0)


def test_pedestal_removal_flattens_bright_stars():
    """The reason for the pedestal: without it a Δmag surface fitted to all stars is
    pulled by the faint stars' additive bias and leaves structure on the bright ones."""
    rng = np.random.default_rng(22)
    x, y, mag, f_ref, f, err, gain, ped = _field(rng, n=6000)
    good = f > 0
    bright = mag < 18.0

    def bright_structure(flux):
        ok = good & (flux > 0)
        dm = -2.5 * np.log10(f_ref[ok]) + 2.5 * np.log10(flux[ok])
        e = 1.0857 * err[ok] / flux[ok]
        keep = e < 0.05
        s, _ = fit_delta_mag_surface(
            x[ok][keep], y[ok][keep], dm[keep], np.hypot(e[keep], 0.01), shape=(NY, NX)
        )
        resid = dm - s(x[ok], y[ok])
        b = bright[ok]
        cells = [
            np.median(resid[b & (x[ok] // (NX / 3) == i) & (y[ok] // (NY / 3) == j)])
            for i in range(3)
            for j in range(3)
        ]
        return np.ptp(cells)

    fit = fit_flux_pedestal(x, y, f, err, f_ref, shape=(NY, NX))
    before = bright_structure(f)
    after = bright_structure(f - fit.surface(x, y))
    assert before > 0.005
    assert after < 0.003


def test_too_few_stars():
    with pytest.raises(ValueError, match="min_stars"):
        fit_flux_pedestal(np.arange(10.0), np.arange(10.0), np.ones(10), np.ones(10),
                          np.ones(10), shape=(NY, NX))  # fmt: skip
