"""The reference step on a real crowded image: astropy's M13 test file (DSS via SkyView).

The file has a TAN WCS but no GAIN, RDNOISE, SATURATE, FILTER or MAGZERO:
:func:`photdb.pipeline.read_chip` supplies an effective gain from the image's own
noise, read noise 0 and no saturation limit; the zero point is 0 (``zp_source``
"none"), so ``mag`` equals the instrumental magnitude.

What was seen (image and detections inspected as a PNG): a 300 x 300 field of
1"/pix with a dozen bright stars spread over the field, the resolved cluster core
near (150, 140) and a large number of faint stars and plate-grain peaks.  Of the
order of 1500 sources are fitted (many are grain-scale peaks: the scanned-plate noise
is correlated beyond the 2 x 2 pixel scale that the effective gain accounts for);
the residual image is flat at ~1.4x the estimated noise away from the core, with
unresolved cluster light left in the core.
"""

import os

import astropy
import numpy as np
import pytest
from scipy.spatial import cKDTree

from photdb.photometry import render_model
from photdb.pipeline import PipelineConfig, prepare_image, read_chip, reduce_reference

M13 = os.path.join(os.path.dirname(astropy.__file__), "io/fits/hdu/compressed/tests/data/m13.fits")

#: The visually obvious bright stars (x = column, y = row, 0-based), read off the image.
BRIGHT = [(142.6, 104.2), (207.6, 87.9), (135.4, 108.7), (221.3, 140.0), (263.8, 202.4),
          (49.3, 161.2), (182.1, 30.4), (35.4, 226.8)]  # fmt: skip


@pytest.fixture(scope="module")
def m13():
    if not os.path.exists(M13):
        pytest.skip("astropy test data m13.fits not installed")
    cfg = PipelineConfig()
    img = read_chip(M13, 0, config=cfg)
    prep = prepare_image(img, config=cfg)
    return img, prep, reduce_reference(prep, config=cfg)


def test_reads_without_detector_keywords(m13):
    img, _, ref = m13
    assert img.gain > 1 and img.readnoise == 0 and img.saturate == np.inf
    assert ref.stats.zp_source == "none"
    assert 1.5 < ref.stats.seeing_fwhm_arcsec < 5  # DSS plate seeing


def test_source_count_and_bright_stars(m13):
    _, _, ref = m13
    cat = ref.catalog
    assert 800 < len(cat) < 2500
    d, i = cKDTree(np.c_[cat["x"], cat["y"]]).query(BRIGHT)
    assert np.all(d < 1.0)
    # they are among the brightest sources
    rank = np.argsort(np.argsort(np.asarray(cat["mag"])))
    assert np.all(rank[i] < 30)
    # sky positions from the header WCS
    assert np.all(np.abs(cat["ra"] - 250.4226) < 0.06) and np.all(
        np.abs(cat["dec"] - 36.4602) < 0.05
    )


def test_residual_near_noise_outside_core(m13):
    _, prep, _ = m13
    det = prep.detections
    model = render_model(prep.data.shape, det["x"], det["y"], det["flux"], prep.psf)
    res = prep.data - model
    yy, xx = np.mgrid[0 : res.shape[0], 0 : res.shape[1]]
    outside = (np.hypot(xx - 150, yy - 150) > 110) & (prep.mask == 0)
    outside &= (xx > 10) & (xx < 290) & (yy > 10) & (yy < 290)
    noise = np.sqrt(np.median(prep.variance[outside]))
    r = res[outside]
    robust = 1.4826 * np.median(np.abs(r - np.median(r)))
    assert robust < 2.0 * noise
    assert abs(np.median(r)) < noise
