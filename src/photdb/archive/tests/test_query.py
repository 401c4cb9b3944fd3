"""Object look-ups, cone searches and light curves from both the archive and the pipeline."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time

from photdb.api import get_lightcurve
from photdb.archive.catalogues import load_objects
from photdb.archive.ingest import ingest_paths
from photdb.archive.lightcurves import load_lightcurves
from photdb.archive.query import (
    QueryError,
    cone_objects,
    find_objects,
    parse_coord,
    parse_radius,
    write_table,
)
from photdb.archive.tests.fitsfactory import write_decam_fz, write_ekos, write_maxim
from photdb.db import connect
from photdb.lightcurve import LIGHTCURVE_COLUMNS

SSCYG = SkyCoord(325.679, 43.5862, unit="deg")
TYC = SkyCoord(259.946337377513, 76.6987591700176, unit="deg")  # write_maxim's WCS centre
SSCYG_GAIA = "1972957892448494592"
TYC_GAIA = "1651234567890123456"
NAMES = ("gaia_name", "simbad_name", "ucac4_name", "apass_name", "vsx_name", "class", "description")


def _offset(c: SkyCoord, arcsec: float) -> SkyCoord:
    return c.directional_offset_by(0 * u.deg, arcsec * u.arcsec)


def _objects() -> Table:
    rows = [  # position, gaia, simbad, vsx, ucac4
        (SSCYG, SSCYG_GAIA, "V* SS Cyg", "SS Cyg", "669-096498"),
        (_offset(SSCYG, 20), "1972957308333789312", None, None, None),
        (_offset(SSCYG, 180), "1972957690592232192", None, None, None),
        (_offset(SSCYG, 1800), "1972950000000000001", None, None, None),
        (TYC, TYC_GAIA, "TYC 4568-471-1", "VY UMi", None),
    ]
    t = Table()
    t["ra"] = [r[0].ra.deg for r in rows]
    t["dec"] = [r[0].dec.deg for r in rows]
    for name in NAMES:
        t[name] = np.array([None] * len(rows), dtype=object)
    for i, (_, gaia, simbad, vsx, ucac4) in enumerate(rows):
        t["gaia_name"][i], t["simbad_name"][i], t["vsx_name"][i] = gaia, simbad, vsx
        t["ucac4_name"][i] = ucac4
    return t


def populate(settings, tmp_path: Path) -> dict:
    """Three FITS files (two on the night of 2021-10-22), five objects, points and sources.

    Archive: SS Cyg has 3 points (datasource KOL-SS, band V, comp stars); the
    TYC star has one point on each MaxIm frame (KOL-TYC), the second with its
    ``mjd`` removed so that it comes from ``dateobs``. Pipeline: a reference row
    0.3" from the TYC star on frame a, a forced row at its position on frame b, a
    neighbour 5" away on frame b, a variable-object row on frame b.
    """
    folder = tmp_path / "fits"
    folder.mkdir()
    write_maxim(folder / "a_r.fit", seed=1)
    write_maxim(folder / "b_r.fit", seed=2)
    write_ekos(folder / "ekos.fits")
    write_decam_fz(folder / "decam.fits.fz")
    report = ingest_paths(folder, settings=settings)
    assert report.failed == 0, report.messages
    with connect("writer", settings=settings) as conn:
        load_objects(conn, _objects())
        obs = dict(conn.execute("SELECT filename, min(id) FROM observations GROUP BY 1").fetchall())
        ss = Table(
            {
                "jd": [2459510.3, 2459510.4, 2459511.5],
                "magnitude": [11.9, 12.0, 12.1],
                "mag_err": [0.01, 0.02, 0.03],
                "mag_diff": [0.5, 0.6, 0.7],
                "mag_diff_err": [0.011, 0.012, 0.013],
                "quality": [0, 1, 0],
                "comp_stars": ["111,222", "111,222", "111"],
            }
        )
        load_lightcurves(conn, ss, datasource="KOL-SS", band="V", object="SS Cyg")
        frames = Table(
            {
                "dateobs": ["2021-10-22T20:13:57", "2021-10-22T20:14:30"],
                "magnitude": [10.24, 10.25],
                "mag_err": [0.1, 0.1],
                "filename": ["a_r.fit", "b_r.fit"],
            }
        )
        load_lightcurves(conn, frames, datasource="KOL-TYC", band="r", object=TYC_GAIA)
        conn.execute(
            "UPDATE lightcurves SET mjd = NULL WHERE observation_id = %s", [obs["b_r.fit"]]
        )
        conn.execute(
            "UPDATE galexposures SET is_reference = true WHERE id ="
            " (SELECT galexposure_id FROM galimages WHERE id = %s)",
            [obs["a_r.fit"]],
        )
        src = {}
        for key, image, arcsec, mag, ref in (
            ("ref", "a_r.fit", 0.3, 10.3, None),
            ("forced", "b_r.fit", 0.3, 10.35, "ref"),  # forced at the reference position
            ("neighbour", "b_r.fit", 5.0, 14.0, None),
        ):
            c = _offset(TYC, arcsec)
            (src[key],) = conn.execute(
                "INSERT INTO galsources (galimage_id, ra, dec, mag, magerr, ref_id)"
                " VALUES (%s, %s, %s, %s, 0.02, %s) RETURNING id",
                [obs[image], c.ra.deg, c.dec.deg, mag, src.get(ref)],
            ).fetchone()
        conn.execute(
            "INSERT INTO galvarobjs (galsource_id, refsource_id, galimage_id, dmag)"
            " VALUES (%s, %s, %s, 0.05)",
            [src["forced"], src["ref"], obs["b_r.fit"]],
        )
        conn.commit()
    return {"obs": obs, "src": src}


@pytest.fixture
def data(db_settings, tmp_path):
    info = populate(db_settings, tmp_path)
    with connect("readonly", settings=db_settings) as conn:
        yield conn, info


NAME_FORMS = (
    "v* ss cyg",
    "SS CYG",
    SSCYG_GAIA,
    f"Gaia DR3 {SSCYG_GAIA}",
    "gaia dr3  " + SSCYG_GAIA,
    "669-096498",
    "V*  SS Cyg",
    "V* SS*",  # no exact match and a '*': a glob
    "v* ss c?g",
)


def test_find_objects_and_cone(data):
    conn, _ = data
    for name in NAME_FORMS:
        found = find_objects(conn, name)
        assert list(found["gaia_name"]) == [SSCYG_GAIA], name
        assert found["ra"][0] == pytest.approx(325.679) and found["simbad_name"][0] == "V* SS Cyg"
    assert list(find_objects(conn, int(found["id"][0]))["gaia_name"]) == [SSCYG_GAIA]
    assert list(find_objects(conn, str(found["id"][0]))["gaia_name"]) == [SSCYG_GAIA]
    assert len(find_objects(conn, "no such star")) == 0
    # % and _ are literal characters, never wildcards; a glob only when asked or when
    # nothing matches exactly
    assert len(find_objects(conn, "V* SS%")) == 0 and len(find_objects(conn, "SS_Cyg")) == 0
    assert len(find_objects(conn, "V* SS*", pattern=False)) == 0
    assert list(find_objects(conn, "*SS Cyg", pattern=True)["gaia_name"]) == [SSCYG_GAIA]
    # cone: nearest first, in the three units and the short forms
    for text, n in (
        ("30arcsec", 2),
        ("6arcmin", 3),
        ("0.1deg", 3),
        ('30"', 2),
        ("6'", 3),
        ("360", 3),
        ("1 deg", 4),
    ):
        cone = cone_objects(conn, SSCYG, parse_radius(text))
        assert len(cone) == n, text
        assert list(cone["gaia_name"][:1]) == [SSCYG_GAIA]
        assert np.all(np.diff(cone["dist_arcsec"]) > 0)
        assert cone["dist_arcsec"][:3].tolist() == pytest.approx([0, 20, 180][:n], abs=1e-3)
    with pytest.raises(QueryError, match="radius"):
        parse_radius("3 parsec")
    with pytest.raises(QueryError, match="angle"):
        cone_objects(conn, SSCYG, 3 * u.m)


def test_parse_coord_forms():
    for ra, dec in (
        ("325.679", "43.5862"),
        ("21:42:42.96", "+43:35:10.32"),
        ("21h42m42.96s", "43d35m10.32s"),
        ("21 42 42.96", "43 35 10.32"),
    ):
        assert parse_coord(ra, dec).separation(SSCYG) < 0.01 * u.arcsec
    assert parse_coord("123.4567", "-5:30:00").dec.deg == pytest.approx(-5.5)
    with pytest.raises(QueryError, match="position"):
        parse_coord("nowhere", "0")


def _check_times(lc: Table) -> None:
    t = Time(lc["mjd"], format="mjd", scale="utc")
    assert np.all(lc["jd"] - lc["mjd"] == pytest.approx(2400000.5, abs=1e-9))
    assert list(lc["iso"]) == list(t.isot)
    assert np.allclose(
        Time(list(lc["iso"]), format="isot", scale="utc").mjd, lc["mjd"], rtol=0, atol=1e-8
    )
    assert np.all(np.diff(lc["mjd"]) >= 0)


def test_lightcurve_both_halves(data):
    conn, info = data
    for key in ("simbad", "vsx", "gaia", "id", "position"):
        _check_tyc(conn, info, key)
    tyc_id = int(find_objects(conn, "VY UMi")["id"][0])
    wide = get_lightcurve(conn, object=tyc_id, radius=10 * u.arcsec)
    assert (wide["source"] == "pipeline").sum() == 3


def _check_tyc(conn, info, key):
    tyc_id = int(find_objects(conn, "VY UMi")["id"][0])
    kw = {
        "simbad": {"object": "tyc 4568-471-1"},
        "vsx": {"object": "VY UMi"},
        "gaia": {"object": f"Gaia DR3 {TYC_GAIA}"},
        "id": {"object": tyc_id},
        "position": {"coord": TYC, "radius": 2 * u.arcsec},
    }[key]
    lc = get_lightcurve(conn, **kw)
    assert tuple(lc.colnames) == ("time", *LIGHTCURVE_COLUMNS) and lc.meta["objects"] == [tyc_id]
    arch = lc[lc["source"] == "archive"]
    pipe = lc[lc["source"] == "pipeline"]
    assert sorted(arch["filename"]) == ["a_r.fit", "b_r.fit"]
    assert list(arch["progid"]) == ["KOL-TYC"] * 2 and list(arch["band"]) == ["r_sdss"] * 2
    assert sorted(arch["mag"].tolist()) == pytest.approx([10.24, 10.25])
    # the point without mjd: from dateobs with astropy
    b = arch[arch["filename"] == "b_r.fit"][0]
    assert b["mjd"] == pytest.approx(Time("2021-10-22T20:14:30", scale="utc").mjd, abs=1e-9)
    assert sorted(pipe["galsource_id"].tolist()) == sorted(
        [info["src"]["ref"], info["src"]["forced"]]
    )
    assert sorted(pipe["filename"]) == ["a_r.fit", "b_r.fit"]
    ref = pipe[pipe["galsource_id"] == info["src"]["ref"]][0]
    assert bool(ref["is_reference"]) and ref["mag"] == pytest.approx(10.3)
    exp_mjd = conn.execute(
        "SELECT e.mjd FROM galexposures e JOIN galimages g ON g.galexposure_id = e.id"
        " WHERE g.id = %s",
        [info["obs"]["a_r.fit"]],
    ).fetchone()[0]
    assert ref["mjd"] == exp_mjd
    assert np.all(pipe["mag_diff"].mask) and np.all(pipe["progid"].mask)
    _check_times(lc)


def test_lightcurve_archive_metadata_errors_formats(data, tmp_path):
    conn, _ = data
    lc = get_lightcurve(conn, object="SS Cyg")
    assert list(lc["source"]) == ["archive"] * 3
    assert list(lc["comp_stars"]) == ["111,222", "111,222", "111"]
    assert lc["jd"].tolist() == pytest.approx([2459510.3, 2459510.4, 2459511.5], abs=1e-8)
    assert list(lc["quality"]) == [0, 1, 0] and list(lc["band"]) == ["V"] * 3
    assert lc["mag_diff_err"].tolist() == pytest.approx([0.011, 0.012, 0.013])
    _check_times(lc)
    with pytest.raises(QueryError, match="no object"):
        get_lightcurve(conn, object="Nobody")
    with pytest.raises(QueryError, match="matches 4 objects"):
        get_lightcurve(conn, object="19729*")
    with pytest.raises(QueryError, match="give one of"):
        get_lightcurve(conn)
    empty = get_lightcurve(conn, coord=SkyCoord(10, 10, unit="deg"))
    assert len(empty) == 0 and tuple(empty.colnames) == ("time", *LIGHTCURVE_COLUMNS)
    # every output format reads back with astropy
    lc = get_lightcurve(conn, object="VY UMi")
    for fmt in ("csv", "ecsv", "votable"):
        path = tmp_path / f"lc.{fmt}"
        write_table(lc, fmt, path)
        back = Table.read(path, format={"csv": "ascii.csv", "ecsv": "ascii.ecsv"}.get(fmt, fmt))
        kept = lc.colnames if fmt == "ecsv" else lc.colnames[1:]  # the Time column: ECSV only
        assert back.colnames == kept and len(back) == len(lc) == 4
        assert np.allclose(back["mjd"], lc["mjd"], rtol=0, atol=1e-9)
        assert list(back["iso"]) == list(lc["iso"]) and list(back["source"]) == list(lc["source"])
        assert "pipeline" in write_table(lc, fmt)
