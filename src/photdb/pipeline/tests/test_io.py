"""Tests for photdb.pipeline.io: one chip read from a FITS file, once."""

from dataclasses import replace

import numpy as np
import pytest
from astropy.io import fits

from photdb.image import MaskBits, build_mask, make_variance
from photdb.pipeline import PipelineConfig, read_chip
from photdb.tests._render import wcs_header


def test_read_chip_header_values(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(1000, 10, (64, 80)).astype(np.float32)
    hdr = wcs_header(data.shape)
    hdr.update(GAINA=4.0, GAINB=4.2, RDNOISEA=6.0, RDNOISEB=7.0, SATURATA=40000.0)
    path = tmp_path / "chip.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, hdr, name="S1")]).writeto(path)
    fits.HDUList(
        [
            fits.PrimaryHDU(header=fits.Header({"MAGZERO": 31.0})),
            fits.ImageHDU(data, hdr, name="S1"),
        ]
    ).writeto(path, overwrite=True)
    img = read_chip(path, "S1")
    assert img.header["MAGZERO"] == 31.0  # inherited from the primary header
    assert img.gain == pytest.approx(4.1)
    assert img.readnoise == pytest.approx(6.5)
    assert img.saturate == 40000.0
    assert img.data.dtype == np.float32 and img.data.shape == (64, 80)
    assert img.wcs.has_celestial
    # a raw chip: no mask bits and no variance yet; both come from its own values
    assert img.variance is None and not img.mask.any()
    variance = make_variance(img.data, 1000.0, gain=img.gain, readnoise=img.readnoise)
    assert np.median(variance) == pytest.approx(1000 / 4.1 + (6.5 / 4.1) ** 2, rel=0.02)
    mask = build_mask(img.data, saturate=img.saturate)
    assert (mask[10:-10, 10:-10] == 0).mean() > 0.99 and np.all(mask[0] & MaskBits.EDGE)


def test_read_chip_without_wcs_names_file_and_hdu(tmp_path):
    path = tmp_path / "nowcs.fits"
    hdr = fits.Header({"GAIN": 2.0})
    fits.PrimaryHDU(np.zeros((10, 10), np.float32), hdr).writeto(path)
    with pytest.raises(ValueError, match=r"nowcs\.fits.*HDU 0.*WCS"):
        read_chip(path, 0)


def test_read_chip_without_gain_estimates_an_effective_gain(tmp_path):
    rng = np.random.default_rng(1)
    gain = 2.5  # sky 800 ADU with its shot noise, sigma² = 800 / 2.5 ADU²
    data = rng.normal(800.0, np.sqrt(800.0 / gain), (128, 128)).astype(np.float32)
    path = tmp_path / "nogain.fits"
    fits.PrimaryHDU(data, fits.Header(wcs_header(data.shape))).writeto(path)
    assert read_chip(path, 0).gain == pytest.approx(gain, rel=0.1)
    cfg = PipelineConfig()
    fixed = replace(cfg, selection=replace(cfg.selection, gain_fallback=1.7))
    assert read_chip(path, 0, config=fixed).gain == 1.7
