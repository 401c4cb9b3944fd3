"""Tests for photdb.photometry (real crowdsource on synthetic and real images)."""

import os
from dataclasses import replace

import astropy
import numpy as np
import pytest
from astropy.io import fits
from scipy.spatial import cKDTree

from photdb.background import SkyConfig, estimate_sky
from photdb.image import build_mask, image_from_header
from photdb.photometry import (
    PhotometryConfig,
    estimate_fwhm,
    measure_forced,
    measure_sources,
    render_model,
)
from photdb.tests._render import noisy_image, render_stars

SKY, GAIN, RN, FWHM = 200.0, 4.0, 6.0, 3.0
SHAPE = (200, 300)  # non-square: catches x/y swaps


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(1)
    n = 120
    x = rng.uniform(8, SHAPE[1] - 8, n)
    y = rng.uniform(8, SHAPE[0] - 8, n)
    flux = 10 ** rng.uniform(2.5, 5.0, n)
    truth = render_stars(SHAPE, x, y, flux, fwhm=FWHM)
    img = noisy_image(truth, sky=SKY, gain=GAIN, readnoise=RN, rng=rng)
    var = (np.clip(img, SKY, None) / GAIN + (RN / GAIN) ** 2).astype(np.float32)
    cat, psf = measure_sources(img - SKY, variance=var)
    d, i = cKDTree(np.c_[x, y]).query(np.c_[cat["x"], cat["y"]])
    # isolation: no other true star within 8 pix
    dn, _ = cKDTree(np.c_[x, y]).query(np.c_[x, y], k=2)
    return {"x": x, "y": y, "flux": flux, "img": img, "var": var, "cat": cat, "psf": psf,
            "d": d, "i": i, "iso": dn[:, 1] > 8, "rng": rng}  # fmt: skip


def _match(s):
    """Index of the catalogue source nearest each true star (or -1), within 1 pix."""
    idx = np.full(len(s["x"]), -1)
    dd, ii = cKDTree(np.c_[s["cat"]["x"], s["cat"]["y"]]).query(np.c_[s["x"], s["y"]])
    idx[dd < 1.0] = ii[dd < 1.0]
    return idx


def test_columns_and_units(scene):
    cat = scene["cat"]
    for c in ("x", "y", "flux", "dflux", "mag_inst", "magerr_inst", "fwhm_pix", "qf", "rchi2",
              "fracflux", "fluxlbs", "dx", "dy", "sky", "flags"):  # fmt: skip
        assert c in cat.colnames
    assert str(cat["x"].unit) == "pix" and str(cat["flux"].unit) == "adu"
    pos = cat["flux"] > 0
    np.testing.assert_allclose(cat["mag_inst"][pos], -2.5 * np.log10(cat["flux"][pos]))


def test_flux_and_positions_of_bright_isolated_stars(scene):
    idx = _match(scene)
    sel = (idx >= 0) & scene["iso"] & (scene["flux"] > 2e4)
    assert sel.sum() >= 10
    cat = scene["cat"]
    ratio = cat["flux"][idx[sel]] / scene["flux"][sel]
    assert abs(np.median(ratio) - 1) < 0.01
    assert np.std(ratio) < 0.02
    # x is the column, y the row
    dx = cat["x"][idx[sel]] - scene["x"][sel]
    dy = cat["y"][idx[sel]] - scene["y"][sel]
    assert np.median(np.hypot(dx, dy)) < 0.05
    assert np.max(np.abs(dx)) < 0.2 and np.max(np.abs(dy)) < 0.2


def test_completeness_above_10_sigma(scene):
    f = scene["flux"]
    noise = np.sqrt(f / GAIN + np.pi * FWHM**2 * (SKY / GAIN + (RN / GAIN) ** 2))
    bright = (f / noise > 10) & scene["iso"]
    idx = _match(scene)
    assert bright.sum() > 30
    assert np.mean(idx[bright] >= 0) >= 0.97
    # few spurious detections: almost every source has a true star within 1.5 pix
    assert np.mean(scene["d"] < 1.5) > 0.9


def test_convention_single_star_offcentre():
    rng = np.random.default_rng(7)
    truth = render_stars((60, 90), [70.3], [15.6], [2e5], fwhm=3.0)
    # a few fainter stars so the PSF can be refit
    xs, ys = rng.uniform(10, 80, 12), rng.uniform(10, 50, 12)
    truth += render_stars((60, 90), xs, ys, np.full(12, 3e4), fwhm=3.0)
    img = noisy_image(truth, sky=100.0, gain=4.0, readnoise=5.0, rng=rng)
    var = (np.clip(img, 100, None) / 4.0 + 1.6).astype(np.float32)
    cat, _ = measure_sources(img - 100.0, variance=var, fwhm_pix=3.0)
    k = np.argmax(cat["flux"])
    assert cat["x"][k] == pytest.approx(70.3, abs=0.05)
    assert cat["y"][k] == pytest.approx(15.6, abs=0.05)


def test_mask_flags_and_zero_weight(scene):
    mask = np.zeros(SHAPE, np.int32)
    idx = _match(scene)
    k = int(np.argmax(np.where(idx >= 0, scene["flux"], 0)))
    cx, cy = int(round(scene["x"][k])), int(round(scene["y"][k]))
    mask[cy, cx] = 8  # COSMIC_RAY bit on the peak pixel of the brightest star
    cat = measure_forced(
        scene["img"] - SKY, scene["x"][[k]], scene["y"][[k]], variance=scene["var"],
        mask=mask, psf=scene["psf"],
    )  # fmt: skip
    assert cat["flags"][0] == 8
    assert cat["qf"][0] < 1.0  # part of the PSF was masked
    assert cat["flux"][0] == pytest.approx(scene["flux"][k], rel=0.05)


