"""Tests of the survey simulator (photdb.sim): exact truth, files, headers, artefacts."""

from __future__ import annotations

import re
import time
from datetime import datetime

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from scipy import ndimage

from photdb.sim import (
    SimConfig,
    SimTruth,
    apply_saturation,
    render_chip,
    render_stars,
    simulate_survey,
    star_magnitudes,
)
from photdb.sim.field import positions_at

SMALL = SimConfig(
    nx=200,
    ny=120,
    n_chips=2,
    filters=("g", "r"),
    n_epochs=3,
    n_references=2,
    density_per_arcmin2=600.0,
    n_transients=4,
    cosmic_rays_per_chip=6,
    seed=3,
)


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("sim")
    return outdir, simulate_survey(outdir, SMALL)


def _obs(truth: SimTruth, exposure: int, chip: int) -> Table:
    o = truth.observations
    return o[(o["exposure"] == exposure) & (o["chip"] == chip)]


def _read_chip(truth: SimTruth, exposure: int, chip: int) -> tuple[np.ndarray, fits.Header]:
    with fits.open(truth.epochs["path"][exposure]) as hdul:
        hdu = hdul[f"S{chip + 1}"]
        return hdu.data.astype(float), hdu.header.copy()


def _model(truth: SimTruth, exposure: int, chip: int, exclude=()) -> np.ndarray:
    """Noiseless image rebuilt from the truth tables alone (no artefacts)."""
    ep = truth.epochs[exposure]
    o = _obs(truth, exposure, chip)
    o = o[~np.isin(o["star_id"], list(exclude))]
    fwhm = ep["seeing_fwhm_arcsec"] / truth.config.pixscale_arcsec
    img = render_stars(
        o["x"],
        o["y"],
        o["flux_adu"],
        shape=(truth.config.ny, truth.config.nx),
        fwhm_pix=fwhm,
        beta=ep["psf_beta"],
        ellipticity=ep["ellipticity"],
        pa_deg=ep["psf_pa_deg"],
        max_lost_frac=1e-4,
    )
    return img + truth.sky_image(exposure, chip)


def _good_pixels(truth: SimTruth, exposure: int, chip: int, data: np.ndarray) -> np.ndarray:
    """Pixels away from saturation, bleeding, cosmic rays and the dead column."""
    bad = data >= truth.config.saturate_adu
    row = truth.images[(truth.images["exposure"] == exposure) & (truth.images["chip"] == chip)][0]
    bad[:, row["bad_column"]] = True
    cr = truth.cosmic_rays
    for c in cr[(cr["exposure"] == exposure) & (cr["chip"] == chip)]:
        bad[c["y"], c["x"]] = True
    return ~ndimage.binary_dilation(bad, structure=np.ones((9, 9), dtype=bool))


def _variance(truth: SimTruth, exposure: int, chip: int, model: np.ndarray) -> np.ndarray:
    row = truth.images[(truth.images["exposure"] == exposure) & (truth.images["chip"] == chip)][0]
    gain = row["gain"]
    return model / gain + (truth.config.read_noise_e / gain) ** 2


# ---------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("fwhm", [3.4, 4.6, 6.1])
def test_rendered_flux_and_centroid_are_exact(fwhm):
    rng = np.random.default_rng(7)
    x, y = 130 + rng.uniform(-0.5, 0.5), 129 + rng.uniform(-0.5, 0.5)
    img = render_stars(
        [x], [y], [1.0e4], shape=(260, 261), fwhm_pix=fwhm, ellipticity=0.05, pa_deg=37.0,
        max_lost_frac=1e-5,
    )  # fmt: skip
    yy, xx = np.indices(img.shape)
    assert img.sum() == pytest.approx(1.0e4, rel=2e-5)
    assert (img * xx).sum() / img.sum() == pytest.approx(x, abs=2e-4)
    assert (img * yy).sum() / img.sum() == pytest.approx(y, abs=2e-4)


def test_pixel_convention_centre_of_first_pixel_is_zero():
    img = render_stars([12.0], [30.0], [1000.0], shape=(60, 40), fwhm_pix=4.0)
    assert np.unravel_index(img.argmax(), img.shape) == (30, 12)  # (row=y, column=x)
    assert img[30, 11] == pytest.approx(img[30, 13], rel=1e-12)
    shifted = render_stars([12.3], [30.0], [1000.0], shape=(60, 40), fwhm_pix=4.0)
    assert shifted[30, 13] > shifted[30, 11]
    assert shifted[31, 12] == pytest.approx(shifted[29, 12], rel=1e-12)


