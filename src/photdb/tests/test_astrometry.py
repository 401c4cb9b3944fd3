"""Tests of photdb.astrometry and photdb.matching on synthetic catalogues with known truth."""

import numpy as np
import pytest
from astropy.wcs import WCS, Sip

from photdb.astrometry import AstrometryConfig, refine_wcs
from photdb.matching import find_offset, match_catalogs, match_sky

NX, NY = 2048, 4096
SCALE = 0.263 / 3600.0
CRVAL = (271.5, -28.9)


def make_wcs(crval=CRVAL, rot_deg=0.0, sip=None):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"] if sip is None else ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.crpix = [NX / 2 + 0.5, NY / 2 + 0.5]
    w.wcs.crval = crval
    t = np.radians(rot_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    w.wcs.cd = rot @ np.array([[-SCALE, 0.0], [0.0, SCALE]])
    if sip is not None:
        w.sip = Sip(sip[0], sip[1], None, None, w.wcs.crpix)
    w.pixel_shape = (NX, NY)
    w.wcs.set()
    return w


def simulate(true_wcs, n=3000, noise=0.02, spurious=0.10, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-20, NX + 20, n)
    y = rng.uniform(-20, NY + 20, n)
    mag = rng.uniform(14, 21, n)
    ra, dec = true_wcs.all_pix2world(x, y, 0)
    on = (x >= 0) & (x < NX) & (y >= 0) & (y < NY)
    xd = x[on] + rng.normal(0, noise, on.sum())
    yd = y[on] + rng.normal(0, noise, on.sum())
    ns = int(spurious * on.sum())
    xd = np.r_[xd, rng.uniform(0, NX, ns)]
    yd = np.r_[yd, rng.uniform(0, NY, ns)]
    md = np.r_[mag[on], rng.uniform(14, 21, ns)]
    return xd, yd, md, ra, dec, mag, int(on.sum())


def header_wcs(east=0.6, north=-0.8, rot=0.02, sip=None):
    """Header WCS off by (east, north) arcsec (1 arcsec total) and rotated."""
    dra = east / 3600.0 / np.cos(np.radians(CRVAL[1]))
    return make_wcs((CRVAL[0] + dra, CRVAL[1] + north / 3600.0), rot_deg=rot, sip=sip)


def grid_error_pix(fitted, true):
    gx, gy = np.meshgrid(np.linspace(0, NX - 1, 21), np.linspace(0, NY - 1, 41))
    ra, dec = fitted.all_pix2world(gx.ravel(), gy.ravel(), 0)
    px, py = true.all_world2pix(ra, dec, 0)
    return np.max(np.hypot(px - gx.ravel(), py - gy.ravel()))


def test_match_catalogs_unique_nearest():
    i1, i2, d = match_catalogs(
        [0.0, 0.3, 10.0], [0.0, 0.0, 10.0], [0.2, 50.0], [0.0, 50.0], radius=1
    )
    # both 0 and 1 want reference 0; the closer (1, at 0.1) wins
    assert i1.tolist() == [1]
    assert i2.tolist() == [0]
    assert d[0] == pytest.approx(0.1)


def test_match_catalogs_random_permutation():
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 1000, (2, 5000))
    perm = rng.permutation(5000)
    i1, i2, d = match_catalogs(x, y, x[perm] + 0.01, y[perm], radius=0.5)
    assert i1.size == 5000
    np.testing.assert_array_equal(perm[i2], i1)
    assert np.allclose(d, 0.01)


def test_match_sky_across_ra_zero():
    ra1 = np.array([359.9999, 10.0])
    dec1 = np.array([0.0, 89.99999])
    ra2 = np.array([190.0, 0.0001])
    dec2 = np.array([89.99999, 0.0])
    i1, i2, sep = match_sky(ra1, dec1, ra2, dec2, radius_arcsec=1.0)
    assert i1.tolist() == [0, 1]
    assert i2.tolist() == [1, 0]
    assert sep[0] == pytest.approx(0.72, abs=0.01)
    assert sep[1] == pytest.approx(0.072, abs=0.002)