def test_forced_model_is_the_fit(scene):
    """The model returned with the forced fit leaves noise, like a model rendered again."""
    data, var = scene["img"] - SKY, scene["var"]
    ft, model = measure_forced(data, scene["x"], scene["y"], variance=var, psf=scene["psf"],
                               return_model=True)  # fmt: skip
    assert model.shape == data.shape and model.dtype == np.float32
    again = render_model(data.shape, ft["x"], ft["y"], np.nan_to_num(ft["flux"]), scene["psf"])
    inner = (slice(10, -10), slice(10, -10))
    chi_fit = ((data - model) / np.sqrt(var))[inner]
    chi_again = ((data - again) / np.sqrt(var))[inner]
    assert np.std(chi_fit) < 1.3 and np.std(chi_fit) <= np.std(chi_again) + 0.02
    # the same stars: the two models differ by far less than the noise (the stamps' size)
    assert np.std(((model - again) / np.sqrt(var))[inner]) < 0.2
    assert np.std(data[inner] / np.sqrt(var[inner])) > 3  # the stars are there to remove


def test_forced_photometry_recovers_flux_changes(scene):
    rng = np.random.default_rng(11)
    x, y, flux = scene["x"], scene["y"], scene["flux"]
    factor = np.ones_like(flux)
    bright = np.nonzero(scene["iso"] & (flux > 1e4))[0][:8]
    factor[bright[:4]] = 1.5
    factor[bright[4:]] = 0.6
    truth = render_stars(SHAPE, x, y, flux * factor, fwhm=FWHM)
    img2 = noisy_image(truth, sky=SKY, gain=GAIN, readnoise=RN, rng=rng)
    var2 = (np.clip(img2, SKY, None) / GAIN + (RN / GAIN) ** 2).astype(np.float32)
    ft = measure_forced(img2 - SKY, x, y, variance=var2, psf=scene["psf"])
    assert len(ft) == len(x)
    np.testing.assert_allclose(ft["x"], x, atol=1e-3)  # held fixed, input order
    np.testing.assert_allclose(ft["y"], y, atol=1e-3)
    ratio = ft["flux"][bright] / flux[bright]
    np.testing.assert_allclose(ratio, factor[bright], rtol=0.03)
    steady = scene["iso"] & (flux > 1e4) & (factor == 1)
    assert abs(np.median(ft["flux"][steady] / flux[steady]) - 1) < 0.01


@pytest.mark.parametrize("local_sky", [False, True])
def test_forced_psf_cache_changes_no_number(scene, local_sky):
    """The PSF stamp cache of measure_forced (a speed-up) gives bit-identical results,
    with the sky held (the pipeline's setting) and refit at every iteration."""
    data = scene["img"] - SKY
    x = np.r_[scene["x"], 150.3]  # plus a position with no star
    y = np.r_[scene["y"], 100.7]
    base = PhotometryConfig(forced_local_sky=local_sky)
    out = [
        measure_forced(
            data,
            x,
            y,
            variance=scene["var"],
            psf=scene["psf"],
            config=replace(base, forced_cache_psf=cache),
        )  # fmt: skip
        for cache in (True, False)
    ]
    assert out[0].colnames == out[1].colnames
    for name in out[0].colnames:
        np.testing.assert_array_equal(np.asarray(out[0][name]), np.asarray(out[1][name]))


def test_estimate_fwhm(scene):
    fw = estimate_fwhm(scene["img"] - SKY, variance=scene["var"])
    assert fw == pytest.approx(FWHM, rel=0.1)


M13 = os.path.join(os.path.dirname(astropy.__file__), "io/fits/hdu/compressed/tests/data/m13.fits")


@pytest.mark.slow
def test_m13_real_crowded_image():
    data, header = fits.getdata(M13, 0, header=True)
    img = image_from_header(data, header, gain=1.0, readnoise=0.0)  # DSS scan: no gain
    mask = build_mask(img.data, saturate=img.saturate)
    bkg = estimate_sky(img.data, mask=mask, config=SkyConfig(tiles=(6, 6), order=(2, 2)))
    assert 105 < bkg.global_level < 125  # sky ~ 115 ADU by eye
    im = img.data - bkg
    # DSS noise is correlated and not Poisson: inflate the white-noise estimate
    var = (2 * bkg.rms) ** 2 + 0.1 * np.clip(im, 0, None)
    cat, psf = measure_sources(im, variance=var, mask=mask, config=PhotometryConfig(maxiter=6))
    assert 300 < len(cat) < 3000
    # the 25 brightest peaks (by eye: the obvious cluster giants) are all found
    from scipy import ndimage

    sm = ndimage.uniform_filter(im, 3)
    pk = (sm == ndimage.maximum_filter(sm, 9)) & (mask == 0)
    py, px = np.nonzero(pk)
    top = np.argsort(-sm[py, px])[:25]
    d, _ = cKDTree(np.c_[cat["x"], cat["y"]]).query(np.c_[px[top], py[top]])
    assert np.mean(d < 1.5) >= 0.9
    res = (im - render_model(im.shape, cat["x"], cat["y"], cat["flux"], psf)) / np.sqrt(var)
    good = mask == 0
    robust = 1.4826 * np.median(np.abs(res[good] - np.median(res[good])))
    assert robust < 1.5