def test_render_chip_flux_conservation_with_noise():
    flux, sky, gain, rn = 2.0e6, 800.0, 4.0, 7.0
    sums = []
    for seed in range(4):
        img = render_chip(
            [64.3], [64.8], [flux], shape=(129, 129), fwhm_pix=4.5, sky=sky, gain=gain,
            read_noise_e=rn, rng=np.random.default_rng(seed),
        )  # fmt: skip
        sums.append(float(img.astype(float).sum() - sky * img.size))
    sigma = np.sqrt((flux + sky * 129**2) / gain + 129**2 * (rn / gain) ** 2)
    assert np.all(np.abs(np.array(sums) - flux) < 4 * sigma)
    assert np.std(sums) > 0.3 * sigma  # the noise is really there
    assert abs(np.mean(sums) - flux) < 3 * sigma / 2  # unbiased to ~0.1%


def test_render_chip_is_fast():
    rng = np.random.default_rng(0)
    n = 3000
    x, y = rng.uniform(-10, 522, n), rng.uniform(-10, 266, n)
    a, b = 10 ** (0.32 * 14.5), 10 ** (0.32 * 23.0)
    mag = np.log10(a + rng.uniform(size=n) * (b - a)) / 0.32
    flux = 90 * 10 ** (-0.4 * (mag - 26.2))
    best = np.inf
    for _ in range(2):
        t = time.perf_counter()
        img = render_chip(
            x, y, flux, shape=(256, 512), fwhm_pix=1.6 / 0.263, sky=1000.0, rng=rng,
            saturate_adu=40000.0, ellipticity=0.04, pa_deg=20.0,
        )  # fmt: skip
        best = min(best, time.perf_counter() - t)
    assert img.shape == (256, 512)
    assert best < 1.0


def test_apply_saturation_bleeds_along_column_and_conserves_charge():
    img = np.full((50, 7), 100.0)
    img[20:23, 3] = [5000.0, 9000.0, 5000.0]
    out = apply_saturation(img, 1000.0)
    assert out.max() == 1000.0
    assert out.sum() == pytest.approx(img.sum())  # nothing reached the column ends
    assert np.array_equal(out[:, [0, 1, 2, 4, 5, 6]], img[:, [0, 1, 2, 4, 5, 6]])
    run = np.nonzero(out[:, 3] == 1000.0)[0]
    assert run.size > 3 and np.all(np.diff(run) == 1)  # a trail longer than the hot pixels
    assert run.min() < 20 and run.max() > 22  # spreading both ways


# ---------------------------------------------------------------------------- survey files


def test_survey_is_deterministic(survey, tmp_path):
    _, truth = survey
    again = simulate_survey(tmp_path / "a", SMALL)
    for name in ("stars", "observations", "artefacts", "cosmic_rays", "images"):
        a, b = getattr(truth, name), getattr(again, name)
        assert a.colnames == b.colnames
        for col in a.colnames:
            assert np.array_equal(
                np.asarray(a[col]), np.asarray(b[col]), equal_nan=a[col].dtype.kind == "f"
            )
    for p1, p2 in zip(truth.epochs["path"], again.epochs["path"], strict=True):
        with fits.open(p1) as h1, fits.open(p2) as h2:
            for k in range(1, len(h1)):
                assert np.array_equal(h1[k].data, h2[k].data)
    other = simulate_survey(tmp_path / "b", SimConfig(**(SMALL.to_dict() | {"seed": 4})))
    with fits.open(truth.epochs["path"][0]) as h1, fits.open(other.epochs["path"][0]) as h2:
        assert not np.array_equal(h1[1].data, h2[1].data)


