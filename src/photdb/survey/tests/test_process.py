"""End to end: simulate -> ingest -> reference -> process, checked against the DB and truth.

One tiny survey (two filters, one 256 x 128 chip, three references and three
epochs per filter) is processed once with two workers into a module database;
the tests read it. A second database processes filter g with one worker, with
a crash injected after the COPY of one image, and must end with the same rows.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from psycopg import sql

from conftest import new_database
from photdb.db import connect
from photdb.db.copy import Column, encode_binary_copy, sky_order
from photdb.db.seedsql import split_sql
from photdb.survey import queries, store
from photdb.survey.candidates import variable_candidates

SEED_SQL = Path(__file__).resolve().parents[2] / "db" / "tests" / "data" / "galactic_pipeline.sql"
NOTEBOOK_ID = "284560863"
NOTEBOOK_RA, NOTEBOOK_DEC = "271.486119431597", "-28.9101692547778"
_n = itertools.count()


def _sim_config():
    from photdb.sim import SimConfig

    # more variables than the default 5% so that the recovery check has a sample
    return SimConfig(nx=256, ny=128, n_chips=1, filters=("g", "r"), n_epochs=3,
                     n_references=3, variable_fraction=0.2,
                     amplitude_range_mag=(0.6, 1.5), seed=7)  # fmt: skip


def _pipeline_config(astrometric_catalog=None):
    """Defaults, except fewer calibration stars (the test chip is tiny, ~300 stars) and
    the 6σ cut the calibrated errors allow (the notebook's 15σ is the default); no
    new-source pass (an added source's position depends on which images were done when
    it was added, so the crash-and-retry run would differ from the parallel one; the
    new sources are tested in test_newsources.py)."""
    from dataclasses import replace

    from photdb.pipeline import PipelineConfig

    cfg = PipelineConfig(astrometric_catalog=astrometric_catalog)
    return replace(
        cfg,
        calibration=replace(cfg.calibration, min_stars=25),
        variability=replace(cfg.variability, nsigma=6.0),
        newsources=replace(cfg.newsources, enabled=False),
    )


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    from photdb.survey.simulated import make_survey

    return make_survey(tmp_path_factory.mktemp("sim"), _sim_config())


@pytest.fixture(scope="module")
def processed(template_settings, survey):
    from photdb.survey.process import process
    from photdb.survey.simulated import load_survey

    with new_database(template_settings) as settings:
        _, sets = load_survey(settings, survey)
        config = _pipeline_config(str(survey.catalog))
        report = process(settings, jobs=2, config=config)
        yield settings, survey.truth, sets, report


def test_binary_copy_encoder_roundtrip(db_settings):
    ids = np.array([3, 1, 2], np.int64)
    cols = [Column("id", "int8", ids), Column("galimage_id", "int4", np.array([1, 1, 1])),
            Column("ra", "float8", np.array([10.0, 10.1, 10.2])),
            Column("dec", "float8", np.array([-5.0, -5.1, -5.2])),
            Column("mag", "float4", np.array([17.0, np.nan, 18.0])),
            Column("ref_id", "int8", np.array([0, 7, 0]), np.array([1, 0, 1], bool))]  # fmt: skip
    data = encode_binary_copy(cols)
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff")
    with connect("writer", db_settings) as conn, conn.cursor() as cur:
        from photdb.db.copy import copy_columns

        assert copy_columns(cur, "galsources", cols) == 3
        rows = cur.execute("SELECT id, mag, ref_id FROM galsources ORDER BY id").fetchall()
    assert rows == [(1, None, 7), (2, 18.0, None), (3, 17.0, None)]


def test_sky_order_is_local():
    rng = np.random.default_rng(1)
    ra, dec = 271.4 + rng.uniform(0, 0.1, 5000), -28.9 + rng.uniform(0, 0.05, 5000)
    o = sky_order(ra, dec)
    assert sorted(o) == list(range(5000))
    step = np.hypot(np.diff(ra[o]) * np.cos(np.radians(-28.9)), np.diff(dec[o]))
    rand = np.hypot(np.diff(ra) * np.cos(np.radians(-28.9)), np.diff(dec))
    assert np.median(step) < 0.1 * np.median(rand)


def test_everything_processed_and_audited(processed):
    settings, truth, sets, report = processed
    assert not report.failed, [o.message for o in report.failed]
    assert {s.kind for s in sets} == {"set"}
    n_chips = len(truth.epochs)  # one chip per exposure
    with connect("readonly", settings) as conn:
        status = conn.execute("SELECT status, count(*) FROM galimages GROUP BY 1").fetchall()
        assert status == [("done", n_chips)]
        search = conn.execute(
            "SELECT i.id, i.reference, zp, zp_scatter, cheb_coeffs, chi2nu, error_factor,"
            " astrom_rms_arcsec, astrom_nmatch, seeing_fwhm_arcsec, sky_level, n_detected,"
            " n_forced, n_saved, n_variables, wcs_header, provenance_id, code_version,"
            " processed_at, details FROM galimages i JOIN galexposures e"
            " ON e.id = i.galexposure_id WHERE NOT e.is_reference"
        ).fetchall()
        assert len(search) == 2 * 3
        # the simulator's catalogue has survey-band photometry, but a 256x128 chip
        # matches too few of its stars: the reference keeps its header zero point
        # and says why
        primaries = conn.execute(
            "SELECT details FROM galimages i JOIN galexposures e ON e.id = i.galexposure_id"
            " WHERE e.is_reference AND i.reference IS NULL"
        ).fetchall()
        assert len(primaries) >= 2  # one per filter at least
        for (details,) in primaries:
            phot = details["photometric_calibration"]
            assert phot["column"] in ("mag_g", "mag_r") and "min_stars" in phot["skipped"]
        # the stored reference catalogue carries the quality columns the calibration
        # uses to pick its stars, as the in-memory catalogue does
        ref = store.fetch_reference_table(conn, int(search[0][1]))
        assert {"qf", "fracflux", "flags", "x", "y"} <= set(ref.colnames)
        assert np.isfinite(ref["qf"]).all() and np.isfinite(ref["fracflux"]).all()
        for row in search:
            assert all(v is not None for v in row), row
            # rms over the matched calibration stars (~0.2 pix); the bright-star accuracy
            # against truth (< 0.1 pix) is asserted in test_pipeline. The fast detector
            # matches only bright, isolated stars: on this 256x128 chip 15-40 of them
            assert row[7] < 0.15 and row[8] >= 12
            # the Chebyshev surface: 4th order unless the stars surviving the clipping
            # cannot support it (the rule itself: test_calibration, test_sparse); square
            # either way, its order recorded, its uncertainty carried into magerr
            order = len(row[4]) - 1
            assert 2 <= order <= 4 and all(len(c) == order + 1 for c in row[4])
            cal = row[19]["calibration"]
            assert cal["order"] == order and cal["surface_err_mag"] > 0
            if order < 4:
                assert cal["n_fit"] < 2 * 3 * 25  # lowered on a chip this small only
            assert cal["error_factor"] >= 1.0 and cal["blend_error_mag"] >= 0.0
            assert set(cal["mag_error_scale"]) == {"mag", "factor", "n"}
            assert "CRVAL1" in row[15] and re.fullmatch(r"[0-9a-f]{16}", row[16])
            assert row[13] <= row[12] and "timings_s" in row[19]
            n = conn.execute("SELECT count(*) FROM galsources WHERE galimage_id = %s",
                             [row[0]]).fetchone()[0]  # fmt: skip
            assert n == row[13] > 100
            nv = conn.execute("SELECT count(*) FROM galvarobjs WHERE galimage_id = %s",
                              [row[0]]).fetchone()[0]  # fmt: skip
            assert nv == row[14]
        # every forced row links to a reference source of the reference image it used
        bad = conn.execute(
            "SELECT count(*) FROM galsources s JOIN galimages i ON s.galimage_id = i.id"
            " LEFT JOIN galsources r ON r.id = s.ref_id"
            " WHERE i.reference IS NOT NULL AND (r.id IS NULL OR r.galimage_id <> i.reference"
            " OR r.ref_id IS NOT NULL)"
        ).fetchone()[0]
        assert bad == 0
        # galvarobjs: galsource_id is the new row, refsource_id its reference source
        assert (
            conn.execute(
                "SELECT count(*) FROM galvarobjs v JOIN galsources s ON s.id = v.galsource_id"
                " WHERE s.ref_id <> v.refsource_id OR s.galimage_id <> v.galimage_id"
            ).fetchone()[0]
            == 0
        )
        assert conn.execute("SELECT count(*) FROM galvarobjs").fetchone()[0] > 0
        prov = conn.execute("SELECT count(*), min(code_version) FROM galprovenance").fetchone()
        import photdb

        assert prov == (1, photdb.__version__)


def test_rerun_is_a_noop(processed):
    from photdb.survey.process import process

    settings = processed[0]
    with connect("readonly", settings) as conn:
        before = conn.execute("SELECT count(*) FROM galsources").fetchone()
    report = process(settings, jobs=1, config=_pipeline_config())
    assert report.nothing_to_do
    with connect("readonly", settings) as conn:
        assert conn.execute("SELECT count(*) FROM galsources").fetchone() == before


def test_seed_queries_on_pipeline_output(processed):
    settings, truth, _, _ = processed
    q1, q2, q3, q4, q5, q6 = split_sql(SEED_SQL.read_text())
    n_epochs = truth.config.n_epochs
    with connect("readonly", settings) as conn:
        counts = conn.execute(q1).fetchall()
        assert counts and all(1 <= num <= 2 * n_epochs for num, _ in counts)
        assert conn.execute(q2).fetchall() == []  # nobody is detected 9 times in 3 epochs
        top = counts[0][0]
        rows = conn.execute(q2.replace("num=9", f"num={top}")).fetchall()
        assert len(rows) == min(10, counts[0][1]) and all(r[0] == top for r in rows)
        rid = str(rows[0][1])
        det = conn.execute(q3.replace(NOTEBOOK_ID, rid)).fetchall()
        assert len(det) == top and [r[0] for r in det] == sorted(r[0] for r in det)
        assert conn.execute(q4.replace(NOTEBOOK_ID, rid)).fetchall()
        # an isolated bright reference source: Q5/Q6 at its position give its reference
        # point plus one forced point per search epoch. (The other filter's catalogue
        # is on its own header WCS, ~1" off in the simulation, so it is not in the cone.)
        ra, dec, band = _isolated_source(conn)
        for q in (q5, q6):
            stmt = q.replace(NOTEBOOK_RA, repr(ra)).replace(NOTEBOOK_DEC, repr(dec))
            lc = conn.execute(stmt).fetchall()
            assert [r[1] for r in lc] == [band] * (n_epochs + 1)
            assert sum(bool(r[2]) for r in lc) == 1  # the reference epoch
            assert [r[0] for r in lc] == sorted(r[0] for r in lc)
        lc = queries.lightcurve_by_cone(conn, ra, dec, 0.3)
        assert len(lc) == n_epochs + 1 and set(lc.colnames) >= {
            "mjd", "band", "mag", "mag_err", "is_reference"}  # fmt: skip


def _isolated_source(conn):
    """A 16-19 mag reference source with all forced points and nothing else within 1"."""
    rows = conn.execute(
        "SELECT s.id, s.ra, s.dec, s.mag, e.filter, (SELECT count(*) FROM galsources f"
        " WHERE f.ref_id = s.id) FROM galsources s JOIN galimages i ON s.galimage_id = i.id"
        " JOIN galexposures e ON i.galexposure_id = e.id WHERE s.ref_id IS NULL"
    ).fetchall()
    ra, dec, mag = (np.array([r[k] for r in rows], float) for k in (1, 2, 3))
    for k in np.argsort(mag):
        if not 16 < mag[k] < 19 or rows[k][5] != 3:
            continue
        d = np.hypot((ra - ra[k]) * np.cos(np.radians(dec[k])), dec - dec[k]) * 3600
        if (d < 1.0).sum() == 1:
            return float(ra[k]), float(dec[k]), rows[k][4]
    raise AssertionError("no isolated source")


def test_lightcurve_by_refsource(processed):
    settings, truth, _, _ = processed
    with connect("readonly", settings) as conn:
        cands = variable_candidates(conn, min_repeats=1, limit=5)
        assert len(cands) and cands["ndet"][0] >= cands["ndet"][-1]
        lc = queries.lightcurve_by_refsource(conn, int(cands["refsource_id"][0]))
        assert np.ma.getmaskarray(lc["ref_id"]).sum() == 1 and len(lc) <= truth.config.n_epochs + 1
        assert list(lc["mjd"]) == sorted(lc["mjd"])
        m = queries.cross_filter_matches(conn, cands, radius_arcsec=0.5)
        assert set(m.colnames) >= {"refsource_id", "match_filter", "sep_arcsec"}
        assert np.all(np.asarray(m["sep_arcsec"]) <= 0.5)


# Recall of variables against truth: survey/tests/test_cut.py (a chip big enough to
# hold a sample of variables with >= 20 sigma changes; this 256 x 128 chip holds 0-2).


def test_reference_positions_absolute_in_every_filter(processed):
    """Tied to the astrometric catalogue, both filters' references agree with truth."""
    from astropy.coordinates import SkyCoord

    settings, truth, _, _ = processed
    tru = SkyCoord(np.asarray(truth.stars["ra"]), np.asarray(truth.stars["dec"]), unit="deg")
    with connect("readonly", settings) as conn:
        for band in truth.config.filters:
            r = np.array(conn.execute(
                "SELECT s.ra, s.dec FROM galsources s JOIN galimages i ON s.galimage_id = i.id"
                " JOIN galexposures e ON i.galexposure_id = e.id WHERE s.ref_id IS NULL"
                " AND e.filter LIKE %s AND s.mag < 19", [band + "%"]).fetchall())  # fmt: skip
            _, sep, _ = SkyCoord(r[:, 0], r[:, 1], unit="deg").match_to_catalog_sky(tru)
            # header WCS is ~1" off; tied, the median error is a few hundredths of an arcsec
            assert np.median(sep.arcsec) < 0.05, (band, np.median(sep.arcsec))
        stats = conn.execute(
            "SELECT details FROM galimages i JOIN galexposures e ON i.galexposure_id = e.id"
            " WHERE e.is_reference AND i.status = 'done'").fetchall()  # fmt: skip
    assert any("astrom_rms_arcsec" in d[0] for d in stats)


def test_parallel_equals_serial_and_crash_leaves_nothing(processed, survey, template_settings):
    from photdb.survey import process as proc
    from photdb.survey.simulated import load_survey

    settings_a = processed[0]
    cfg = _pipeline_config(str(survey.catalog))
    with new_database(template_settings) as settings:
        load_survey(settings, survey)
        with connect("readonly", settings) as conn:
            victim = conn.execute(
                "SELECT i.id FROM galimages i JOIN galexposures e ON e.id = i.galexposure_id"
                " WHERE NOT e.is_reference AND e.filter LIKE 'g%' ORDER BY e.mjd LIMIT 1"
            ).fetchone()[0]

        def crash(gid):
            if gid == victim:
                raise RuntimeError("simulated crash after COPY")

        report = proc.process(settings, jobs=1, filter=_band(settings, "g"), config=cfg,
                              hooks=proc.Hooks(after_copy=crash))  # fmt: skip
        assert [o.galimage_id for o in report.failed] == [victim]
        with connect("readonly", settings) as conn:
            st, why = conn.execute("SELECT status, failure FROM galimages WHERE id = %s",
                                   [victim]).fetchone()  # fmt: skip
            assert st == "failed" and "simulated crash" in why and "\n" not in why
            for table in ("galsources", "galvarobjs"):
                q = sql.SQL("SELECT count(*) FROM {} WHERE galimage_id = %s").format(
                    sql.Identifier(table))  # fmt: skip
                assert conn.execute(q, [victim]).fetchone()[0] == 0
        g = _band(settings, "g")
        assert (
            proc.process(settings, jobs=1, filter=g, config=cfg).outcomes == ()
        )  # failed wait for retry
        again = proc.process(settings, jobs=1, filter=g, retry_failed=True, config=cfg)
        assert [o.galimage_id for o in again.done] == [victim]
        assert _rows(settings, "g") == _rows(settings_a, "g")


def _band(settings, band):
    with connect("readonly", settings) as conn:
        return conn.execute("SELECT DISTINCT filter FROM galexposures WHERE filter LIKE %s",
                            [band + "%"]).fetchone()[0]  # fmt: skip


def _rows(settings, band):
    with connect("readonly", settings) as conn:
        src = conn.execute(
            "SELECT e.filename, i.hdu, round(s.ra::numeric, 9), round(s.dec::numeric, 9),"
            " round(s.mag::numeric, 4), round(s.magerr::numeric, 4), s.ref_id IS NULL"
            " FROM galsources s JOIN galimages i ON s.galimage_id = i.id"
            " JOIN galexposures e ON i.galexposure_id = e.id WHERE e.filter LIKE %s"
            " ORDER BY 1, 2, 3, 4",
            [band + "%"],
        ).fetchall()
        var = conn.execute(
            "SELECT e.filename, round(r.ra::numeric, 9), round(r.dec::numeric, 9)"
            " FROM galvarobjs v JOIN galsources r ON r.id = v.refsource_id"
            " JOIN galimages i ON v.galimage_id = i.id JOIN galexposures e"
            " ON i.galexposure_id = e.id WHERE e.filter LIKE %s ORDER BY 1, 2, 3",
            [band + "%"],
        ).fetchall()
    assert src
    return src, var


def test_forced_rows_carry_their_reference_position(processed):
    """Light curves find forced rows through the q3c index (migration 0009): every forced
    row has exactly its reference source's position."""
    settings = processed[0]
    with connect("readonly", settings) as conn:
        n_forced, bad = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE r.id IS NULL OR r.ra <> s.ra"
            " OR r.dec <> s.dec) FROM galsources s LEFT JOIN galsources r ON r.id = s.ref_id"
            " WHERE s.ref_id IS NOT NULL"
        ).fetchone()
    assert n_forced > 0 and bad == 0
