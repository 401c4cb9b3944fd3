"""A small, sparse chip never loses an epoch: 384 x 256 pixels, ~180 reference stars,
bad seeing and clouds on some epochs (before the calibration lowered its order by the
stars surviving the clipping, 2 of these 5 search images failed with too few stars).

Processed through the database: every image done, the order used recorded in
``galimages.calib_order`` (as in the stored coefficients), and the calibrated errors
of isolated constant stars give pulls of ~1 against the reference.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from conftest import new_database
from photdb.db import connect
from photdb.fitting import robust_sigma


@pytest.fixture(scope="module")
def processed(template_settings, tmp_path_factory):
    from photdb.pipeline import PipelineConfig
    from photdb.sim import SimConfig
    from photdb.survey.process import process
    from photdb.survey.simulated import load_survey, make_survey

    cfg = SimConfig(nx=384, ny=256, n_chips=1, filters=("r",), n_epochs=5, n_references=1,
                    density_per_arcmin2=100.0, seeing_range_arcsec=(1.3, 2.2),
                    transparency_range_mag=(0.0, 1.0), reference_artefact=False,
                    seed=7)  # fmt: skip
    survey = make_survey(tmp_path_factory.mktemp("sparse"), cfg)
    with new_database(template_settings) as settings:
        load_survey(settings, survey)
        report = process(settings, jobs=1, config=PipelineConfig())
        yield settings, survey.truth, report


def test_every_epoch_processed_with_its_order(processed):
    settings, truth, report = processed
    assert not report.failed, [o.message for o in report.failed]
    with connect("readonly", settings) as conn:
        rows = conn.execute(
            "SELECT i.status, i.calib_order, i.cheb_coeffs, i.details FROM galimages i"
            " JOIN galexposures e ON e.id = i.galexposure_id WHERE NOT e.is_reference"
        ).fetchall()
    assert len(rows) == 5 and {r[0] for r in rows} == {"done"}
    orders = [r[1] for r in rows]
    for _status, order, coeffs, details in rows:
        assert order == len(coeffs) - 1 == details["calibration"]["order"]
        assert details["calibration"]["n_fit"] >= 3 * (order + 1) ** 2
    assert min(orders) < 4  # the sparse images got a lower order, not a failure


def test_errors_calibrated_on_constant_stars(processed):
    settings, truth, _ = processed
    with connect("readonly", settings) as conn:
        pts = np.array(
            conn.execute(
                "SELECT r.ra, r.dec, s.mag - r.mag, s.magerr, r.magerr FROM galsources s"
                " JOIN galsources r ON r.id = s.ref_id WHERE s.ref_id IS NOT NULL"
                " AND r.mag < 20"
            ).fetchall(),
            float,
        )
    stars = truth.stars
    true = SkyCoord(np.asarray(stars["ra"]), np.asarray(stars["dec"]), unit="deg")
    # no astrometric catalogue: the reference keeps its header WCS (~1" off); remove the
    # bulk offset found on the bright stars, then match closely
    meas = SkyCoord(pts[:, 0], pts[:, 1], unit="deg")
    idx, sep, _ = meas.match_to_catalog_sky(true)
    near = sep.arcsec < 2.0
    dra, ddec = meas[near].spherical_offsets_to(true[idx[near]])
    meas = meas.spherical_offsets_by(np.median(dra.arcsec) * u.arcsec,
                                     np.median(ddec.arcsec) * u.arcsec)  # fmt: skip
    idx, sep, _ = meas.match_to_catalog_sky(true)
    ok = (sep.arcsec < 0.3) & (np.asarray(stars["kind"])[idx] == "constant")
    ok &= np.asarray(stars["neighbour_dist_arcsec"])[idx] > 2.0
    z = pts[ok, 2] / np.hypot(pts[ok, 3], pts[ok, 4])
    assert z.size > 50
    assert robust_sigma(z) == pytest.approx(1.0, abs=0.2)