def test_headers_have_decam_keywords(survey):
    outdir, truth = survey
    files = sorted(p.name for p in outdir.glob("*.fits"))
    assert files == sorted(truth.epochs["filename"])
    for ep in truth.epochs:
        assert re.fullmatch(r"c4d_\d{6}_\d{6}_ooi_[grizYu]_v1\.fits", ep["filename"])
        with fits.open(ep["path"]) as hdul:
            assert len(hdul) == 1 + SMALL.n_chips and hdul[0].data is None
            h = hdul[0].header
            for key in ("OBS-LAT", "OBS-LONG", "OBS-ELEV", "RA", "DEC", "AIRMASS", "OBJECT"):
                assert key in h
            assert h["INSTRUME"] == "DECam" and h["TELESCOP"] == "CTIO 4.0-m telescope"
            assert h["OBSERVAT"] == "CTIO" and h["TIMESYS"] == "UTC"
            assert h["OBSTYPE"] == "object" and h["PROCTYPE"] == "InstCal"
            assert h["EXPTIME"] == SMALL.exptime_s
            assert h["BAND"] == ep["filter"] and h["FILTER"].startswith(f"{ep['filter']} DECam")
            assert h["MJD-OBS"] == pytest.approx(ep["mjd_start"], abs=1e-9)
            assert ep["mjd"] == pytest.approx(ep["mjd_start"] + 45.0 / 86400.0)
            t = datetime.fromisoformat(h["DATE-OBS"])
            mjd = (t - datetime(1858, 11, 17)).total_seconds() / 86400.0
            assert mjd == pytest.approx(h["MJD-OBS"], abs=1e-8)
            stamp = ep["filename"][4:17]
            assert t.strftime("%y%m%d_%H%M%S") == stamp
            pointing = SkyCoord(h["RA"], h["DEC"], unit=("hourangle", "deg"))
            assert (
                pointing.separation(SkyCoord(ep["ra_header"], ep["dec_header"], unit="deg")).arcsec
                < 0.3
            )
            for chip in range(SMALL.n_chips):
                c = hdul[chip + 1].header
                assert c["EXTNAME"] == f"S{chip + 1}" and c["CCDNUM"] == chip + 1
                assert hdul[chip + 1].data.dtype == np.dtype(">f4")
                assert hdul[chip + 1].data.shape == (SMALL.ny, SMALL.nx)
                for key in ("GAINA", "GAINB", "GAIN", "RDNOISEA", "RDNOISE", "SATURATE"):
                    assert key in c
                assert c["SATURATE"] == SMALL.saturate_adu
                assert {"CD1_1", "CD1_2", "CD2_1", "CD2_2"} <= set(c)
                w = WCS(c)
                assert w.wcs.ctype[0] == "RA---TAN" and w.wcs.ctype[1] == "DEC--TAN"
                scale = proj_plane_pixel_scales(w) * 3600
                assert scale == pytest.approx([0.263, 0.263], rel=1e-6)


def test_chips_side_by_side_on_the_sky(survey):
    _, truth = survey
    w0, w1 = truth.true_wcs(0, 0), truth.true_wcs(0, 1)
    east_edge = SkyCoord(*w0.wcs_pix2world([[SMALL.nx - 0.5, 60]], 0)[0], unit="deg")
    west_edge = SkyCoord(*w1.wcs_pix2world([[-0.5, 60]], 0)[0], unit="deg")
    gap = east_edge.separation(west_edge).arcsec / SMALL.pixscale_arcsec
    assert gap == pytest.approx(SMALL.chip_gap_pix, abs=0.05)


def test_header_wcs_is_off_by_configured_error_and_truth_is_exact(survey):
    _, truth = survey
    stars = truth.stars
    seps = []
    for ep in truth.epochs:
        for chip in range(SMALL.n_chips):
            o = _obs(truth, ep["exposure"], chip)
            o = o[o["on_chip"]]
            s = stars[o["star_id"]]
            # truth ra, dec hold at the survey's start; each exposure sees the stars moved
            ra, dec = positions_at(s, float(ep["mjd"]), SMALL)
            x, y = truth.true_wcs(ep["exposure"], chip).wcs_world2pix(ra, dec, 0)
            assert np.max(np.hypot(x - o["x"], y - o["y"])) < 1e-6
            resp = truth.response(ep["exposure"], chip, o["x"], o["y"])
            assert np.allclose(resp, o["response"], rtol=1e-12)
            assert (
                0.5 * SMALL.response_error < np.ptp(-2.5 * np.log10(resp)) <= SMALL.response_error
            )
            _, header = _read_chip(truth, ep["exposure"], chip)
            ra, dec = WCS(header).wcs_pix2world(o["x"], o["y"], 0)
            sep = SkyCoord(ra, dec, unit="deg").separation(SkyCoord(s["ra"], s["dec"], unit="deg"))
            seps.append(np.median(sep.arcsec))
    seps = np.array(seps)
    assert np.all(np.abs(seps - SMALL.wcs_error_arcsec) < 0.1)


