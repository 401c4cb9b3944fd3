"""Tests of photdb.stack on synthetic star fields with known truth."""

import numpy as np
import pytest
from astropy.wcs import WCS

from photdb.stack import StackConfig, pixel_mapping, stack_images

SHAPE = (180, 200)  # (ny, nx)
SCALE = 0.263 / 3600.0
SIGMA_PSF = 1.5
NOISE = 1.0


def make_wcs(dx=0.0, dy=0.0, rot_deg=0.0, pixscale=1.0):
    """WCS whose pixel (x - dx, y - dy) sees what the reference pixel (x, y) sees."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [271.5, -28.9]
    w.wcs.crpix = [SHAPE[1] / 2 + 0.5 - dx, SHAPE[0] / 2 + 0.5 - dy]
    t = np.radians(rot_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    w.wcs.cd = rot @ np.array([[-SCALE, 0.0], [0.0, SCALE]]) * pixscale
    w.wcs.set()
    return w


WCSS = [
    make_wcs(),
    make_wcs(3.37, -2.61, rot_deg=0.3),
    make_wcs(-5.21, 4.45, pixscale=1.02),
]
GAINS = [1.0, 1.0, 2.0]  # image 2 has twice the counts of image 0


def star_field(seed=0, n=60):
    rng = np.random.default_rng(seed)
    ra, dec = make_wcs().all_pix2world(rng.uniform(15, 185, n), rng.uniform(15, 165, n), 0)
    flux = rng.uniform(5000, 20000, n)
    return ra, dec, flux


def render(wcs, ra, dec, flux, gain, rng=None, blob=None):
    x, y = wcs.all_world2pix(ra, dec, 0)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]].astype(float)
    img = np.zeros(SHAPE)
    # the PSF is fixed on the sky: its width in this image's pixels follows the pixel scale
    s = SIGMA_PSF / np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))) * SCALE
    for xi, yi, fi in zip(x, y, flux, strict=True):
        img += (
            gain * fi / (2 * np.pi * s**2) * np.exp(-((xx - xi) ** 2 + (yy - yi) ** 2) / (2 * s**2))
        )
    if blob is not None:
        bx, by, amp = blob
        img += amp * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * 2.0**2))
    return img if rng is None else img + rng.normal(0, NOISE, SHAPE)


def images(blob=None, seed=1):
    ra, dec, flux = star_field()
    rng = np.random.default_rng(seed)
    imgs = [
        render(w, ra, dec, flux, g, rng, blob=blob if i == 1 else None)
        for i, (w, g) in enumerate(zip(WCSS, GAINS, strict=True))
    ]
    var = [np.full(SHAPE, NOISE**2) for _ in imgs]
    return imgs, var, (ra, dec, flux)


def true_aperture_flux(ra, dec, flux, x, y):
    """Aperture flux on the noise-free target-frame image (includes blended neighbours)."""
    return aperture_flux(render(WCSS[0], ra, dec, flux, 1.0), x, y)


def aperture_flux(img, x, y, r=7.0):
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    inside = [(xx - xi) ** 2 + (yy - yi) ** 2 <= r**2 for xi, yi in zip(x, y, strict=True)]
    return np.array([img[m].sum() for m in inside])


def test_pixel_mapping_matches_wcs():
    sx, sy, jac = pixel_mapping(WCSS[2], target_wcs=WCSS[0], shape=SHAPE, step=32)
    ra, dec = WCSS[0].all_pix2world([0.0, 57.0, 199.0], [0.0, 101.0, 179.0], 0)
    ex, ey = WCSS[2].all_world2pix(ra, dec, 0)
    np.testing.assert_allclose(sx[[0, 101, 179], [0, 57, 199]], ex, atol=1e-4)
    np.testing.assert_allclose(sy[[0, 101, 179], [0, 57, 199]], ey, atol=1e-4)
    np.testing.assert_allclose(jac, 1 / 1.02**2, rtol=1e-4)


def test_stack_preserves_star_flux():
    imgs, var, (ra, dec, flux) = images()
    stack, svar, n_used = stack_images(
        imgs, WCSS, target_wcs=WCSS[0], shape=SHAPE, variances=var, scales=[1.0, 1.0, 0.5]
    )
    x, y = WCSS[0].all_world2pix(ra, dec, 0)
    inner = (x > 20) & (x < 175) & (y > 20) & (y < 155)
    # all three cover the interior; noise-only rejections are rare
    assert np.mean(n_used[25:150, 25:170] == 3) > 0.995
    assert np.all(n_used[25:150, 25:170] >= 2)
    assert (n_used < 3).any()  # edges not covered by all
    rel = (
        aperture_flux(stack, x[inner], y[inner])
        / true_aperture_flux(ra, dec, flux, x[inner], y[inner])
        - 1
    )
    assert inner.sum() > 30
    assert np.max(np.abs(rel)) < 0.01
    assert abs(np.median(rel)) < 0.003
    # background noise of the stack agrees with the propagated variance (order of)
    sky = np.ones(SHAPE, bool)
    for xi, yi in zip(x, y, strict=True):
        sky[max(0, int(yi) - 9) : int(yi) + 10, max(0, int(xi) - 9) : int(xi) + 10] = False
    sky &= n_used == 3
    ratio = np.std(stack[sky]) / np.sqrt(np.median(svar[sky]))
    assert 0.6 < ratio < 1.1  # resampling smooths the noise of the shifted images


def test_stack_rejects_artefact_on_one_image():
    bx, by = 100.0, 90.0
    blob = (bx - 3.37, by + 2.61, 300.0)  # blob position in image 1's own pixels
    clean, var, _ = images()
    dirty, _, _ = images(blob=blob)
    scales = [1.0, 1.0, 0.5]
    kw = dict(target_wcs=WCSS[0], shape=SHAPE, variances=var, scales=scales)
    s_clean, svar, _ = stack_images(clean, WCSS, **kw)
    s_dirty, _, n_used = stack_images(dirty, WCSS, **kw)
    box = (slice(int(by) - 8, int(by) + 9), slice(int(bx) - 8, int(bx) + 9))
    blob_flux = 300.0 * 2 * np.pi * 2.0**2
    diff = s_dirty[box] - s_clean[box]
    # only the blob's faint wings (below the rejection threshold) leak, at 1/6 weight
    assert np.max(np.abs(diff)) < 3 * np.sqrt(svar[box].max())
    assert abs(diff.sum()) < 0.005 * blob_flux
    assert n_used[int(by), int(bx)] == 2
    # without rejection a third of the blob would survive
    naive, _, _ = stack_images(
        dirty, WCSS, **kw, config=StackConfig(clip_sigma=np.inf, weighting="uniform")
    )
    naive_clean, _, _ = stack_images(
        clean, WCSS, **kw, config=StackConfig(clip_sigma=np.inf, weighting="uniform")
    )
    assert (naive - naive_clean)[box].sum() == pytest.approx(blob_flux / 3, rel=0.05)


def test_stack_masks_and_default_variance():
    imgs, _, (ra, dec, flux) = images(seed=2)
    masks = [np.zeros(SHAPE, bool) for _ in imgs]
    masks[0][50:70, 60:90] = True
    imgs[0][50:70, 60:90] = 1e6  # garbage under the mask must not leak
    stack, svar, n_used = stack_images(
        imgs, WCSS, target_wcs=WCSS[0], shape=SHAPE, masks=masks, scales=[1.0, 1.0, 0.5]
    )
    assert np.nanmax(np.abs(stack[45:75, 55:95])) < 2000  # no 1e6 leaking
    # default variance: robust per-image estimate (~NOISE**2 per image)
    assert np.median(svar[n_used == 3]) == pytest.approx(1 / (1 + 1 + 4), rel=0.15)
    assert np.all(n_used[52:68, 62:88] <= 2)
    x, y = WCSS[0].all_world2pix(ra, dec, 0)
    inner = (x > 20) & (x < 175) & (y > 20) & (y < 155)
    rel = (
        aperture_flux(stack, x[inner], y[inner])
        / true_aperture_flux(ra, dec, flux, x[inner], y[inner])
        - 1
    )
    assert np.max(np.abs(rel)) < 0.01


def test_stack_input_checks():
    with pytest.raises(ValueError):
        stack_images([np.zeros(SHAPE)], [], target_wcs=WCSS[0], shape=SHAPE)
