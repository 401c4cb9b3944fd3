"""Ingest a folder of good and broken FITS files into a fresh database."""

from __future__ import annotations

import math
import shutil
from datetime import UTC, datetime

import pytest
from astropy.time import Time

from photdb.archive.ingest import ingest_paths
from photdb.archive.tests.fitsfactory import build_archive, write_maxim, write_nina
from photdb.db import connect

ROW = """
SELECT o.dateobs, o.accumtime::float, t.name, i.name, o.fov[0], o.fov[1], o.mode, o.band,
       degrees(long(o.coordequ)), degrees(lat(o.coordequ)), o.coordequsrc, o.type, o.filename,
       o.path_to_fits, o.mjd, o.timesys, g.hdu, g.extname, g.ccdnum, g.naxis1, g.naxis2,
       e.sha256, e.filter, e.n_images, e.exptime_s, e.mjd, ob.name
FROM observations o JOIN galimages g ON g.id = o.id JOIN galexposures e ON e.id = g.galexposure_id
LEFT JOIN telescopes t ON t.id = o.telescope_id LEFT JOIN instruments i ON i.id = o.instrument_id
LEFT JOIN observatories ob ON ob.id = t.observatory_id
WHERE o.filename = %s ORDER BY g.hdu
"""


def _rows(conn, name):
    return conn.execute(ROW, [name]).fetchall()


@pytest.fixture
def archive(tmp_path):
    root = tmp_path / "data"
    names = build_archive(root)
    return root, names