def test_truth_roundtrips_through_ecsv(survey, tmp_path):
    _, truth = survey
    truth.write(tmp_path / "truth")
    back = SimTruth.read(tmp_path / "truth")
    assert back.config == truth.config
    for name in ("stars", "epochs", "images", "observations", "artefacts", "cosmic_rays"):
        a, b = getattr(truth, name), getattr(back, name)
        assert a.colnames == b.colnames and len(a) == len(b) and len(a) > 0
        for col in a.colnames:
            va, vb = np.asarray(a[col]), np.asarray(b[col])
            if va.dtype.kind == "f":
                assert np.array_equal(va, vb, equal_nan=True), (name, col)
            else:
                assert va.tolist() == vb.tolist(), (name, col)
    assert {"mag_g", "mag_r", "is_variable", "amplitude", "period_d", "phase", "kind", "t0"} <= set(
        back.stars.colnames
    )
    assert back.true_wcs(1, 1).wcs.compare(truth.true_wcs(1, 1).wcs)


def test_images_match_the_truth_within_noise(survey):
    _, truth = survey
    for exposure in np.nonzero(~truth.epochs["has_artefact"])[0][:4]:
        for chip in range(SMALL.n_chips):
            data, _ = _read_chip(truth, exposure, chip)
            model = _model(truth, exposure, chip)
            good = _good_pixels(truth, exposure, chip, data)
            chi = ((data - model) / np.sqrt(_variance(truth, exposure, chip, model)))[good]
            assert good.mean() > 0.6
            assert abs(chi.mean()) < 0.03
            assert chi.std() == pytest.approx(1.0, abs=0.03)


def test_truth_model_detects_wrong_positions(survey):
    """The comparison above is sensitive: 0.1 pixel position errors are caught."""
    _, truth = survey
    exposure, chip = int(np.nonzero(~truth.epochs["has_artefact"])[0][0]), 0
    data, _ = _read_chip(truth, exposure, chip)
    o = truth.observations
    sel = (o["exposure"] == exposure) & (o["chip"] == chip)
    o["x"][sel] += 0.1
    try:
        model = _model(truth, exposure, chip)
    finally:
        o["x"][sel] -= 0.1
    good = _good_pixels(truth, exposure, chip, data)
    chi = ((data - model) / np.sqrt(_variance(truth, exposure, chip, model)))[good]
    assert chi.std() > 1.1


def test_saturated_stars_are_clipped_and_bleed(survey):
    _, truth = survey
    sat = SMALL.saturate_adu
    n_bleeders = 0
    for ep in truth.epochs:
        for chip in range(SMALL.n_chips):
            data, header = _read_chip(truth, ep["exposure"], chip)
            assert data.max() <= header["SATURATE"]
            o = _obs(truth, ep["exposure"], chip)
            o = o[o["on_chip"] & (o["x"] > 2) & (o["x"] < SMALL.nx - 3)]
            brightest = o[np.argmax(o["flux_adu"])]
            assert brightest["saturated"]
            ix, iy = int(round(brightest["x"])), int(round(brightest["y"]))
            assert data[iy, ix] == sat
            single = render_stars(
                [brightest["x"]], [brightest["y"]], [brightest["flux_adu"]],
                shape=data.shape, fwhm_pix=ep["seeing_fwhm_arcsec"] / SMALL.pixscale_arcsec,
                beta=ep["psf_beta"], ellipticity=ep["ellipticity"], pa_deg=ep["psf_pa_deg"],
            )  # fmt: skip
            core = int((single[:, ix] > sat).sum())
            lab, _ = ndimage.label(data[:, ix] >= sat)
            trail = int((lab == lab[iy]).sum())
            assert trail >= core
            n_bleeders += trail > core + 2
    assert n_bleeders >= len(truth.epochs)  # bleed trails extend beyond the saturated cores
    assert truth.observations["saturated"].sum() > 0


def test_transients_absent_from_references(survey):
    _, truth = survey
    stars, epochs = truth.stars, truth.epochs
    tr = stars[stars["kind"] == "transient"]
    assert len(tr) == SMALL.n_transients
    assert np.all(tr["t0"] > np.max(epochs["mjd"][epochs["is_reference"]]))
    o = truth.observations
    in_tr = np.isin(o["star_id"], tr["star_id"]) & o["on_chip"]
    ref = np.isin(o["exposure"], epochs["exposure"][epochs["is_reference"]])
    assert np.all(o["flux_adu"][in_tr & ref] == 0) and np.all(np.isnan(o["mag"][in_tr & ref]))
    assert np.sum(o["flux_adu"][in_tr & ~ref] > 0) >= 2
    # in the pixels: nothing at the transient positions in references, flux in search images
    seen = 0
    for row in o[in_tr & ~o["near_defect"]]:
        e, c = int(row["exposure"]), int(row["chip"])
        data, _ = _read_chip(truth, e, c)
        model = _model(truth, e, c, exclude=[row["star_id"]])
        ix, iy = int(round(row["x"])), int(round(row["y"]))
        box = np.s_[max(iy - 8, 0) : iy + 9, max(ix - 8, 0) : ix + 9]
        if not _good_pixels(truth, e, c, data)[box].all():
            continue
        resid = float((data - model)[box].sum())
        sigma = float(np.sqrt(_variance(truth, e, c, model)[box].sum()))
        if epochs["is_reference"][e]:
            assert abs(resid) < 5 * sigma
        elif row["flux_adu"] > 20 * sigma:
            alone = _model(truth, e, c) - model  # the transient's own expected pixels
            assert resid == pytest.approx(float(alone[box].sum()), abs=5 * sigma)
            assert resid > 0.8 * row["flux_adu"]
            seen += 1
    assert seen >= 1


