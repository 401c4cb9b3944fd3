"""Header parsing and file reading, without a database."""

from __future__ import annotations

import gzip
import math
from datetime import UTC, datetime

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from photdb.archive.fitsfiles import ExposureError, find_fits, read_exposure
from photdb.archive.headers import (
    HeaderError,
    header_to_json,
    load_maps,
    normalise_band,
    normalise_mode,
    parse_header,
)
from photdb.archive.tests.fitsfactory import write_decam_fz, write_maxim, write_nina


@pytest.mark.parametrize(
    ("raw", "instrument", "band"),
    [
        ("r", None, "r_sdss"),
        ("r'", None, "r_sdss"),
        ("Sloan r", None, "r_sdss"),
        ("SDSS r", None, "r_sdss"),
        ("rp", None, "r_sdss"),
        ("R", None, "R"),
        ("Rc", None, "R"),
        ("V", None, "V"),
        ("B", None, "B"),
        ("I", None, "I"),
        ("Ic", None, "I"),
        ("L", None, "L"),
        ("Lum", None, "L"),
        ("Clear", None, "clear"),
        ("sloan I", None, "i_sdss"),
        ("r DECam SDSS c0002 6415.0 1480.0", "DECam", "r_decam"),
        ("VR", "DECam", "VR_decam"),
        ("  ", None, None),
        ("XYZ-42", None, None),
    ],
)
def test_filter_map(raw, instrument, band):
    assert normalise_band(raw, instrument=instrument) == band


@pytest.mark.parametrize(
    ("raw", "mode"),
    [
        ("Light Frame", "light"),
        ("Dark Frame", "dark"),
        ("Flat Field", "flat"),
        ("Bias Frame", "bias"),
        ("LIGHT", "light"),
        ("DARKFLAT", "darkflat"),
        ("Light", "light"),
        ("object", "light"),
        ("zero", "bias"),
        ("dome flat", "flat"),
        ("dark", "dark"),
        ("Something Else", "something else"),
    ],
)
def test_mode_map(raw, mode):
    assert normalise_mode(raw) == mode