def test_ingest_mixed_folder(archive, db_settings):
    root, names = archive
    seen = []
    report = ingest_paths(root, settings=db_settings, progress=lambda d, n, r: seen.append((d, n)))
    failed = {r.path.split("/")[-1]: r.message for r in report.results if r.status == "failed"}
    assert report.ingested == len(names["good"]), failed
    assert report.failed == len(names["bad"]) and report.present == 0
    assert sorted(failed) == sorted(names["bad"])
    assert seen[-1] == (len(report.results), len(report.results))
    for name, message in failed.items():
        assert "\n" not in message and name in message
    assert "no observation time" in failed["m13.fits"]
    assert "checksum" in failed["bad_checksum.fit"] and "checksum" in failed["checksum_false.fits"]
    assert "truncated" in failed["truncated.fits"]
    assert "not a readable FITS" in failed["garbage.fits"]
    assert "DATE-OBS" in failed["bad_date.fits"] and "2021-13-45" in failed["bad_date.fits"]
    sharpcap = next(r for r in report.results if r.path.endswith("sharpcap_dark.fts"))
    assert any("coordequ left empty" in w for w in sharpcap.warnings)

    with connect("writer", settings=db_settings) as conn:
        # nothing of a bad file: one exposure per good file; MEFs with 2 and 4 images
        n_exp, n_img = conn.execute("SELECT count(*), sum(n_images) FROM galexposures").fetchone()
        assert (n_exp, n_img) == (len(names["good"]), len(names["good"]) + 1 + 3)
        for table in ("observations", "galimages", "metadata_obs_json"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == n_img
        bad = [n.split("/")[-1] for n in names["bad"]]
        assert (
            conn.execute(
                "SELECT count(*) FROM observations WHERE filename = ANY(%s)", [bad]
            ).fetchone()[0]
            == 0
        )

        (r,) = _rows(conn, "2021-10-22T20:13:42_r.fit")
        assert r[0] == datetime(2021, 10, 22, 20, 13, 42, tzinfo=UTC)
        assert r[1:4] == (30.0, "Alica", "Moravian G2-1600")
        scale = 206265.0 / 2000.0 * 9.0 / 1000.0 / 3600.0
        assert r[4] == pytest.approx(math.radians(64 * scale), rel=1e-6)
        assert r[5] == pytest.approx(math.radians(48 * scale), rel=1e-6)
        assert r[6:8] == ("light", "r_sdss")
        assert r[8] == pytest.approx(259.946337377513, abs=1e-6)
        assert r[9] == pytest.approx(76.6987591700176, abs=1e-6)
        assert r[10:14] == (
            "wcs",
            "image",
            "2021-10-22T20:13:42_r.fit",
            str((root / "Alica/2021-10-22").resolve()),
        )
        mid = Time("2021-10-22T20:13:42", scale="utc").mjd + 15.0 / 86400.0
        assert r[14] == pytest.approx(mid, abs=1e-9) and r[15] == "UTC"
        assert r[16:21] == (0, None, None, 64, 48)
        assert len(r[21]) == 64 and r[22:25] == ("r_sdss", 1, 30.0)
        assert r[25] == r[14] and r[26] == "Kolonica"

        (r,) = _rows(conn, "nina_light.FITS")
        assert r[0] == datetime(2022, 3, 1, 21, 0, 0, 123000, tzinfo=UTC)
        assert r[6:8] == ("light", "r_sdss") and r[10] == "objectequ"
        assert r[8] == pytest.approx(15 * (8 + 13 / 60 + 49.61 / 3600), abs=1e-9)
        assert r[9] == pytest.approx(-5.5, abs=1e-9)
        binned = 206265.0 / 1000.0 * 7.52 / 1000.0 / 3600.0  # XPIXSZ already binned
        assert r[4] == pytest.approx(math.radians(40 * binned), rel=1e-9)

        (r,) = _rows(conn, "sharpcap_dark.fts")
        assert r[0] == datetime(2023, 1, 5, 1, 2, 3, 456789, tzinfo=UTC)
        assert r[2] is None and r[3] == "ZWO ASI294MC"
        assert r[4] is None and r[6:8] == ("dark", "V") and r[8:11] == (None, None, None)

        (r,) = _rows(conn, "ekos.fits")
        start = Time(60000.5, format="mjd", scale="tt").utc
        assert r[0] == start.to_datetime(timezone=UTC)
        assert r[0] == datetime(2023, 2, 25, 11, 58, 50, 816000, tzinfo=UTC)  # TT - 69.184 s
        assert r[14] == pytest.approx(start.mjd + 60.0 / 86400.0, abs=1e-9) and r[15] == "TT"
        assert r[6:8] == ("light", "R") and r[10] == "radec"
        assert (r[8], r[9]) == (pytest.approx(325.679), pytest.approx(43.5862))
        unbinned = 206265.0 / 500.0 * 3.76 * 2 / 1000.0 / 3600.0  # PIXSIZE1 x XBINNING
        assert r[5] == pytest.approx(math.radians(25 * unbinned), rel=1e-9)

        rows = _rows(conn, "c4d_190405_060708_ooi_r.fits.fz")
        assert [(x[16], x[17], x[18], x[19], x[20]) for x in rows] == [
            (1, "S1", 25, 64, 32),
            (2, "N4", 35, 64, 32),
        ]
        for x in rows:
            assert x[2:4] == ("CTIO 4.0-m telescope", "DECam") and x[26] == "CTIO"
            assert x[6:8] == ("light", "r_decam") and x[10] == "wcs" and x[23] == 2
            assert x[4] == pytest.approx(math.radians(64 * 0.263 / 3600), rel=1e-6)
        assert rows[1][8] - rows[0][8] == pytest.approx(0.05, abs=1e-6)

        rows = _rows(conn, "test0.fits")  # real WFPC2 file: DD/MM/YY + TIME-OBS, 4 images
        assert [x[16] for x in rows] == [1, 2, 3, 4]
        assert rows[0][0] == datetime(1994, 5, 19, 15, 41, 16, tzinfo=UTC)
        (r,) = _rows(conn, "dss.14.29.56-62.41.05.fits.gz")
        assert r[0] == datetime(1976, 3, 11, 17, 38, tzinfo=UTC) and r[10] == "wcs"
        (r,) = _rows(conn, "sip-wcs.fits")
        assert r[3] == "Apogee Alta" and r[7] == "B" and r[10] == "wcs"

        # the JSON header: typed values, no COMMENT/HISTORY/CHECKSUM, extension wins
        (data,) = conn.execute(
            "SELECT m.data FROM metadata_obs_json m JOIN observations o ON o.id = m.observation_id"
            " WHERE o.filename = %s",
            ["2021-10-22T20:13:42_r.fit"],
        ).fetchone()
        assert data["EXPTIME"] == 30.0 and data["NAXIS1"] == 64 and data["XBINNING"] == 1
        assert data["OBJECT"] == "VY UMi" and data["SIMPLE"] is True
        assert not {"HISTORY", "COMMENT", "", "CHECKSUM", "DATASUM"} & set(data)
        (data,) = conn.execute(
            "SELECT m.data FROM metadata_obs_json m JOIN galimages g ON g.id = m.observation_id"
            " WHERE g.extname = 'N4'"
        ).fetchone()
        assert data["INSTRUME"] == "DECam" and data["EXTNAME"] == "N4" and data["CCDNUM"] == 35

    # idempotent: the second run finds everything present and writes nothing
    again = ingest_paths(root, settings=db_settings)
    assert (again.ingested, again.present, again.failed) == (
        0,
        len(names["good"]),
        len(names["bad"]),
    )
    with connect("writer", settings=db_settings) as conn:
        assert conn.execute("SELECT count(*) FROM galexposures").fetchone()[0] == n_exp


def test_conflict_unknown_names_and_dry_run(tmp_path, db_settings):
    a = tmp_path / "a"
    a.mkdir()
    target = write_maxim(a / "frame.fit")
    dry = ingest_paths(a, settings=db_settings, dry_run=True)
    assert dry.ingested == 1 and "dry run" in dry.results[0].message
    with connect("writer", settings=db_settings) as conn:
        assert conn.execute("SELECT count(*) FROM galexposures").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM telescopes").fetchone()[0] == 0

    refused = ingest_paths(a, settings=db_settings, create_missing=False)
    assert refused.failed == 1
    assert "unknown" in refused.results[0].message and "frame.fit" in refused.results[0].message
    assert ingest_paths(a, settings=db_settings).ingested == 1

    # a copy elsewhere is the same file; a different file under the same name is a conflict
    b = tmp_path / "b"
    b.mkdir()
    shutil.copyfile(target, b / "copy.fit")
    copy = ingest_paths(b, settings=db_settings)
    assert copy.present == 1 and "already present as" in copy.results[0].message
    target.unlink()
    write_nina(target)
    clash = ingest_paths(target, settings=db_settings)
    assert clash.failed == 1 and "conflict" in clash.results[0].message
    with connect("writer", settings=db_settings) as conn:
        assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 1
    # with the names now known, create_missing=False accepts a new file
    ok = ingest_paths(
        write_maxim(b / "second.fit", seed=9), settings=db_settings, create_missing=False
    )
    assert ok.ingested == 1, ok.messages
