"""Tests for photdb.detection and the PSF fit on known stars (photdb.photometry).

Synthetic images with known Moffat stars (``_render``): positions of the bright
isolated stars recovered, faint/crowded/masked ones left out of the calibration,
nothing on pure noise, and a PSF fitted on the peaks alone that measures fluxes as
crowdsource's full fit does.
"""

from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial import cKDTree

from photdb.detection import DetectionConfig, detect_calibration_stars
from photdb.image import MaskBits
from photdb.photometry import fit_psf_on_stars, measure_forced, measure_sources
from photdb.tests._render import noisy_image, render_stars

SKY, GAIN, RN, FWHM = 300.0, 4.0, 6.0, 3.5
SHAPE = (240, 360)  # non-square: catches x/y swaps
#: Centroid tolerance of the calibration stars (pix): DAOFIND centroids of >= 30 sigma
#: peaks scatter by ~0.02-0.03 pix (measured 0.026 on a simulated bulge chip).  At least
#: 95 % are within it; an unresolved pair (here 27 % of the flux 1.5 pix away) is one
#: peak whose centroid is off by its light-weighted offset, hence the 0.5 pix bound
#: for all (the WCS fit clips such outliers).
POS_TOL_PIX = 0.1
#: The scene has ~30 bright isolated stars: no fallback (see test_few_stars_fallback)
CFG = DetectionConfig(min_stars=10)


def _variance(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, SKY, None) / GAIN + (RN / GAIN) ** 2).astype(np.float32)


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(7)
    n = 150
    x = rng.uniform(5, SHAPE[1] - 5, n)
    y = rng.uniform(5, SHAPE[0] - 5, n)
    flux = 10 ** rng.uniform(2.5, 5.3, n)
    img = noisy_image(render_stars(SHAPE, x, y, flux, fwhm=FWHM), sky=SKY, gain=GAIN,
                      readnoise=RN, rng=rng)  # fmt: skip
    var = _variance(img)
    found = detect_calibration_stars(img - SKY, variance=var, fwhm_pix=FWHM, config=CFG)
    return {"x": x, "y": y, "flux": flux, "img": img, "var": var, "found": found}


def test_calibration_stars_at_the_true_positions(scene):
    cal = scene["found"][scene["found"]["calib"]]
    assert len(cal) >= 20
    d, i = cKDTree(np.c_[scene["x"], scene["y"]]).query(np.c_[cal["x"], cal["y"]])
    assert np.mean(d < POS_TOL_PIX) >= 0.95, np.sort(d)[-5:]
    assert np.all(d < 0.5)
    # x is the column: the image is not square, a swap would land far away
    assert np.median(np.abs(cal["x"] - scene["x"][i])) < POS_TOL_PIX / 2


def test_calibration_stars_are_bright_isolated_and_inside(scene):
    cal = scene["found"][scene["found"]["calib"]]
    x, y, flux = scene["x"], scene["y"], scene["flux"]
    tree = cKDTree(np.c_[x, y])
    _, i = tree.query(np.c_[cal["x"], cal["y"]])
    cfg = CFG
    radius = cfg.isolation_fwhm * FWHM
    for k in i:
        near = tree.query_ball_point([x[k], y[k]], radius)
        # no true neighbour within the isolation radius brighter than half the star
        assert all(flux[j] <= 0.5 * flux[k] for j in near if j != k)
        assert cfg.edge_fwhm * FWHM <= x[k] <= SHAPE[1] - 1 - cfg.edge_fwhm * FWHM
    assert np.all(cal["peak_sigma"] >= cfg.min_peak_sigma)
    # brightest first
    assert np.all(np.diff(np.asarray(scene["found"]["flux"])) <= 0)


def test_every_bright_star_is_found(scene):
    found = scene["found"]
    bright = scene["flux"] > 3e3
    d, _ = cKDTree(np.c_[found["x"], found["y"]]).query(np.c_[scene["x"], scene["y"]][bright])
    # DAOFIND merges a few close pairs: at least 90 % of the >3000 ADU stars have a peak
    assert np.mean(d < 1.0) >= 0.9