def test_find_offset_crowded():
    """40 000 sources: ~17 random neighbours inside the search disc of each one."""
    rng = np.random.default_rng(4)
    x, y = rng.uniform(0, 2000, (2, 40000))
    keep = rng.random(40000) < 0.8
    dx, dy, votes = find_offset(x[keep], y[keep], x + 2.3, y - 1.7, radius=19.0, bin_size=0.95)
    assert dx == pytest.approx(2.3, abs=0.02)
    assert dy == pytest.approx(-1.7, abs=0.02)
    assert votes >= 0.9 * keep.sum()


def test_refine_wcs_spec_case():
    """3000 stars, header off 1" + 0.02 deg, 0.02 pix centroids, 10 % spurious."""
    true = make_wcs()
    xd, yd, md, ra, dec, mag, n_real = simulate(true)
    head = header_wcs()
    assert grid_error_pix(head, true) > 4.0  # the header alone is several pixels off
    sol = refine_wcs(head, xd, yd, ra, dec, mag=md, ref_mag=mag)
    assert sol.n_matched >= 0.95 * n_real
    # all matches are true pairs: real detections come first, in reference order
    assert np.all(sol.matched_det < n_real)
    assert sol.rms_pix == pytest.approx(0.02 * np.sqrt(2), rel=0.15)
    assert sol.rms_pix < 0.05
    assert sol.rms_arcsec == pytest.approx(sol.rms_pix * 0.263, rel=1e-3)
    assert grid_error_pix(sol.wcs, true) < 0.01
    # bulk correction = minus the header error at the chip centre
    assert sol.offset_arcsec[0] == pytest.approx(-0.6, abs=0.1)
    assert sol.offset_arcsec[1] == pytest.approx(0.8, abs=0.1)


def test_refine_wcs_without_magnitudes():
    true = make_wcs()
    xd, yd, _, ra, dec, _, _ = simulate(true, n=2000, seed=5)
    sol = refine_wcs(header_wcs(east=-1.0, north=0.5), xd, yd, ra, dec)
    assert grid_error_pix(sol.wcs, true) < 0.02


def test_refine_wcs_sip_distortion():
    a = np.zeros((3, 3))
    b = np.zeros((3, 3))
    a[2, 0], a[0, 2], b[1, 1] = 4e-7, 2e-7, 3e-7  # ~1-3 pix at the chip corners
    true = make_wcs(sip=(a, b))
    xd, yd, md, ra, dec, mag, _ = simulate(true, seed=7)
    head = header_wcs()
    lin = refine_wcs(head, xd, yd, ra, dec, mag=md, ref_mag=mag)
    assert grid_error_pix(lin.wcs, true) > 0.3
    sol = refine_wcs(
        head, xd, yd, ra, dec, mag=md, ref_mag=mag, config=AstrometryConfig(distortion_order=2)
    )
    assert "SIP" in sol.wcs.wcs.ctype[0]
    assert sol.rms_pix < 0.04
    assert grid_error_pix(sol.wcs, true) < 0.02
    # the fitted inverse polynomials (AP, BP) undo the forward ones (A, B)
    pix = np.array([[100.0, 200.0], [1900.0, 3900.0], [1024.0, 10.0]])
    back = sol.wcs.sip_foc2pix(sol.wcs.sip_pix2foc(pix, 0), 0)
    np.testing.assert_allclose(back, pix, atol=0.01)


def test_refine_wcs_too_few_matches():
    true = make_wcs()
    xd, yd, md, ra, dec, mag, _ = simulate(true, n=30, seed=9)
    with pytest.raises(RuntimeError):
        refine_wcs(header_wcs(), xd, yd, ra, dec, config=AstrometryConfig(min_matches=100))
