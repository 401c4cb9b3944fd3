"""Tests of photdb.calibration on synthetic catalogues with known truth."""

import json

import numpy as np
import pytest
from astropy.table import Table
from numpy.polynomial import chebyshev as C

from photdb.calibration import (
    CalibrationConfig,
    ChebyshevSurface,
    MagErrorScale,
    apply_error_floor,
    calibrate_search_catalog,
    fit_delta_mag_surface,
    fit_zero_point,
    rescale_errors,
)
from photdb.fitting import robust_sigma

NY, NX = 4096, 2048
ZP = 25.3


def response(x, y):
    """Smooth, non-polynomial 8 % peak-to-peak response pattern, mag (0 at centre)."""
    r2 = ((x - NX / 2) / NX) ** 2 + ((y - NY / 2) / NY) ** 2
    g = np.exp(-r2 / 0.3)
    return 0.08 * (1.0 - g) / (1.0 - np.exp(-0.5 / 0.3)) + 0.01 * np.sin(2.0 * x / NX)


def grid():
    gx, gy = np.meshgrid(np.linspace(0, NX - 1, 41), np.linspace(0, NY - 1, 81))
    return gx.ravel(), gy.ravel()


def simulate(n=20000, err_factor=1.5, var_frac=0.05, seed=0):
    """Search catalogue whose true errors are ``err_factor * max(quoted, 0.01)``."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, NX, n), rng.uniform(0, NY, n)
    mref = rng.uniform(15.0, 20.0, n)
    eref = 0.002 * 10 ** (0.2 * (mref - 15.0))
    quoted = 0.002 * 10 ** (0.3 * (mref - 15.0))
    true_err = err_factor * np.fmax(quoted, 0.01)
    minst = mref - ZP - response(x, y) + rng.normal(0, 1, n) * np.hypot(true_err, eref)
    var = rng.random(n) < var_frac
    minst[var] += rng.choice([-1.0, 1.0], var.sum()) * rng.uniform(0.2, 2.0, var.sum())
    flux = 10 ** (-0.4 * minst)
    flux[:20] = -5.0  # forced photometry gave nothing
    table = Table(
        {"x": x, "y": y, "mag_inst": minst, "magerr_inst": quoted, "flux": flux, "dflux": flux}
    )
    ref = Table({"mag": mref, "magerr": eref})
    return table, ref, var


def test_fit_zero_point_robust():
    rng = np.random.default_rng(1)
    mref = rng.uniform(15, 20, 2000)
    minst = mref - 25.0 + rng.normal(0, 0.02, 2000)
    minst[:200] += 1.5  # 10 % gross outliers all on one side
    zp, scatter, n = fit_zero_point(minst, mref)
    assert zp == pytest.approx(25.0, abs=0.003)
    assert scatter == pytest.approx(0.02, rel=0.1)
    assert 1700 < n <= 1800
    zpw, _, _ = fit_zero_point(minst, mref, weights=np.full(2000, 2500.0))
    assert zpw == pytest.approx(25.0, abs=0.003)


def test_surface_evaluation_matches_chebval2d():
    coeffs = np.zeros((5, 5))
    coeffs[1, 0], coeffs[0, 2], coeffs[2, 2] = 0.03, -0.02, 0.01
    s = ChebyshevSurface(coeffs, (NY, NX))
    # pixel edges map to -1 and +1
    assert s.scaled(-0.5, -0.5) == (-1.0, -1.0)
    assert s.scaled(NX - 0.5, NY - 0.5) == (1.0, 1.0)
    x, y = np.array([0.0, 700.0, 2047.0]), np.array([5.0, 3000.0, 4095.0])
    xs, ys = (2 * x + 1) / NX - 1, (2 * y + 1) / NY - 1
    np.testing.assert_allclose(s(x, y), C.chebval2d(xs, ys, coeffs))
    assert s.order == 4


def test_surface_recovers_polynomial_exactly():
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, NX, 3000), rng.uniform(0, NY, 3000)
    coeffs = np.zeros((5, 5))
    coeffs[0, 0], coeffs[3, 1], coeffs[0, 4] = 0.01, 0.02, -0.015
    truth = ChebyshevSurface(coeffs, (NY, NX))
    dmag = truth(x, y) + rng.normal(0, 0.001, 3000)
    s, used = fit_delta_mag_surface(x, y, dmag, np.full(3000, 0.001), shape=(NY, NX))
    np.testing.assert_allclose(s.coeffs, coeffs, atol=2e-4)
    assert used.sum() > 0.97 * 3000
    assert s.coeffs[4, 4] != 0.0  # tensor product by default


def test_surface_robust_to_variables():
    """8 % pattern + 5 % variables: residual surface < 0.5 % peak-to-peak."""
    rng = np.random.default_rng(3)
    n = 20000
    x, y = rng.uniform(0, NX, n), rng.uniform(0, NY, n)
    err = np.full(n, 0.01)  # floored errors; bright stars scatter by 0.005
    dmag = response(x, y) + rng.normal(0, 0.005, n)
    var = rng.random(n) < 0.05
    dmag[var] += rng.uniform(0.1, 1.5, var.sum())  # one-sided: the worst case for a mean
    s, used = fit_delta_mag_surface(x, y, dmag, err, shape=(NY, NX))
    gx, gy = grid()
    resid = s(gx, gy) - response(gx, gy)
    assert np.ptp(response(gx, gy)) > 0.08
    assert np.ptp(resid) < 0.005
    assert (used & var).sum() < 0.02 * var.sum()
    # a non-robust fit of the same data is badly biased
    naive, _ = fit_delta_mag_surface(
        x, y, dmag, err, shape=(NY, NX), config=CalibrationConfig(clip_sigma=1e9)
    )
    assert abs(np.mean(naive(gx, gy) - response(gx, gy))) > 0.02


def test_total_degree_option():
    rng = np.random.default_rng(4)
    x, y = rng.uniform(0, NX, 2000), rng.uniform(0, NY, 2000)
    s, _ = fit_delta_mag_surface(
        x,
        y,
        rng.normal(0, 0.01, 2000),
        np.full(2000, 0.01),
        shape=(NY, NX),
        config=CalibrationConfig(total_degree=True),
    )
    assert s.coeffs[3, 1] != 0.0
    assert np.all(s.coeffs[np.add.outer(np.arange(5), np.arange(5)) > 4] == 0)


def test_error_floor_modes():
    e = np.array([0.001, 0.01, 0.05])
    np.testing.assert_allclose(apply_error_floor(e), [0.01, 0.01, 0.05])
    np.testing.assert_allclose(apply_error_floor(e, mode="quadrature"), np.hypot(e, 0.01))
    with pytest.raises(ValueError):
        apply_error_floor(e, mode="bogus")


def test_rescale_errors_with_reference_errors():
    rng = np.random.default_rng(5)
    n = 20000
    s = rng.uniform(0.002, 0.05, n)  # quoted search errors, floored to 0.01 first
    sref = rng.uniform(0.005, 0.02, n)
    k_true = 3.0
    r = rng.normal(0, 1, n) * np.hypot(k_true * np.fmax(s, 0.01), sref)
    es = rescale_errors(r, s, ref_err=sref, dof_params=16)
    assert es.factor == pytest.approx(k_true, rel=0.03)
    assert es.chi2nu_after == pytest.approx(1.0, abs=1e-6)
    assert es.chi2nu_before > 4.0
    assert es.n == n and es.dof == n - 16
    # ignoring the reference errors would overestimate the factor
    assert rescale_errors(r, s, dof_params=16).factor > es.factor * 1.02


def test_rescale_errors_never_shrinks_by_default():
    rng = np.random.default_rng(6)
    r = rng.normal(0, 0.005, 5000)
    es = rescale_errors(r, np.full(5000, 0.02))
    assert es.factor == 1.0
    assert es.chi2nu_before == pytest.approx(1 / 16, rel=0.1)
    shrunk = rescale_errors(r, np.full(5000, 0.02), allow_shrink=True)
    assert shrunk.factor == pytest.approx(0.25, rel=0.05)


def test_calibrate_search_catalog_end_to_end():
    table, ref, var = simulate()
    out, res = calibrate_search_catalog(table, ref, shape=(NY, NX))
    # flux <= 0 -> NaN
    assert np.all(np.isnan(out["mag"][:20])) and np.all(np.isnan(out["magerr"][:20]))
    assert np.all(np.isfinite(out["mag"][20:]))
    # zero point + surface reproduce the truth to < 1 % peak-to-peak over the chip
    # (noise-limited: fit stars scatter by 0.015-0.075 mag here)
    gx, gy = grid()
    corr = res.zp + res.surface()(gx, gy)
    assert np.ptp(corr - (ZP + response(gx, gy))) < 0.01
    assert np.ptp(ZP + response(gx, gy)) > 0.08
    # the corrected magnitudes of constant stars match the reference
    const = ~var & (np.arange(len(table)) >= 20)
    dm = out["mag"][const] - ref["mag"][const]
    assert abs(np.median(dm)) < 0.002
    # errors: floor first, then the chi2/nu factor (true errors are 1.5x the floored
    # ones); 3-sigma clipping truncates the residuals, biasing the factor by ~-1.4 %
    assert res.error_factor == pytest.approx(1.5, rel=0.04)
    used = np.asarray(out["calib_used"])
    fl = np.fmax(table["magerr_inst"][used], 0.01)
    er = ref["magerr"][used]
    expected = np.mean((1.5**2 * fl**2 + er**2) / (fl**2 + er**2))
    assert res.chi2nu_before == pytest.approx(expected, rel=0.06)
    # the per-magnitude factor finds nothing left to fix here (errors are uniformly
    # 1.5x too small, which the global factor already absorbed) ...
    ms = res.mag_error_scale
    assert len(ms["factor"]) >= 3 and all(1.0 <= f < 1.06 for f in ms["factor"])
    # ... and multiplies the floored, rescaled errors
    scale = MagErrorScale(tuple(ms["mag"]), tuple(ms["factor"]), tuple(ms["n"]))
    # the correction's own uncertainty (20000 stars: well under a mmag) in quadrature
    corr_err = np.asarray(out["dmag_corr_err"][20:])
    assert 0 < np.median(corr_err) < 1e-3
    np.testing.assert_allclose(
        out["magerr"][20:],
        np.hypot(
            res.error_factor
            * np.fmax(table["magerr_inst"][20:], 0.01)
            * scale(np.asarray(ref["mag"][20:])),
            corr_err,
        ),
    )
    np.testing.assert_allclose(out["magerr_raw"][20:], table["magerr_inst"][20:])
    # chi2/nu of constant stars (all magnitudes, not only fit stars) is ~1 after rescaling
    z = dm / np.hypot(out["magerr"][const], ref["magerr"][const])
    assert np.mean(z**2) == pytest.approx(1.0, abs=0.1)
    assert (out["calib_used"] & var).sum() < 0.05 * var.sum()
    assert res.n_fit == out["calib_used"].sum() > 10000
    # the result is JSON-friendly and rebuilds the surface
    blob = json.loads(json.dumps(res.to_dict()))
    assert blob["cheb_coeffs"] == res.cheb_coeffs
    assert len(res.cheb_coeffs) == 5


def test_sparse_catalogue_gets_a_lower_order():
    """Fewer than 3 stars per term of the 4th-order surface: the order drops until
    there are, and the errors still get a finite χ²/ν factor."""
    table, ref, _ = simulate()
    rows = np.r_[np.arange(20), np.random.default_rng(9).choice(np.arange(20, len(table)), 45)]
    out, res = calibrate_search_catalog(
        table[rows], ref[rows], shape=(NY, NX), config=CalibrationConfig(min_stars=20)
    )
    # 45 stars (fewer pass the fit cuts) < 3 x 16 terms: order 2 (9 terms)
    assert len(res.cheb_coeffs) == 3
    assert np.isfinite(res.error_factor) and res.n_fit > 11
    assert np.all(np.isfinite(out["mag"][20:]))


def test_calibrate_search_catalog_input_checks():
    table, ref, _ = simulate(n=200)
    with pytest.raises(ValueError):
        calibrate_search_catalog(table, ref[:-1], shape=(NY, NX))
    with pytest.raises(ValueError):
        calibrate_search_catalog(
            table, ref, shape=(NY, NX), config=CalibrationConfig(min_stars_constant=500)
        )


@pytest.mark.parametrize("n_stars", [60, 25, 14])
def test_sparse_chip_lowers_the_order_and_widens_errors_honestly(n_stars):
    """Too few stars for the 4th-order surface after clipping: the order drops (down to
    a constant with a dozen stars), the order used is reported, and the errors of the
    constant stars - fit stars or not, the 8 % response the low order cannot follow
    included - still give pulls of ~1 (χ²/ν factor and the correction's uncertainty)."""
    pulls, orders = [], set()
    for seed in range(40):
        table, ref, _ = simulate(n=20 + 2 * n_stars, err_factor=1.0, var_frac=0.0, seed=seed)
        fit_ref = ref.copy()
        fit_ref["mag"][20 + n_stars :] = np.nan  # half the stars only in the comparison
        out, res = calibrate_search_catalog(table, fit_ref, shape=(NY, NX))
        assert res.order == len(res.cheb_coeffs) - 1 and res.order < 4
        assert res.n_fit >= 3 * (res.order + 1) ** 2 and res.surface_err_mag > 0
        orders.add(res.order)
        rest = slice(20 + n_stars, None)
        z = (np.asarray(ref["mag"][rest]) - np.asarray(out["mag"][rest])) / np.hypot(
            out["magerr"][rest], ref["magerr"][rest]
        )
        pulls.append(z)
    z = np.concatenate(pulls)
    # the core is calibrated; the corners of the response a low order cannot follow
    # leave a mild tail (rms ~1.15 at order 0-1), not the many-sigma errors of a
    # constant fitted without widening
    assert robust_sigma(z) == pytest.approx(1.0, abs=0.1)
    assert np.sqrt(np.mean(z**2)) < 1.25
    if n_stars == 14:
        assert 0 in orders


def test_no_calibration_possible_names_the_reason():
    table, ref, _ = simulate(n=29, var_frac=0.0)  # 9 stars with a flux
    with pytest.raises(ValueError, match="no photometric calibration possible: [0-9] cal"):
        calibrate_search_catalog(table, ref, shape=(NY, NX))
