"""Proper motions end to end: a multi-year simulated survey and its Gaia DR3 catalogue.

One 384 x 256 chip (r), one reference at the survey's start and two search epochs
2.5 and 5 years later; stars move 4.5 mas/yr per coordinate (bulge-like). The
reference is tied to the catalogue as the Gaia archive delivers it (positions at
2016.0), and the search images force every star where it is at their epoch. The
same run with the catalogue's positions taken as they are (the old form, no proper
motions) is the control.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.stats import sigma_clip
from astropy.table import Table

from photdb.pipeline import (
    PipelineConfig,
    prepare_image,
    read_chip,
    reduce_reference,
    reduce_search,
)
from photdb.sim import SimConfig, simulate_survey
from photdb.sim.field import positions_at

SIM = SimConfig(nx=384, ny=256, n_chips=1, filters=("r",), n_epochs=2, n_references=1,
                search_gap_d=900, search_span_d=1830, reference_artefact=False,
                n_transients=0, seed=5)  # fmt: skip
CONFIG = PipelineConfig()
BUDGET_ARCSEC = 0.02


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pm")
    truth = simulate_survey(out, SIM)
    gaia_path = out / "gaia.csv"  # the archive's CSV: no units
    gaia = truth.gaia_dr3()
    gaia.write(gaia_path, format="ascii.csv")
    ep = truth.epochs
    preps = [prepare_image(read_chip(str(p), 1, config=CONFIG), config=CONFIG) for p in ep["path"]]
    iref = int(np.flatnonzero(ep["is_reference"])[0])
    searches = [int(i) for i in np.flatnonzero(~np.asarray(ep["is_reference"]))]
    res = {}
    old = Table({"ra": gaia["ra"], "dec": gaia["dec"], "mag": gaia["phot_g_mean_mag"]})
    for key, cat in (("gaia", Table.read(gaia_path, format="ascii.csv")), ("old", old)):
        ref = reduce_reference(preps[iref], config=CONFIG, astrometric_reference=cat)
        res[key] = (ref, [reduce_search(preps[i], ref.catalog, config=CONFIG) for i in searches])
    return truth, iref, searches, res


def _bright_offsets(truth, mjd, ra, dec, mag):
    """Separation (arcsec) of bright isolated reference stars from their true position
    at ``mjd`` (nearest true star within 0.3")."""
    tra, tdec = positions_at(truth.stars, mjd, SIM)
    true = SkyCoord(tra, tdec, unit="deg")
    idx, sep, _ = SkyCoord(ra, dec, unit="deg").match_to_catalog_sky(true)
    iso = np.asarray(truth.stars["neighbour_dist_arcsec"])[idx] > 2.0
    const = np.asarray(truth.stars["kind"])[idx] == "constant"
    ok = (np.asarray(mag) < 18.5) & (sep.arcsec < 0.3) & iso & const
    return sep.arcsec[ok]


def _rms(sep):
    """rms of the separations after 3σ clipping (a few bright stars have a centroid
    pulled by an unresolved neighbour: ~0.05", whatever the catalogue)."""
    return float(np.sqrt(np.mean(sigma_clip(sep, sigma=3.0, cenfunc="median").compressed() ** 2)))


def test_truth_moves(run):
    truth, iref, searches, _ = run
    ep = truth.epochs
    years = (ep["mjd"][searches[-1]] - ep["mjd"][iref]) / 365.25
    assert years > 4.5
    pm = np.hypot(truth.stars["pmra"], truth.stars["pmdec"])
    assert 4.0 < np.median(pm) < 7.0  # 4.5 mas/yr per coordinate


def test_reference_astrometry_with_gaia_catalogue(run):
    truth, iref, _, res = run
    ref = res["gaia"][0]
    cat = ref.catalog
    sep = _bright_offsets(truth, truth.epochs["mjd"][iref], cat["ra"], cat["dec"], cat["mag"])
    assert sep.size > 30
    assert _rms(sep) < BUDGET_ARCSEC
    # the proper motions were found for the catalogue's stars
    assert np.isfinite(cat["pmra"]).sum() > 0.5 * np.sum(np.asarray(cat["mag"]) < 19)


def test_search_positions_follow_the_stars(run):
    truth, _, searches, res = run
    for key in ("gaia", "old"):
        rms = []
        for i, s in zip(searches, res[key][1], strict=True):
            c = s.catalog
            sep = _bright_offsets(truth, truth.epochs["mjd"][i], c["ra"], c["dec"], c["ref_mag"])
            rms.append(_rms(sep))
        if key == "gaia":
            assert max(rms) < BUDGET_ARCSEC, rms
        else:  # forced where the stars were 5 years before: far beyond the budget
            assert rms[-1] > 1.5 * BUDGET_ARCSEC, rms
