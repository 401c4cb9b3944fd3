"""A corpus of bad input: FITS files, tables and parameters, each with its expected outcome.

Every case is either *refused* (one line naming the problem; the database
checked unchanged) or *stored* with the impossible value left NULL and the
reason recorded (``observations.ingest_notes``) and reported as a warning.
Nothing is invented, cut or mangled.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table
from astropy.time import Time
from astropy.timeseries import TimeSeries

from conftest import new_database
from photdb.archive.catalogues import load_objects, objects_from_table, read_object_table
from photdb.archive.ingest import ingest_paths
from photdb.archive.lightcurves import load_lightcurve_file, load_lightcurves
from photdb.archive.query import QueryError, cone_objects, find_objects, parse_coord, parse_radius
from photdb.archive.tests.corpus import bomb, corrupt_tiles, frame, patch_card
from photdb.archive.tests.test_delete import snapshot
from photdb.db import connect

OBS = (
    "SELECT o.dateobs, o.accumtime::float8, o.mode, o.band, degrees(long(o.coordequ)),"
    " degrees(lat(o.coordequ)), o.coordequsrc, o.fov, o.ingest_notes, o.mjd, t.name"
    " FROM observations o LEFT JOIN telescopes t ON t.id = o.telescope_id"
    " WHERE o.filename = %s"
)


@pytest.fixture(scope="module")
def db(template_settings):
    with new_database(template_settings) as settings:
        with connect("writer", settings, autocommit=True) as conn:
            yield settings, conn


def _ingest(db, path, **kw):
    settings, conn = db
    before = snapshot(conn)
    report = ingest_paths(path, settings=settings, **kw)
    return report, before, snapshot(conn)


def _refused(db, path, pattern, **kw):
    report, before, after = _ingest(db, path, **kw)
    assert report.failed == len(report.results) >= 1
    for r in report.results:
        assert "\n" not in r.message
    assert any(re.search(pattern, r.message) for r in report.results), report.messages
    assert after == before  # nothing stored
    return report


def _stored(db, path):
    report, before, after = _ingest(db, path)
    assert report.failed == 0 and report.ingested == 1, report.messages
    assert after["observations"] == before["observations"] + 1
    (row,) = db[1].execute(OBS, [path.name]).fetchall()
    return row, report


# ------------------------------------------------------------------ FITS: stored, NULL + reason


def test_crval_nan_is_not_ra_zero(db, tmp_path):
    path = patch_card(frame(tmp_path / "nan_crval.fits", []), "CRVAL1",
                      b"CRVAL1  =                  NaN")  # fmt: skip
    row, report = _stored(db, path)
    assert row[4] is None and row[6] is None  # never RA 0
    assert any("CRVAL1" in n and "not a finite number" in n for n in row[8])
    assert any("CRVAL1" in w for w in report.warnings)


def test_pointing_beyond_the_pole(db, tmp_path):
    path = frame(tmp_path / "dec95.fits", [("OBJCTRA", "10 00 00"), ("OBJCTDEC", "+95 00 00")],
                 wcs=False)  # fmt: skip
    row, _ = _stored(db, path)
    assert row[4] is None and any("OBJCTRA/OBJCTDEC" in n and "outside" in n for n in row[8])


def test_ra_400_dec_minus_100(db, tmp_path):
    path = frame(tmp_path / "ra400.fits", [("RA", 400.0), ("DEC", -100.0)], wcs=False)
    row, _ = _stored(db, path)
    assert row[4] is None and any("RA/DEC" in n and "outside" in n for n in row[8])


def test_next_pointing_used_when_the_first_is_impossible(db, tmp_path):
    cards = [("OBJCTRA", "10 00 00"), ("OBJCTDEC", "+95 00 00"), ("RA", 150.5), ("DEC", 20.0)]
    row, _ = _stored(db, frame(tmp_path / "fallback.fits", cards, wcs=False))
    assert (row[4], row[5], row[6]) == (pytest.approx(150.5), pytest.approx(20.0), "radec")


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("neg_exptime", -5.0, "impossible"),
        ("huge_exptime", 3e8, "impossible"),
        ("nan_exptime", b"EXPTIME =                  NaN", "not a finite number"),
    ],  # fmt: skip
)
def test_impossible_exposure_times(db, tmp_path, name, value, why):
    path = frame(
        tmp_path / f"{name}.fits", [("EXPTIME", 1.0 if isinstance(value, bytes) else value)]
    )
    if isinstance(value, bytes):
        patch_card(path, "EXPTIME", value)
    row, _ = _stored(db, path)
    assert row[1] is None and any("EXPTIME" in n and why in n for n in row[8])
    start = Time("2021-10-22T20:13:42", scale="utc").mjd
    assert row[9] == pytest.approx(start, abs=1e-9)  # mjd is the start: no invented duration


def test_negative_focal_length(db, tmp_path):
    cards = [("FOCALLEN", -500.0), ("XPIXSZ", 9.0)]
    row, _ = _stored(db, frame(tmp_path / "negfocal.fits", cards, wcs=False))
    assert row[7] is None and any("not positive" in n for n in row[8])


# ------------------------------------------------------------------ FITS: kept whole


def test_long_imagetyp_and_filter_kept_whole(db, tmp_path):
    cards = [("IMAGETYP", "Tricolor Image Stack"), ("FILTER", "Astrodon Sloan r' Gen2")]
    row, report = _stored(db, frame(tmp_path / "long_strings.fits", cards))
    assert row[2] == "tricolor image stack" and row[3] == "Astrodon Sloan r' Gen2"
    assert any("unknown filter" in w for w in report.warnings)


def test_non_ascii_value_kept_whole(db, tmp_path):
    path = frame(tmp_path / "utf8.fits", [("TELESCOP", "XXXXXXXX"), ("OBSERVER", "XXXXXXXX")])
    patch_card(path, "TELESCOP", "TELESCOP= 'Ondřejov 65cm'".encode())
    patch_card(path, "OBSERVER", "OBSERVER= 'José Pérez'".encode("latin-1"))
    row, report = _stored(db, path)
    assert row[10] == "Ondřejov 65cm"  # not 'Ond??ejov'
    (data,) = db[1].execute(
        "SELECT m.data FROM metadata_obs_json m JOIN observations o ON o.id = m.observation_id"
        " WHERE o.filename = %s", [path.name]).fetchone()  # fmt: skip
    assert data["OBSERVER"] == "José Pérez" and data["TELESCOP"] == "Ondřejov 65cm"
    assert sum("non-ASCII" in w for w in report.warnings) == 2


def test_leap_second_accepted(db, tmp_path):
    path = frame(tmp_path / "leap.fits", [("DATE-OBS", "2016-12-31T23:59:60.5"), ("EXPTIME", 0.0)])
    row, _ = _stored(db, path)
    assert row[0] == datetime(2017, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert row[9] == pytest.approx(Time("2016-12-31T23:59:60.5", scale="utc").mjd, abs=1e-11)
    assert any("leap second" in n for n in row[8])


# ------------------------------------------------------------------ FITS: refused


@pytest.mark.parametrize(
    ("name", "cards", "pattern"),
    [
        ("year1", [("DATE-OBS", "0001-01-01T00:00:00")], r"not a plausible observation time"),
        ("year9999", [("DATE-OBS", "9999-12-31T00:00:00")], r"not a plausible observation time"),
        ("fake_leap", [("DATE-OBS", "2021-10-22T23:59:60")], r"second 60 on a day without"),
        ("no_time", [("DATE-OBS", None)], r"no observation time"),
        ("long_type", [("IMAGETYP", "x" * 80)], r"image type .* over 68"),
    ],
)
def test_refused_headers(db, tmp_path, name, cards, pattern):
    _refused(db, frame(tmp_path / f"{name}.fits", cards), pattern)


def test_non_ascii_keyword_refused(db, tmp_path):
    path = patch_card(frame(tmp_path / "badkey.fits", [("OBSERVER", "x")]), "OBSERVER",
                      "OBSÉRVER= 'x'".encode("latin-1"))  # fmt: skip
    _refused(db, path, r"keyword with non-ASCII bytes")


def test_corrupt_tile_without_checksum(db, tmp_path):
    _refused(db, corrupt_tiles(tmp_path / "tiles.fz"), r"corrupt compressed image in HDU 1")


def test_decompression_bomb_skipped(db, tmp_path):
    path = bomb(tmp_path / "bomb.fits.gz", unpacked_mb=24)
    assert path.stat().st_size < 200_000
    _refused(db, path, r"possible decompression bomb", max_unpacked_mb=16)


def test_special_files_and_bad_names_skipped_and_the_walk_goes_on(db, tmp_path):
    folder = tmp_path / "walk"
    folder.mkdir()
    os.mkfifo(folder / "a_pipe.fits")
    frame(folder / "b_good.fits", [], seed=41)
    bad = os.fsencode(str(folder)) + b"/c_\xff\xfe.fits"
    os.rename(frame(tmp_path / "x.fits", [], seed=42), bad)
    frame(folder / "d_good.fits", [], seed=43)
    report, before, after = _ingest(db, folder)
    assert (report.ingested, report.failed) == (2, 2)
    lines = report.messages
    assert any("a_pipe.fits: a FIFO, not a regular file; skipped" in m for m in lines)
    assert any("not valid UTF-8; skipped" in m and "\\xff\\xfe" in m for m in lines)
    assert after["observations"] == before["observations"] + 2


# ------------------------------------------------------------------ light-curve tables


@pytest.fixture(scope="module")
def lc_db(db):
    settings, conn = db
    objects = Table({"ra": [325.679], "dec": [43.5862], "vsx_name": ["SS Cyg"],
                     "gaia_name": ["1972957892448494592"]})  # fmt: skip
    load_objects(conn, objects_from_table(objects))
    return settings, conn


def _lc(lc_db, table, **kw):
    settings, conn = lc_db
    before = snapshot(conn)
    kw.setdefault("datasource", "corpus")
    kw.setdefault("band", "V")
    kw.setdefault("object", "SS Cyg")
    report = load_lightcurves(conn, table, **kw)
    return report, before, snapshot(conn)


def test_unknown_magnitude_column_lists_the_accepted_names(lc_db):
    t = Table({"jd": [2459510.3], "mag_inst_R": [-4.6], "mag_error": [0.01]})
    before = snapshot(lc_db[1])
    with pytest.raises(ValueError, match=r"no magnitude column.*mag_inst_R.*--column magnitude="):
        load_lightcurves(lc_db[1], t, datasource="corpus", band="V", object="SS Cyg")
    assert snapshot(lc_db[1]) == before
    rep = load_lightcurves(lc_db[1], t, datasource="corpus", band="V", object="SS Cyg",
                           columns={"magnitude": "mag_inst_R"})  # fmt: skip
    assert rep.inserted == 1


BAD_VALUES = [
    ("mag", np.nan, r"magnitude nan is not finite"),
    ("mag", np.inf, r"magnitude inf is not finite"),
    ("mag", 1e9, r"magnitude 1000000000.0 is too large"),
    ("mag_err", -0.01, r"mag_err -0.01 is negative"),
    ("mag", "abc", r"magnitude 'abc' is not a number"),
    ("quality", 1.5, r"quality 1.5 is not an integer"),
    ("jd", 0.5, r"jd .* is not a plausible time"),
    ("jd", np.nan, r"jd nan is not finite"),
]


@pytest.mark.parametrize(("case", "column", "bad", "pattern"),
                         [(i, *v) for i, v in enumerate(BAD_VALUES)])  # fmt: skip
def test_bad_values_refuse_their_row(lc_db, case, column, bad, pattern):
    # each case its own nights, far from the other tests' (string hashes change per process)
    jd = 2458000.5 + 10 * case + np.arange(3)
    cols = {"jd": jd, "mag": [12.0, 12.1, 12.2], "mag_err": [0.01, 0.01, 0.01],
            "quality": [0, 0, 0]}  # fmt: skip
    values = list(cols[column])
    values[1] = bad
    cols[column] = np.array(values, dtype=object if isinstance(bad, str) else float)
    report, before, after = _lc(lc_db, Table(cols))
    assert (report.inserted, report.skipped) == (2, 1)
    assert len(report.messages) == 1, report.messages
    assert re.search(r"^row 2: " + pattern + r".*; refused$", report.messages[0]), report.messages
    assert after["lightcurves"] == before["lightcurves"] + 2


def test_unreadable_iso_date_refuses_its_row(lc_db):
    t = Table({"dateobs": ["2021-10-22T20:15:10", "2021-13-45T99:00:00"], "mag": [12.0, 12.1]})
    report, _, _ = _lc(lc_db, t)
    assert report.inserted == 1 and report.messages == (
        "row 2: dateobs '2021-13-45T99:00:00' is not a time; refused",
    )


def test_missing_band_refuses_rows(lc_db):
    t = Table({"jd": [2459700.5, 2459700.6], "mag": [12.0, 12.1], "band": ["", "V"]})
    report, _, _ = _lc(lc_db, t, band=None)
    assert (report.inserted, report.skipped) == (1, 1) and "no band" in report.messages[0]


def test_repeated_points_load_once(lc_db):
    t = Table({"jd": [2459800.5, 2459800.5, 2459800.6], "mag": [12.0, 12.0, 12.1]})
    report, before, after = _lc(lc_db, t)
    assert (report.inserted, report.duplicates) == (2, 1)
    assert report.messages == ("row 2: the same point as row 1; loaded once",)
    again, _, _ = _lc(lc_db, t)
    assert (again.inserted, again.present) == (0, 2)
    assert after["lightcurves"] == before["lightcurves"] + 2


def test_timeseries_ecsv_loads(lc_db, tmp_path):
    ts = TimeSeries(time_start=Time("2021-11-01T20:00:00", scale="utc"), time_delta=60 * u.s,
                    n_samples=4)  # fmt: skip
    ts["mag"] = [10.1, 10.2, 10.3, 10.4] * u.mag
    ts["mag_err"] = [0.01] * 4 * u.mag
    ts.write(tmp_path / "ts.ecsv")
    settings, conn = lc_db
    rep = load_lightcurve_file(conn, tmp_path / "ts.ecsv", datasource="corpus", band="V",
                               object="SS Cyg")  # fmt: skip
    assert (rep.inserted, rep.skipped) == (4, 0)
    rows = conn.execute(
        "SELECT mjd FROM lightcurves WHERE mjd BETWEEN %s AND %s ORDER BY mjd",
        [59519.8, 59519.9],
    ).fetchall()
    assert [r[0] for r in rows] == pytest.approx(
        Time("2021-11-01T20:00:00").mjd + np.arange(4) / 1440, abs=1e-9
    )


# ------------------------------------------------------------------ object tables


def test_object_rows_refused(db):
    t = Table({"ra": [10.0, 400.0, 20.0, np.nan], "dec": [95.0, 10.0, 20.0, np.nan],
               "vsx_name": ["A", "B", "x" * 40, None]})  # fmt: skip
    before = snapshot(db[1])
    rep = load_objects(db[1], objects_from_table(t, catalogue="vsx"))
    assert (rep.inserted, rep.skipped) == (0, 4)
    assert [m.split(":")[0] for m in rep.messages] == ["row 1", "row 2", "row 3", "row 4"]
    assert "outside" in rep.messages[0] and "longer than 32" in rep.messages[2]
    assert "neither a position nor a name" in rep.messages[3]
    assert snapshot(db[1]) == before


def test_vsx_and_aavso_tables_from_stellarphot(db):
    import importlib.util

    base = os.path.dirname(importlib.util.find_spec("stellarphot").origin)
    vsx = read_object_table(f"{base}/differential_photometry/tests/data/variables.fits")
    assert vsx["vsx_name"][0] == "EY UMa" and vsx["simbad_name"][0] is None
    comp = read_object_table(f"{base}/differential_photometry/tests/data/comp_stars.fits")
    rep = load_objects(db[1], comp)
    assert rep.inserted == 16 and rep.duplicates == len(comp) - 16 and rep.skipped == 0
    assert any("columns not stored: band, mag, error" in n for n in rep.notes)
    row = db[1].execute("SELECT auid, aavso_label FROM objects WHERE auid = '000-BBQ-208'")
    assert row.fetchall() == [("000-BBQ-208", "69")]
    assert len(find_objects(db[1], "000-bbq-208")) == 1


# ------------------------------------------------------------------ parameters


@pytest.mark.parametrize(
    ("ra", "dec", "pattern"),
    [
        ("nan", "10", "not finite"),
        ("400", "10", "outside"),
        ("10", "-100", "outside"),
        ("25:00:00", "10", "cannot read position"),
        ("10", "abc", "cannot read position"),
    ],  # fmt: skip
)
def test_bad_positions(ra, dec, pattern):
    with pytest.raises(QueryError, match=pattern) as info:
        parse_coord(ra, dec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("nan", "not a finite"),
        ("inf", "not a finite"),
        ("120deg", "over 90 deg"),
        ("-1arcsec", "positive"),
        ("3 parsec", "cannot read radius"),
    ],  # fmt: skip
)
def test_bad_radii(text, pattern):
    with pytest.raises(QueryError, match=pattern):
        parse_radius(text)


def test_cone_radius_limits(db):
    from astropy.coordinates import SkyCoord

    centre = SkyCoord(10, 10, unit="deg")
    assert len(cone_objects(db[1], centre, 90 * u.deg)) >= 0  # a hemisphere works
    for bad in (120 * u.deg, np.nan * u.deg):
        with pytest.raises(QueryError):
            cone_objects(db[1], centre, bad)


def test_percent_and_underscore_are_literal(db):
    load_objects(db[1], objects_from_table(Table({"ra": [1.0, 2.0], "dec": [1.0, 2.0],
                 "vsx_name": ["AB_Cyg 100%", "ABxCyg 1000"]}), catalogue="vsx"))  # fmt: skip
    assert list(find_objects(db[1], "AB_Cyg 100%")["vsx_name"]) == ["AB_Cyg 100%"]
    assert len(find_objects(db[1], "AB_Cyg%")) == 0  # not a pattern
    assert len(find_objects(db[1], "AB*Cyg*")) == 2  # a glob when asked with '*'
