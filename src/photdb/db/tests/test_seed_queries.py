"""Every query of the two seed documents runs verbatim and returns the right rows.

The database is filled by hand here, with the notebook's own ids and
coordinates, so the expected answers are known exactly. The pipeline and
archive tests run the same queries again on data their code produced.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from photdb.db import connect
from photdb.db.seedsql import split_sql

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[5] / "shared" / "seed_queries"
REF_ID = 284560863
RA, DEC = 271.486119431597, -28.9101692547778


def test_seed_query_copies_match_shared():
    if not SHARED.is_dir():
        pytest.skip("../shared is not beside this checkout")  # copies are the spec then
    for f in DATA.glob("*.sql"):
        assert f.read_text() == (SHARED / f.name).read_text(), f.name


def _fill_galactic(cur):
    cur.execute(
        "INSERT INTO galexposures (id, filename, path, sha256, mjd, filter, is_reference) VALUES "
        "(1, 'ref_r.fits', '/d', repeat('a', 64), 59297.40, 'r', true),"
        "(2, 's1_r.fits', '/d', repeat('b', 64), 59313.38, 'r', false),"
        "(3, 's2_r.fits', '/d', repeat('c', 64), 59322.37, 'r', false),"
        "(4, 'ref_g.fits', '/d', repeat('d', 64), 59297.40, 'g', true)"
    )
    for exp in range(1, 5):
        cur.execute("INSERT INTO observations (id, band) VALUES (%s, 'r')", (exp,))
        cur.execute(
            "INSERT INTO galimages (id, galexposure_id, hdu, reference) VALUES (%s, %s, 1, %s)",
            (exp, exp, 1 if exp in (2, 3) else None),
        )
    # the reference source, its g counterpart, and a neighbour 1 arcsec away
    cur.execute(
        "INSERT INTO galsources (id, galimage_id, ra, dec, mag, magerr) VALUES "
        "(%s, 1, %s, %s, 17.89, 0.004), (500, 4, %s, %s, 18.87, 0.004),"
        "(501, 1, %s, %s, 15.0, 0.01)",
        (REF_ID, RA, DEC, RA, DEC + 0.05 / 3600, RA, DEC + 1 / 3600),
    )
    cur.execute(
        "INSERT INTO galsources (id, galimage_id, ra, dec, mag, magerr, ref_id) VALUES "
        "(600, 2, %s, %s, 17.09, 0.01, %s), (601, 3, %s, %s, 18.46, 0.02, %s)",
        (RA + 0.1 / 3600, DEC, REF_ID, RA, DEC - 0.2 / 3600, REF_ID),
    )
    cur.execute(
        "INSERT INTO galvarobjs (galsource_id, refsource_id, galimage_id) VALUES "
        "(600, %s, 2), (601, %s, 3), (602, 501, 3)",
        (REF_ID, REF_ID),
    )


def _fill_archive(cur):
    cur.execute("INSERT INTO photosys (id, band) VALUES (1, 'i_sdss'), (2, 'V')")
    cur.execute(
        "INSERT INTO objects (id, coordequ, gaia_name, simbad_name, vsx_name) VALUES "
        "(1, spoint '(325.679d, 43.5862d)', '1972957892448494592', 'V* SS Cyg', 'SS Cyg'),"
        "(2, spoint '(325.7d, 43.59d)', '1972957308333789312', NULL, NULL),"
        "(3, spoint '(10.0d, 60.0d)', '494407193118781824', 'TYC 4568-471-1', NULL)"
    )
    cur.execute(
        "INSERT INTO observations (id, dateobs, accumtime, band, coordequ, coordequsrc, type, "
        "filename) VALUES (100, '2021-10-22 22:13:42+02', 30, 'r_sdss', "
        "spoint '(259.946337377513d, 76.6987591700176d)', 'wcs', 'image', 'x.fit')"
    )
    cur.execute(
        "INSERT INTO metadata_obs_json (observation_id, data) VALUES (100, %s)",
        ('{"OBJECT": "VY UMi", "NAXIS1": 1679}',),
    )
    cur.execute(
        "INSERT INTO lightcurves (id, object_id, dateobs, magnitude, mag_err, photosys_id) VALUES "
        "(1, 3, '2021-10-22 20:15:10.368+00', 10.2437, 0.1190, 1),"
        "(2, 1, '2021-10-22 20:15:10+00', 12.0, 0.01, 2)"
    )
    cur.execute(
        "INSERT INTO metadata_lc_json (lightcurve_id, data) VALUES "
        '(1, \'{"comp_stars": ["1701925222477693952", "494591086438665856"]}\'),'
        '(2, \'{"comp_stars": ["494591086438665856"]}\')'
    )


@pytest.fixture
def filled(db_settings):
    with connect("writer", db_settings) as conn:
        with conn.cursor() as cur:
            _fill_galactic(cur)
            _fill_archive(cur)
    return db_settings


def _run_all(settings, name):
    stmts = split_sql((DATA / name).read_text())
    with connect("readonly", settings) as conn:
        return [conn.execute(s).fetchall() for s in stmts]


def test_galactic_notebook_queries(filled):
    q1, q2, q3, q4, q5, q6 = _run_all(filled, "galactic_pipeline.sql")
    assert q1 == [(2, 1), (1, 1)]
    assert q2 == []  # nobody detected 9 times in this small set
    assert [(round(r[0], 2), r[1], round(r[3], 2)) for r in q3] == [
        (59313.38, "r", 17.09),
        (59322.37, "r", 18.46),
    ]
    assert q4 == [(RA, DEC)]
    # 0.3" cone: the reference, its g match (0.05") and both forced points; not the 1" neighbour
    assert sorted(round(r[5], 2) for r in q5) == [17.09, 17.89, 18.46, 18.87]
    assert [r[1] for r in q5] == ["g", "r", "r", "r"]
    assert len(q6) == 4


def test_archive_document_queries(filled):
    k1, k2, k3, k4, k5, k6a, _, k6b, k7a, k7b = _run_all(filled, "photometry_archive.sql")
    assert len(k1) == 1 and (float(k1[0][2]), k1[0][3]) == (0.119, "i_sdss")
    assert str(k1[0][1]) == "10.2437"
    assert k2[0][0].isoformat() == "2021-10-22T20:15:10.368000"
    assert k3 == [(1,)]
    assert len(k4) == 1
    assert '"OBJECT": "VY UMi"' in k5[0][0]
    assert k6a[0][1:] == ("V* SS Cyg", "SS Cyg")
    assert k6a[0][0].startswith("(5.684170854")  # radians by default
    assert k6b[0][0] == "(325.679d , 43.5862d)"  # after set_sphere_output('DEG')
    assert [r[0] for r in k7a] == ["1972957892448494592", "1972957308333789312"]
    assert k7a[0][2] == 0 and k7a == k7b


def test_astronomical_jd_of_k1_matches_astropy(filled):
    from astropy.time import Time

    k1 = _run_all(filled, "photometry_archive.sql")[0]
    jd = Time("2021-10-22T20:15:10.368", scale="utc").jd
    assert float(k1[0][0]) == pytest.approx(jd, abs=1e-8)


def test_comp_star_query_uses_the_index(filled):
    with connect("admin", filled) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute(
            "EXPLAIN SELECT COUNT(lightcurve_id) FROM metadata_lc_json WHERE "
            "'\"1701925222477693952\"' <@ (data->'comp_stars')"
        ).fetchall()
    assert "metadata_lc_json_comp_stars_idx" in " ".join(r[0] for r in plan)


def test_cone_and_id_lookups_use_indexes(filled):
    with connect("admin", filled) as conn:
        conn.execute("SET enable_seqscan = off")  # the tiny test table would rather seq-scan
        cone = " ".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT * FROM galsources s WHERE "
                "q3c_radial_query(s.ra, s.dec, %s, %s, 0.3/3600.)",
                (RA, DEC),
            ).fetchall()
        )
        byid = " ".join(
            r[0] for r in conn.execute("EXPLAIN SELECT * FROM galsources WHERE id = 5").fetchall()
        )
        opts = conn.execute(
            "SELECT reloptions FROM pg_class WHERE relname = 'galsources'"
        ).fetchone()[0]
    assert "galsources_q3c_idx" in cone
    assert "galsources_pkey" in byid
    assert "autovacuum_vacuum_insert_scale_factor=0.01" in opts


def test_deleting_an_exposure_removes_its_images_sources_and_detections(filled):
    with connect("writer", filled) as conn:
        conn.execute("DELETE FROM galexposures WHERE id = 2")
        assert conn.execute("SELECT count(*) FROM galimages WHERE id = 2").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM observations WHERE id = 2").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM galsources WHERE galimage_id = 2").fetchone() == (
            0,
        )
        assert conn.execute("SELECT count(*) FROM galvarobjs WHERE galimage_id = 2").fetchone() == (
            0,
        )
        assert conn.execute("SELECT count(*) FROM galsources").fetchone() == (4,)


def test_archive_cascade_in_document_order(filled):
    with connect("writer", filled) as conn:
        conn.execute("DELETE FROM objects WHERE id = 3")
        assert conn.execute("SELECT count(*) FROM lightcurves").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM metadata_lc_json").fetchone() == (1,)
        conn.execute("DELETE FROM observations WHERE id = 100")
        assert conn.execute("SELECT count(*) FROM metadata_obs_json").fetchone() == (0,)
