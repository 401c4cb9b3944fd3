"""Light-curve loading (time conversions, time zones) and the seed queries K1..K7."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.table import Table
from astropy.time import Time

import photdb.db
from photdb.archive.catalogues import load_objects, read_object_table
from photdb.archive.ingest import ingest_paths
from photdb.archive.lightcurves import (
    load_lightcurve_file,
    load_lightcurves,
    read_lightcurve_table,
)
from photdb.archive.tests.fitsfactory import write_maxim
from photdb.archive.tests.test_catalogues import NEIGHBOURS, write_formats
from photdb.db import connect
from photdb.db.seedsql import split_sql

SEED = Path(photdb.db.__file__).parent / "tests" / "data" / "photometry_archive.sql"
KOLONICA = EarthLocation.from_geodetic(22.27 * u.deg, 48.94 * u.deg, 460 * u.m)
COMP = "1701925222477693952"
#: The document's point: 2021-10-22 20:15:10.368 UTC, JD 2459510.34387, i_sdss.
DOC_TIME = Time("2021-10-22T20:15:10.368", scale="utc")


@pytest.fixture
def loaded(tmp_path, db_settings):
    """Objects of test_catalogues plus two light curves of the TYC star and one of SS Cyg."""
    conn = connect("writer", settings=db_settings)
    load_objects(conn, read_object_table(write_formats(tmp_path)["ecsv"]))
    yield conn
    conn.close()


def _times(conn, where="o.simbad_name = 'TYC 4568-471-1'"):
    rows = conn.execute(
        "SELECT l.dateobs, l.mjd FROM lightcurves l JOIN objects o ON o.id = l.object_id"
        f" WHERE {where} ORDER BY l.id"
    ).fetchall()
    return [r[0] for r in rows], np.array([r[1] for r in rows])


@pytest.mark.parametrize("kind", ["jd", "mjd", "iso", "iso_offset", "bjd_tdb", "hjd"])
def test_time_conversions(loaded, tmp_path, kind):
    truth = Time("2021-10-22T20:15:10.368", scale="utc") + np.array([0.0, 0.01, 0.5, 3.0]) * u.day
    coord = SkyCoord(259.95, 76.70, unit="deg")
    if kind == "jd":
        values = truth.jd
    elif kind == "mjd":
        values = truth.mjd
    elif kind == "iso":
        values = truth.isot
    elif kind == "iso_offset":  # the same instants written in Tokyo local time
        values = [
            d.astimezone(ZoneInfo("Asia/Tokyo")).isoformat()
            for d in truth.to_datetime(timezone=UTC)
        ]
        kind = "dateobs"
    elif kind == "bjd_tdb":
        values = (truth.tdb + truth.light_travel_time(coord, location=KOLONICA)).jd
    else:
        values = (truth.utc + truth.light_travel_time(coord, "heliocentric", location=KOLONICA)).jd
    table = Table(
        {
            kind: values,
            "mag": [10.0, 10.1, 10.2, 10.3],
            "mag_err": [0.01] * 4,
            "object": ["TYC 4568-471-1"] * 4,
        }
    )
    path = tmp_path / "lc.ecsv"
    table.write(path)
    rep = load_lightcurves(
        loaded, read_lightcurve_table(path), datasource="test", band="i'", location=KOLONICA
    )
    assert rep.inserted == 4
    for zone in ("UTC", "Asia/Tokyo", "America/Los_Angeles"):
        loaded.execute(f"SET TIME ZONE '{zone}'")
        dateobs, mjd = _times(loaded)
        expected = truth.to_datetime(timezone=UTC)
        assert (
            max(abs((a - b).total_seconds()) for a, b in zip(dateobs, expected, strict=True)) < 1e-3
        )
        assert np.max(np.abs(mjd - truth.mjd)) * 86400 < 1e-3
        (utc,) = loaded.execute(
            "SELECT min(dateobs AT TIME ZONE 'UTC') FROM lightcurves"
        ).fetchone()
        assert abs((utc - datetime(2021, 10, 22, 20, 15, 10, 368000)).total_seconds()) < 1e-3
    assert loaded.execute("SELECT DISTINCT band FROM photosys").fetchall() == [("i_sdss",)]


def test_unknown_object_is_refused_per_row_and_reload_adds_nothing(loaded, tmp_path):
    table = Table(
        {
            "jd": [2459510.3, 2459510.4, 2459510.5],
            "mag": [1.0, 2.0, 3.0],
            "mag_err": [0.1, 0.1, 0.1],
            "object": ["TYC 4568-471-1", "no such star", "TYC 4568-471-1"],
        }
    )
    rep = load_lightcurves(loaded, table, datasource="x", band="V")
    assert (rep.inserted, rep.skipped, rep.present) == (2, 1, 0)
    assert rep.messages == ("row 2: object 'no such star' not found in objects; refused",)
    again = load_lightcurves(loaded, table, datasource="x", band="V")
    assert (again.inserted, again.skipped, again.present) == (0, 1, 2)
    assert loaded.execute("SELECT count(*) FROM lightcurves").fetchone()[0] == 2
    assert loaded.execute("SELECT count(*) FROM datasources").fetchone()[0] == 1


def _seed() -> list[str]:
    queries = split_sql(SEED.read_text())
    assert len(queries) == 10 and "TYC 4568-4%" in queries[0]
    return queries


def test_seed_queries_k1_to_k7(loaded, tmp_path, db_settings):
    conn = loaded
    # an observation with id 100 (K5) whose file name the light curve refers to
    with connect("admin", settings=db_settings) as admin:
        admin.execute("SELECT setval('observations_id_seq', 99)")
    frames = tmp_path / "Alica" / "2021-10-22"
    frames.mkdir(parents=True)
    write_maxim(frames / "2021-10-22T20:13:42_r.fit")
    assert ingest_paths(frames, conn=conn).ingested == 1

    # the TYC star: the document's point plus two more, by Gaia id and file name
    tyc = Table(
        {
            "jd": DOC_TIME.jd + np.array([0.0, 0.001, 0.002]),
            "magnitude": [10.2437, 10.25, 10.26],
            "mag_err": [0.1190, 0.1, 0.1],
            "gaia_name": ["Gaia DR3 1650000000000000001"] * 3,
            "filter": ["i_sdss"] * 3,
            "filename": ["2021-10-22T20:13:42_r.fit"] * 3,
            "comp_stars": [f"{COMP},494407193118781824"] * 2 + ["494407193118781824"],
            "num_comp": [2, 2, 1],
            "aver_comp": [7.5607] * 3,
            "binning": ["2x2"] * 3,
            "exp_time": [30.0] * 3,
            "temperature": [-20.0] * 3,
            "privileges": ["full"] * 3,
        }
    )
    rep = load_lightcurves(
        conn, read_lightcurve_table(_write(tyc, tmp_path / "tyc.csv")), datasource="upjs"
    )
    assert rep.inserted == 3 and not rep.messages
    # SS Cyg, found by position, with the comparison star in every point
    ss = Table(
        {
            "mjd": [59000.1, 59000.2],
            "mag": [12.0, 11.0],
            "mag_err": [0.02, 0.02],
            "ra": [325.679] * 2,
            "dec": [43.5862] * 2,
            "comp_stars": [COMP] * 2,
        }
    )
    load_lightcurves(conn, ss, datasource="upjs", band="V")

    q = _seed()
    conn.execute("SET TIME ZONE 'Europe/Bratislava'")
    k1 = conn.execute(q[0]).fetchall()
    assert len(k1) == 3 and k1[0][3] == "i_sdss"
    assert float(k1[0][0]) == pytest.approx(DOC_TIME.jd, abs=1e-8)
    assert float(k1[0][0]) == pytest.approx(2459510.34387, abs=1e-8)
    assert (float(k1[0][1]), float(k1[0][2])) == (10.2437, 0.1190)
    k2 = conn.execute(q[1]).fetchall()
    # a float64 JD resolves ~40 us, so the loaded instant is within that of the document's
    assert abs((k2[0][0] - datetime(2021, 10, 22, 20, 15, 10, 368000)).total_seconds()) < 5e-5
    assert len(k2) == 3 and k2[0][3] == "i_sdss"
    assert conn.execute(q[2]).fetchone()[0] == 2 + 2  # K3: two TYC points, two SS Cyg points
    k4 = conn.execute(q[3])
    cols = [d.name for d in k4.description]
    assert cols[:13] == [
        "id",
        "dateobs",
        "accumtime",
        "telescope_id",
        "instrument_id",
        "fov",
        "mode",
        "band",
        "coordequ",
        "coordequsrc",
        "type",
        "filename",
        "path_to_fits",
    ]
    row = k4.fetchone()
    assert row[0] == 100 and row[6:8] == ("light", "r_sdss") and row[9] == "wcs"
    (pretty,) = conn.execute(q[4]).fetchone()
    assert '"OBJECT": "VY UMi"' in pretty and '"EXPTIME": 30.0' in pretty
    assert (
        conn.execute("SELECT count(*) FROM lightcurves WHERE observation_id = 100").fetchone()[0]
        == 3
    )
    k6 = conn.execute(q[5]).fetchall()
    assert [r[1:] for r in k6] == [("V* SS Cyg", "SS Cyg")]
    ra, dec = map(float, re.findall(r"[-\d.e]+", k6[0][0]))
    assert (ra, dec) == (pytest.approx(np.radians(325.679)), pytest.approx(np.radians(43.5862)))
    conn.execute(q[6])
    (deg,) = conn.execute(q[7]).fetchone()[:1]
    assert re.fullmatch(r"\(325\.679d , 43\.5862d\)", deg)
    for k7 in (q[8], q[9]):
        rows = conn.execute(k7).fetchall()
        assert [r[0] for r in rows] == ["1972957892448494592", *NEIGHBOURS]
        assert rows[0][1] == "V* SS Cyg" and rows[0][2] == pytest.approx(0, abs=1e-12)
        assert [r[2] for r in rows[1:]] == pytest.approx(list(NEIGHBOURS.values()), rel=1e-6)


def _write(table: Table, path: Path) -> Path:
    table.write(path)
    return path


def test_stellarphot_ey_uma_night(db_settings):
    """stellarphot's real night: AAVSO comparison stars and the VSX variable, then 3854 rows of
    photometry whose magnitude column is stellarphot's own ``mag_inst_R``."""
    import importlib.util
    import os

    from astropy.coordinates import SkyCoord

    base = os.path.dirname(importlib.util.find_spec("stellarphot").origin)
    data = f"{base}/differential_photometry/tests/data"
    with connect("writer", settings=db_settings) as conn:
        for name in ("comp_stars.fits", "variables.fits"):
            assert load_objects(conn, read_object_table(f"{data}/{name}")).skipped == 0
        path = f"{data}/2014-12-29-ey-uma-9.fits"
        with pytest.raises(ValueError, match=r"no magnitude column.*mag_inst_R.*--column"):
            load_lightcurve_file(conn, path, datasource="stellarphot")
        rep = load_lightcurve_file(
            conn, path, datasource="stellarphot", columns={"magnitude": "mag_inst_R"}
        )
        # the truth, independently: rows within 2 arcsec of a loaded object
        phot = Table.read(path)
        rows = conn.execute(
            "SELECT degrees(long(coordequ)), degrees(lat(coordequ)) FROM objects"
        ).fetchall()
        objs = SkyCoord([r[0] for r in rows], [r[1] for r in rows], unit="deg")
        _, sep, _ = SkyCoord(phot["RA"], phot["Dec"], unit="deg").match_to_catalog_sky(objs)
        near = int(np.sum(sep.arcsec <= 2.0))
        assert rep.inserted == near > 1000 and rep.skipped == len(phot) - near
        assert all("no object within 2 arcsec" in m for m in rep.messages if "refused" in m)
        again = load_lightcurve_file(
            conn, path, datasource="stellarphot", columns={"magnitude": "mag_inst_R"}
        )
        assert (again.inserted, again.present) == (0, near)
        (n, nulls) = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE magnitude IS NULL) FROM lightcurves"
        ).fetchone()
        assert (n, nulls) == (near, 0)
