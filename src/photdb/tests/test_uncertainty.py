"""Tests of photdb.uncertainty: the per-magnitude error factor, against known truth."""

import numpy as np
import pytest

from photdb.uncertainty import (
    MagErrorScale,
    blend_contamination,
    fit_blend_error,
    fit_magnitude_error_scale,
)


def _catalogue(rng, n=12000, var_frac=0.05):
    """Constant stars whose true errors are 1x (bright) to 2.5x (faint) the quoted ones."""
    m = rng.uniform(15.0, 22.0, n)
    quoted = 0.01 + 0.03 * 10 ** (0.4 * (m - 22.0))
    true_factor = np.interp(m, [15.0, 19.0, 22.0], [1.0, 1.0, 2.5])
    ref_err = 0.5 * quoted
    resid = rng.normal(0.0, np.hypot(true_factor * quoted, ref_err))
    var = rng.random(n) < var_frac
    resid[var] += rng.choice([-1, 1], var.sum()) * rng.uniform(0.2, 1.0, var.sum())
    return m, resid, quoted, ref_err, true_factor, var


def test_recovers_a_magnitude_trend_and_calibrates_significance():
    rng = np.random.default_rng(11)
    m, r, err, ref_err, true_factor, var = _catalogue(rng)
    scale = fit_magnitude_error_scale(m, r, err, ref_err, bin_width_mag=0.5, min_stars=200)
    assert len(scale.mag) >= 10 and sum(scale.n) == m.size
    np.testing.assert_allclose(scale(np.array([16.0, 21.75])), [1.0, 2.375], atol=0.12)
    # significances of the constant stars: width 1 at every magnitude afterwards
    # (before: up to 2.5 at the faint end)
    z_before = r / np.hypot(err, ref_err)
    z_after = r / np.hypot(err * scale(m), ref_err)
    faint = (m > 21) & ~var
    assert np.std(z_before[faint]) > 1.8
    assert np.std(z_after[faint]) == pytest.approx(1.0, abs=0.08)
    # the false-alarm rate at 5 sigma drops by more than 10x
    assert (np.abs(z_after[~var]) > 5).mean() < 0.1 * (np.abs(z_before[~var]) > 5).mean()
    # never below 1, even where errors are overestimated
    assert min(scale.factor) >= 1.0


def test_variables_do_not_inflate_the_factor():
    rng = np.random.default_rng(12)
    n = 8000
    m = rng.uniform(16, 20, n)
    err = np.full(n, 0.02)
    r = rng.normal(0.0, 0.02, n)
    var = rng.random(n) < 0.08
    r[var] += rng.uniform(0.3, 1.0, var.sum())  # one-sided: the worst case
    scale = fit_magnitude_error_scale(m, r, err, np.zeros(n))
    assert np.mean(scale.factor) < 1.03 and max(scale.factor) < 1.08
    # without the clip the variables would inflate every bin's width
    naive = fit_magnitude_error_scale(m, r, err, np.zeros(n), clip=1e9)
    assert np.mean(naive.factor) > 1.07


def test_too_few_stars_and_nan_inputs():
    scale = fit_magnitude_error_scale(np.arange(10.0), np.zeros(10), np.ones(10), np.zeros(10))
    assert scale == MagErrorScale((), (), ())
    np.testing.assert_array_equal(scale(np.array([15.0, np.nan])), [1.0, 1.0])
    rng = np.random.default_rng(13)
    m = rng.uniform(16, 20, 600)
    r = rng.normal(0, 0.04, 600)
    r[:50] = np.nan
    scale = fit_magnitude_error_scale(m, r, np.full(600, 0.02), np.zeros(600), min_stars=100)
    assert sum(scale.n) == 550
    assert scale(np.array([np.nan]))[0] == 1.0
    assert scale.to_dict()["factor"] == list(scale.factor)


def test_blend_error_term():
    """Blended stars scatter more than quoted; the fitted ε brings them to width 1."""
    rng = np.random.default_rng(14)
    n = 10000
    fracflux = rng.uniform(0.05, 1.0, n)
    c = blend_contamination(fracflux)
    err = np.full(n, 0.02)
    eps_true = 0.015
    r = rng.normal(0.0, np.hypot(err, eps_true * c))
    eps = fit_blend_error(r, err, np.zeros(n), c)
    assert eps == pytest.approx(eps_true, rel=0.1)
    z_before = r / err
    z_after = r / np.hypot(err, eps * c)
    heavy = fracflux < 0.15
    assert np.std(z_before[heavy]) > 3.0
    assert np.std(z_after[heavy]) == pytest.approx(1.0, abs=0.1)
    # unblended stars keep their errors, and honest errors give ε = 0
    assert np.all(c[fracflux >= 0.999] < 1e-2)
    assert fit_blend_error(rng.normal(0, 0.02, n), err, np.zeros(n), c) == 0.0
    assert blend_contamination(np.array([np.nan, 1.0, 0.5, 0.0]))[[0, 1, 2]].tolist() == [
        0.0, 0.0, 1.0
    ]  # fmt: skip
    assert blend_contamination(np.array([0.0]))[0] == pytest.approx(99.0)
