"""Tests of photdb.absolute: a reference catalogue flattened against an external one."""

import numpy as np
import pytest
from astropy.table import Table

from photdb.absolute import flatten_reference
from photdb.calibration import CalibrationConfig

NY, NX = 512, 1024
SCALE = 0.263 / 3600  # deg per pixel


def _field(rng, n=3000):
    x, y = rng.uniform(0, NX, n), rng.uniform(0, NY, n)
    true = 15.0 + 7.0 * rng.power(2.5, n)
    # the reference's own flat-field error: 6 % peak-to-peak, plus a 0.3 mag zero point
    xs, ys = 2 * x / NX - 1, 2 * y / NY - 1
    flat = 0.03 * (xs**2 + 0.5 * ys - 0.4 * xs * ys)
    err = np.hypot(0.003, 0.02 * 10 ** (0.4 * (true - 20)))
    ref = Table()
    ref["x"], ref["y"] = x, y
    ref["ra"], ref["dec"] = 271.0 + x * SCALE, -29.0 + y * SCALE
    ref["mag"] = true + 0.3 + flat + rng.normal(0, err)
    ref["magerr"] = err
    ref["qf"], ref["fracflux"] = np.ones(n), np.ones(n)
    ref["flags"] = np.zeros(n, int)
    cat = Table()
    bright = true < 20.0
    cat["ra"], cat["dec"] = ref["ra"][bright], ref["dec"][bright]
    cerr = np.hypot(0.005, 0.02 * 10 ** (0.4 * (true[bright] - 20)))
    cat["mag_r"] = true[bright] + rng.normal(0, cerr)
    cat["mag_r_err"] = cerr
    return ref, cat, true, flat


def test_flat_and_absolute_after_the_fit():
    rng = np.random.default_rng(31)
    ref, cat, true, flat = _field(rng)
    out, st = flatten_reference(ref, cat, "mag_r", shape=(NY, NX))
    assert np.ptp(flat) > 0.05
    resid = np.asarray(out["mag"]) - true
    cells = [
        np.median(resid[(ref["x"] // (NX / 4) == i) & (ref["y"] // (NY / 2) == j)])
        for i in range(4)
        for j in range(2)
    ]
    assert np.ptp(cells) < 0.004  # from 6 % to well under 0.5 %
    assert abs(np.median(resid)) < 0.003  # absolute: the 0.3 mag offset is gone
    # the mean correction over the chip: the 0.3 mag offset plus the flat error's mean
    gx = np.linspace(-1, 1, 16)
    mean_flat = 0.03 * np.mean(gx**2)  # the other terms average to zero
    assert st["zp"] == pytest.approx(-0.3 - mean_flat, abs=0.004) and st["p2p"] > 0.04
    np.testing.assert_array_equal(out["mag_uncal"], ref["mag"])


def test_blends_and_bad_stars_are_not_used():
    rng = np.random.default_rng(32)
    ref, cat, true, _ = _field(rng)
    # a second reference source 0.1" from each of 100 catalogue stars: a blend
    extra = ref[:100].copy()
    extra["ra"] = np.asarray(cat["ra"][:100]) + 0.1 / 3600
    extra["dec"] = cat["dec"][:100]
    extra["mag"] = 14.0  # far off: would bias the fit if used
    from astropy.table import vstack

    both = vstack([ref, extra])
    _, st = flatten_reference(both, cat, "mag_r", shape=(NY, NX))
    assert st["zp"] == pytest.approx(-0.3 - 0.03 * np.mean(np.linspace(-1, 1, 16) ** 2), abs=0.004)
    # stars the caller marks unusable (e.g. flagged or blended on the image) are left out:
    # half the stars 0.04 mag too bright (too little for the clipping) would otherwise
    # pull the zero point
    bad = rng.random(len(ref)) < 0.5
    shifted = ref.copy()
    shifted["mag"][bad] -= 0.04
    _, st_bad = flatten_reference(shifted, cat, "mag_r", shape=(NY, NX), use=~bad)
    assert st_bad["zp"] == pytest.approx(st["zp"], abs=0.004)
    _, st_all = flatten_reference(shifted, cat, "mag_r", shape=(NY, NX))
    assert abs(st_all["zp"] - st["zp"]) > 0.01
    with pytest.raises(ValueError, match="min_stars"):
        flatten_reference(ref[:40], cat, "mag_r", shape=(NY, NX), config=CalibrationConfig())