def test_masked_stars_are_not_calibration_stars(scene):
    cal = scene["found"][scene["found"]["calib"]]
    mask = np.zeros(SHAPE, np.int32)
    k = int(np.argmax(cal["flux"]))
    cx, cy = int(round(float(cal["x"][k]))), int(round(float(cal["y"][k])))
    mask[cy, cx + 2] = MaskBits.COSMIC_RAY  # one masked pixel next to the brightest star
    again = detect_calibration_stars(scene["img"] - SKY, variance=scene["var"], mask=mask,
                                     fwhm_pix=FWHM, config=CFG)  # fmt: skip
    c2 = again[again["calib"]]
    d, _ = cKDTree(np.c_[c2["x"], c2["y"]]).query([[cal["x"][k], cal["y"][k]]])
    assert d[0] > 1.0
    assert len(c2) == len(cal) - 1


def test_few_stars_fallback(scene):
    """Fewer than min_stars bright isolated stars: fainter isolated ones join, then
    crowded ones, then every peak; always the brightest first."""
    cal = scene["found"][scene["found"]["calib"]]
    for n in (len(cal) + 1, 10_000):
        more = detect_calibration_stars(
            scene["img"] - SKY,
            variance=scene["var"],
            fwhm_pix=FWHM,
            config=replace(CFG, min_stars=n),
        )
        c2 = more[more["calib"]]
        assert len(c2) > len(cal)
        assert np.all(np.diff(np.asarray(c2["flux"])) <= 0)
    assert len(c2) == len(more)  # the last resort: every peak
    assert len(c2) > len(detect_calibration_stars(
        scene["img"] - SKY, variance=scene["var"], fwhm_pix=FWHM,
        config=replace(CFG, min_stars=len(cal) + 1))["calib"].nonzero()[0])  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pure_noise_gives_no_star(seed):
    """At most 1 peak per 10^6 pixels (the 5 sigma DAOFIND threshold is on the fitted
    Gaussian amplitude, several sigma of its own noise) and no calibration star."""
    rng = np.random.default_rng(seed)
    shape = (512, 512)
    img = noisy_image(np.zeros(shape), sky=SKY, gain=GAIN, readnoise=RN, rng=rng)
    found = detect_calibration_stars(img - SKY, variance=_variance(img), fwhm_pix=FWHM)
    assert len(found) <= shape[0] * shape[1] / 1e6
    assert not np.any(found["calib"])


def test_bad_fwhm_is_refused(scene):
    with pytest.raises(ValueError, match="fwhm_pix"):
        detect_calibration_stars(scene["img"] - SKY, variance=scene["var"], fwhm_pix=np.nan)
    with pytest.raises(ValueError, match="detector"):
        DetectionConfig(detector="sextractor")


def test_psf_on_peaks_measures_fluxes_like_the_full_fit(scene):
    """Forced fluxes with the PSF fitted on the peaks alone agree with the truth as
    well as those with crowdsource's full-fit PSF: bright isolated stars within 2 %
    of the true total flux, and within 1 % of each other."""
    data, var, found = scene["img"] - SKY, scene["var"], scene["found"]
    fit, psf_fast = fit_psf_on_stars(data, found["x"], found["y"], variance=var, fwhm_pix=FWHM)
    assert len(fit) == len(found)
    _, psf_full = measure_sources(data, variance=var, fwhm_pix=FWHM)
    x, y, flux = scene["x"], scene["y"], scene["flux"]
    dn, _ = cKDTree(np.c_[x, y]).query(np.c_[x, y], k=2)
    inside = (x > 10) & (x < SHAPE[1] - 10) & (y > 10) & (y < SHAPE[0] - 10)
    sel = (flux > 1e4) & (dn[:, 1] > 4 * FWHM) & inside
    assert sel.sum() >= 10
    f_fast = np.asarray(measure_forced(data, x, y, variance=var, psf=psf_fast)["flux"])[sel]
    f_full = np.asarray(measure_forced(data, x, y, variance=var, psf=psf_full)["flux"])[sel]
    assert np.median(np.abs(f_fast / flux[sel] - 1)) < 0.02
    assert np.median(np.abs(f_fast / f_full - 1)) < 0.01