def test_artefact_is_on_one_reference_only(survey):
    _, truth = survey
    epochs, art = truth.epochs, truth.artefacts
    assert epochs["has_artefact"].sum() == 1
    bad = epochs[epochs["has_artefact"]][0]
    assert bad["is_reference"]
    assert set(art["exposure"]) == {bad["exposure"]}
    assert set(art["kind"]) == {"blob", "fake", "trail"}
    blobs = art[art["kind"] == "blob"]
    assert len(blobs) == SMALL.n_artefact_blobs and np.all(blobs["delta_mag"] < 0)
    other = epochs[
        epochs["is_reference"] & (epochs["filter"] == bad["filter"]) & ~epochs["has_artefact"]
    ]
    chip = int(blobs["chip"][0])
    checked = 0
    for exposure, expect_blob in ((int(bad["exposure"]), True), (int(other["exposure"][0]), False)):
        data, _ = _read_chip(truth, exposure, chip)
        model = _model(truth, exposure, chip)
        var = _variance(truth, exposure, chip, model)
        o = _obs(truth, exposure, chip)
        good = _good_pixels(truth, exposure, chip, data)
        for b in blobs:
            star = o[o["star_id"] == int(b["star_ids"])][0]
            ix, iy = int(round(star["x"])), int(round(star["y"]))
            box = np.s_[max(iy - 6, 0) : iy + 7, max(ix - 6, 0) : ix + 7]
            if not good[box].all():
                continue
            checked += 1
            resid = float((data - model)[box].sum())
            sigma = float(np.sqrt(var[box].sum()))
            if expect_blob:
                assert resid > 10 * sigma and resid > 0.5 * b["flux_adu"]
            else:
                assert abs(resid) < 5 * sigma
    assert checked >= 2


def test_light_curves_follow_the_truth_parameters(survey):
    _, truth = survey
    stars = truth.stars
    t = np.linspace(59300.0, 59400.0, 20001)
    for s in stars[stars["kind"] == "periodic"][:5]:
        one = Table(s)
        mags = np.array([star_magnitudes(one, ti, "r")[0] for ti in t[::10]])
        assert np.ptp(mags) == pytest.approx(s["amplitude"], rel=0.05)
        assert np.mean(mags) == pytest.approx(s["mag_r"], abs=0.05 * s["amplitude"] + 0.002)
    s = Table(stars[stars["kind"] == "transient"][0])
    t0, rise = s["t0"][0], s["rise_d"][0]
    assert np.isnan(star_magnitudes(s, t0 - 0.01, "g")[0])
    assert star_magnitudes(s, t0 + rise, "g")[0] == pytest.approx(s["mag_g"][0])
    assert star_magnitudes(s, t0 + rise + 10, "g")[0] == pytest.approx(s["mag_g"][0] + 0.5)


def test_schedule_references_first_on_distinct_nights(survey):
    _, truth = survey
    ep = truth.epochs
    for band in SMALL.filters:
        mine = ep[ep["filter"] == band]
        ref, search = mine[mine["is_reference"]], mine[~mine["is_reference"]]
        assert len(ref) == SMALL.n_references and len(search) == SMALL.n_epochs
        assert len(set(ref["night"])) == SMALL.n_references
        assert ref["mjd"].max() < search["mjd"].min()
        assert np.max(np.bincount(search["night"])) >= 2
        assert np.all(np.diff(mine["mjd_start"]) * 86400 > SMALL.exptime_s)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        SimConfig(filters=("q",))
    with pytest.raises(ValueError):
        SimConfig(seeing_range_arcsec=(0.3, 0.5))
    assert SimConfig.from_dict(SimConfig().to_dict()) == SimConfig()
