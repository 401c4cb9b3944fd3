"""Tests of photdb.newsources on synthetic arrays and of the simulator's satellite trails."""

from __future__ import annotations

import numpy as np
import pytest

from photdb.newsources import find_trails, flux_significance


def _noise(shape=(200, 300), seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 10.0, shape), np.full(shape, 100.0), np.zeros(shape, np.int32)


def _line(shape, x0, y0, angle_deg, peak, sigma=1.7):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    a = np.radians(angle_deg)
    d = (xx - x0) * np.sin(a) - (yy - y0) * np.cos(a)
    return peak * np.exp(-0.5 * (d / sigma) ** 2)


def test_trail_found_and_covered():
    resid, var, mask = _noise()
    resid += _line(resid.shape, 150.0, 100.0, 25.0, 40.0)
    trails, covered = find_trails(resid, variance=var, mask=mask, fwhm_pix=4.0)
    assert len(trails) >= 1
    t = trails[0]
    assert abs(((t.angle_deg - 25.0) + 90.0) % 180.0 - 90.0) < 2.0
    assert t.distance(np.array([150.0]), np.array([100.0]))[0] < 2.0
    yy, xx = np.mgrid[0:200, 0:300]
    on_line = np.abs(_line((200, 300), 150.0, 100.0, 25.0, 1.0)) > 0.5
    assert covered[on_line].mean() > 0.95 and covered.mean() < 0.3


def test_noise_and_stars_are_no_trail():
    resid, var, mask = _noise(seed=2)
    yy, xx = np.mgrid[0:200, 0:300]
    for x, y in [(50, 50), (120, 80), (200, 150), (250, 40)]:
        resid += 500.0 * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 1.7**2)
    trails, covered = find_trails(resid, variance=var, mask=mask, fwhm_pix=4.0)
    assert trails == [] and not covered.any()


def test_flux_significance_signs_and_nan():
    sig = flux_significance([10.0, 0.0, np.nan], [1.0, 1.0, 1.0], [0.0, 10.0, 0.0], [1.0, 1.0, 1.0])
    assert sig[0] == pytest.approx(-10 / np.sqrt(2))  # brighter: negative
    assert sig[1] == pytest.approx(10 / np.sqrt(2))  # fainter: positive
    assert np.isnan(sig[2])


def test_simulated_search_trails(tmp_path):
    from photdb.sim import SimConfig, SimTruth, simulate_survey

    cfg = SimConfig(nx=96, ny=64, n_chips=1, filters=("r",), n_epochs=2, n_references=1,
                    density_per_arcmin2=50.0, n_transients=0, reference_artefact=False,
                    search_trail_fraction=1.0, search_trail_adu_range=(300.0, 300.0))  # fmt: skip
    truth = simulate_survey(tmp_path, cfg)
    search = np.flatnonzero(~np.asarray(truth.epochs["is_reference"]))
    assert sorted(truth.trails["exposure"]) == sorted(search.tolist())
    truth.write(tmp_path / "truth")
    back = SimTruth.read(tmp_path / "truth")
    assert len(back.trails) == len(truth.trails)
    # the same survey without trails has the same pixels off the trail
    plain = simulate_survey(
        tmp_path / "plain", SimConfig(**{**cfg.__dict__, "search_trail_fraction": 0.0})
    )
    assert len(plain.trails) == 0
    np.testing.assert_array_equal(plain.stars["ra"], truth.stars["ra"])