def test_user_map_overrides(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text('[filters]\n"R" = "R_johnson"\n"Hyper" = "H"\n[modes]\n"LIGHT" = "sci"\n')
    maps = load_maps(user)
    assert normalise_band("R", maps=maps) == "R_johnson"
    assert normalise_band("Hyper", maps=maps) == "H"
    assert normalise_band("V", maps=maps) == "V"
    assert normalise_mode("Light", maps=maps) == "sci"


def _header(**cards):
    return fits.Header([(k.replace("_", "-"), v) for k, v in cards.items()])


def test_dates_and_timesys():
    p = "x.fits"
    r = parse_header(_header(DATE_OBS="2021-10-22", TIME_OBS="20:13:42.5", EXPTIME=10.0), path=p)
    assert r.dateobs == datetime(2021, 10, 22, 20, 13, 42, 500000, tzinfo=UTC)
    assert r.mjd == pytest.approx(Time("2021-10-22T20:13:47.5").mjd, abs=1e-10)
    r = parse_header(_header(DATE_OBS="22/10/21", UT="22:01:23"), path=p)  # pre-2000 FITS: 19YY
    assert r.dateobs == datetime(1921, 10, 22, 22, 1, 23, tzinfo=UTC)
    assert any("EXPTIME" in w for w in r.warnings)
    r = parse_header(_header(MJD_OBS=59509.0, TIMESYS="TAI", EXPOSURE=2.0), path=p)
    assert r.dateobs == datetime(2021, 10, 21, 23, 59, 23, tzinfo=UTC)  # TAI - 37 s
    assert r.mjd == pytest.approx(59509.0 - 36.0 / 86400.0, abs=1e-10) and r.timesys == "TAI"
    r = parse_header(_header(DATE_OBS="2021-10-22T20:13:42Z"), path=p)
    assert r.dateobs == datetime(2021, 10, 22, 20, 13, 42, tzinfo=UTC)
    with pytest.raises(HeaderError, match=r"x.fits \[HDU 3\]: unparsable DATE-OBS"):
        parse_header(_header(DATE_OBS="yesterday"), path=p, hdu=3)
    with pytest.raises(HeaderError, match="no observation time"):
        parse_header(_header(EXPTIME=1.0), path=p)
    with pytest.raises(HeaderError, match="TIMESYS"):
        parse_header(_header(DATE_OBS="2021-10-22", TIMESYS="LOCAL"), path=p)


def test_coordinates_and_fov():
    base = {"DATE_OBS": "2021-01-01T00:00:00", "NAXIS": 2, "NAXIS1": 100, "NAXIS2": 50}
    r = parse_header(_header(**base, RA="12:00:00", DEC="-10:30:00"), path="a.fit")
    assert r.coordequsrc == "radec" and r.coordequ == pytest.approx((180.0, -10.5))
    r = parse_header(_header(**base, RA=12.5, DEC=45.0, FOCALLEN=1000.0, XPIXSZ=10.0), path="a")
    assert r.coordequsrc == "radec" and r.coordequ == pytest.approx((12.5, 45.0))
    assert r.fov == pytest.approx(
        (math.radians(100 * 2.0626500 / 3600), math.radians(50 * 2.0626500 / 3600))
    )
    # a WCS disagreeing with the optics by 20 % is kept, with a warning
    wcs = {
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRVAL1": 10.0,
        "CRVAL2": 20.0,
        "CRPIX1": 50.5,
        "CRPIX2": 25.5,
        "CDELT1": -2.0626500 * 1.2 / 3600,
        "CDELT2": 2.0626500 * 1.2 / 3600,
    }
    hdr = _header(**base, FOCALLEN=1000.0, XPIXSZ=10.0)
    hdr.update(wcs)
    r = parse_header(hdr, path="a")
    assert r.coordequsrc == "wcs" and r.coordequ == pytest.approx((10.0, 20.0))
    assert r.fov[0] == pytest.approx(math.radians(100 * 2.06265 * 1.2 / 3600))
    assert any("differs" in w and "+20%" in w for w in r.warnings)


def test_header_to_json_types_and_merge():
    primary = _header(TELESCOP="T1", FILTER="V", EXPTIME=5)
    primary["COMMENT"] = "c"
    ext = fits.Header(
        [
            ("EXTNAME", "S1"),
            ("FILTER", "r"),
            ("GAIN", fits.card.UNDEFINED),
            ("FLAG", True),
            ("CHECKSUM", "abc"),
            ("BIG", 2**40),
        ]
    )
    ext["HISTORY"] = "h"
    data = header_to_json(ext, primary)
    assert data == {
        "TELESCOP": "T1",
        "FILTER": "r",
        "EXPTIME": 5,
        "EXTNAME": "S1",
        "GAIN": None,
        "FLAG": True,
        "BIG": 2**40,
    }
    assert type(data["EXPTIME"]) is int


def test_find_fits(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("x.FIT", "a/y.fits.gz", "a/b/z.fz", "a/b/w.Fts", "a/readme.txt", "a/q.fits.bz2"):
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in find_fits(tmp_path)]
    assert found == ["a/b/w.Fts", "a/b/z.fz", "a/y.fits.gz", "x.FIT"]
    with pytest.raises(FileNotFoundError):
        find_fits(tmp_path / "missing")


def test_read_exposure_mef_and_gzip(tmp_path):
    exp = read_exposure(write_decam_fz(tmp_path / "d.fits.fz"))
    assert [(i.hdu, i.extname, i.ccdnum) for i in exp.images] == [(1, "S1", 25), (2, "N4", 35)]
    assert exp.band == "r_decam" and exp.telescope == "CTIO 4.0-m telescope"
    src = write_maxim(tmp_path / "m.fit")
    gz = tmp_path / "m.fit.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    a, b = read_exposure(src), read_exposure(gz)
    assert a.images[0].observation.coordequ == b.images[0].observation.coordequ
    assert a.sha256 != b.sha256 and len(a.sha256) == 64


@pytest.mark.parametrize("cut", ["header", "data", "gzip", "fz", "last_hdu"])
def test_truncated_files_are_refused(tmp_path, cut):
    good = tmp_path / ("src.fz" if cut == "fz" else "src.fits")
    if cut in ("header", "data"):
        raw = write_nina(good).read_bytes()
        bad = raw[:1000] if cut == "header" else raw[: len(raw) - 100]
        name = "t.fits"
    elif cut == "gzip":
        raw = gzip.compress(write_nina(good).read_bytes())
        bad, name = raw[: len(raw) - 30], "t.fits.gz"
    elif cut == "fz":
        hdus = fits.HDUList(
            [
                fits.PrimaryHDU(header=_header(DATE_OBS="2020-01-01")),
                fits.CompImageHDU(np.random.default_rng(0).random((100, 100))),
            ]
        )
        hdus.writeto(tmp_path / "src.fz")
        raw = (tmp_path / "src.fz").read_bytes()
        bad, name = raw[: len(raw) - 20000], "t.fz"
    else:
        hdus = fits.HDUList(
            [
                fits.PrimaryHDU(header=_header(DATE_OBS="2020-01-01")),
                fits.ImageHDU(np.zeros((20, 20))),
                fits.ImageHDU(np.ones((50, 50))),
            ]
        )
        hdus.writeto(tmp_path / "src.fits")
        raw = (tmp_path / "src.fits").read_bytes()
        bad, name = raw[: len(raw) - 5000], "t.fits"
    (tmp_path / name).write_bytes(bad)
    assert read_exposure(good).images  # the intact file is fine
    with pytest.raises(ExposureError, match=r"truncated|corrupt|not a readable") as info:
        read_exposure(tmp_path / name)
    assert name in str(info.value) and "\n" not in str(info.value)
