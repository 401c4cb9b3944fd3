"""Tests for photdb.image: images from headers, masks, variance."""

import numpy as np
import pytest
from astropy.io import fits

from photdb.image import MaskBits, MaskConfig, build_mask, image_from_header, make_variance
from photdb.tests._render import noisy_image, render_stars, wcs_header


def test_image_from_header_values():
    rng = np.random.default_rng(0)
    data = rng.normal(1000, 10, (64, 80)).astype(np.float32)
    hdr = fits.Header(wcs_header(data.shape))
    hdr.update(GAINA=4.0, GAINB=4.2, RDNOISEA=6.0, RDNOISEB=7.0, SATURATA=40000.0)
    img = image_from_header(data, hdr)
    assert img.gain == pytest.approx(4.1) and img.readnoise == pytest.approx(6.5)
    assert img.saturate == 40000.0 and img.variance is None and not img.mask.any()
    with pytest.raises(ValueError, match="chip 7: no usable GAIN"):
        image_from_header(data, fits.Header(wcs_header(data.shape)), where="chip 7")


def test_make_variance():
    data = np.array([[100.0, 300.0, 50.0]])
    v = make_variance(data, 100.0, gain=2.0, readnoise=4.0)
    np.testing.assert_allclose(v, [[50 + 4, 150 + 4, 50 + 4]])
    v2 = make_variance(data, 100.0, gain=2.0, readnoise=4.0, include_source=False)
    np.testing.assert_allclose(v2, [[54, 54, 54]])


@pytest.fixture(scope="module")
def masked_scene():
    rng = np.random.default_rng(3)
    shape = (300, 240)
    n = 80
    x = rng.uniform(15, 225, n)
    y = rng.uniform(15, 285, n)
    flux = 10 ** rng.uniform(3.5, 5.0, n)
    truth = render_stars(shape, x, y, flux, fwhm=2.5, half=12)
    # a saturating star
    truth += render_stars(shape, [120.3], [150.2], [3e6], fwhm=2.5, half=12)
    img = noisy_image(truth, sky=300.0, gain=3.0, readnoise=5.0, rng=rng)
    img = np.minimum(img, 30000.0)
    # bad column
    img[:, 37] += 200.0
    # single-pixel and 2-pixel cosmic rays away from stars
    crs = []
    while len(crs) < 30:
        cy, cx = rng.integers(10, shape[0] - 10), rng.integers(10, shape[1] - 10)
        if np.min(np.hypot(x - cx, y - cy)) > 8 and abs(cx - 37) > 3:
            crs.append((cy, cx))
    for k, (cy, cx) in enumerate(crs):
        img[cy, cx] += rng.uniform(300, 3000)
        if k % 3 == 0:
            img[cy, cx + 1] += rng.uniform(300, 3000)
    return img, x, y, flux, crs


def test_build_mask_bits(masked_scene):
    img, x, y, flux, crs = masked_scene
    mask = build_mask(img, saturate=30000.0, config=MaskConfig())
    sat = (mask & MaskBits.SATURATED) != 0
    assert sat[150, 120]
    bleed = (mask & MaskBits.BLEED) != 0
    # bleed extends the saturated region along the column (rows), not along the row
    rows = np.nonzero(sat[:, 120])[0]
    assert bleed[rows.max() + 3, 120] and bleed[rows.min() - 3, 120]
    assert not bleed[150, np.nonzero(sat[150])[0].max() + 3]
    badcol = np.nonzero(np.all(mask & MaskBits.BAD_COLUMN, axis=0))[0]
    assert list(badcol) == [37]
    cr = (mask & MaskBits.COSMIC_RAY) != 0
    found = np.mean([cr[cy, cx] for cy, cx in crs])
    assert found >= 0.95
    # no real star (FWHM 2.5 pix) peak pixel flagged
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)
    near = np.array([cr[j - 1 : j + 2, i - 1 : i + 2].any() for i, j in zip(ix, iy, strict=True)])
    assert near.sum() == 0
    # only a handful of false CR pixels overall
    assert cr.sum() < 3 * len(crs)


def test_build_mask_clean_image_is_clean():
    rng = np.random.default_rng(5)
    img = rng.normal(500, 12, (200, 200)).astype(np.float32)
    mask = build_mask(img, saturate=np.inf, config=MaskConfig(edge_pix=0))
    assert (mask != 0).mean() < 1e-3
