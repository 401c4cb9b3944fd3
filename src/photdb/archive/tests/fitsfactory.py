"""Small FITS files with the headers real small-telescope software writes.

Each writer returns the path; the dict ``TRUTH[name]`` says what the archive
must make of it.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import astropy
import numpy as np
from astropy.io import fits

ASTROPY = Path(astropy.__file__).parent
#: Real files shipped with astropy that carry an observation time.
REAL_GOOD = {
    "sip-wcs.fits": ASTROPY / "nddata/tests/data/sip-wcs.fits",
    "fixed-1890.fits": ASTROPY / "io/fits/tests/data/fixed-1890.fits",
    "dss.14.29.56-62.41.05.fits.gz": ASTROPY / "wcs/tests/data/dss.14.29.56-62.41.05.fits.gz",
    "test0.fits": ASTROPY / "io/fits/tests/data/test0.fits",
}
#: Real files that must be refused: no observation time; CHECKSUMs that fail.
REAL_BAD = {
    "m13.fits": ASTROPY / "io/fits/hdu/compressed/tests/data/m13.fits",
    "checksum_false.fits": ASTROPY / "io/fits/tests/data/checksum_false.fits",
    "header_newlines.fits": ASTROPY / "wcs/tests/data/header_newlines.fits",
}


def _wcs_cards(ra: float, dec: float, scale_deg: float, nx: int, ny: int) -> list[tuple]:
    return [
        ("CTYPE1", "RA---TAN"),
        ("CTYPE2", "DEC--TAN"),
        ("CRVAL1", ra),
        ("CRVAL2", dec),
        ("CRPIX1", (nx + 1) / 2.0),
        ("CRPIX2", (ny + 1) / 2.0),
        ("CD1_1", -scale_deg),
        ("CD1_2", 0.0),
        ("CD2_1", 0.0),
        ("CD2_2", scale_deg),
        ("RADESYS", "ICRS"),
        ("EQUINOX", 2000.0),
    ]


def _image(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, size=shape).astype(np.int16)


def write_maxim(path: Path, seed: int = 1) -> Path:
    """MaxIm DL: 'Light Frame', FILTER 'r', OBJCTRA/DEC and a plate-solved WCS."""
    scale = 206265.0 / 2000.0 * 9.0 / 1000.0 / 3600.0
    hdr = fits.Header(
        [
            ("DATE-OBS", "2021-10-22T20:13:42"),
            ("EXPTIME", 30.0),
            ("EXPOSURE", 30.0),
            ("IMAGETYP", "Light Frame"),
            ("FILTER", "r"),
            ("TELESCOP", "Alica  "),
            ("INSTRUME", "Moravian G2-1600"),
            ("OBSERVAT", "Kolonica"),
            ("FOCALLEN", 2000.0),
            ("XPIXSZ", 9.0),
            ("YPIXSZ", 9.0),
            ("XBINNING", 1),
            ("OBJCTRA", "17 20 39.00"),
            ("OBJCTDEC", "+76 42 40.0"),
            ("OBJECT", "VY UMi"),
            *_wcs_cards(259.946337377513, 76.6987591700176, scale, 64, 48),
        ]
    )
    hdr["HISTORY"] = "calibrated by MaxIm DL"
    fits.PrimaryHDU(_image((48, 64), seed), hdr).writeto(path, checksum=True)
    return path


def write_nina(path: Path) -> Path:
    """NINA: 'LIGHT', 'Sloan r', binned XPIXSZ, OBJCTRA/DEC and RA/DEC, no WCS."""
    hdr = fits.Header(
        [
            ("DATE-OBS", "2022-03-01T21:00:00.123"),
            ("EXPOSURE", 60.0),
            ("EXPTIME", 60.0),
            ("IMAGETYP", "LIGHT"),
            ("FILTER", "Sloan r"),
            ("TELESCOP", "Kolonica ZA"),
            ("INSTRUME", "ZWO ASI6200MM Pro"),
            ("XBINNING", 2),
            ("YBINNING", 2),
            ("XPIXSZ", 7.52),
            ("YPIXSZ", 7.52),
            ("FOCALLEN", 1000.0),
            ("OBJCTRA", "08 13 49.61"),
            ("OBJCTDEC", "-05 30 00.0"),
            ("RA", 123.456708),
            ("DEC", -5.5),
        ]
    )
    fits.PrimaryHDU(_image((30, 40), 2), hdr).writeto(path)
    return path


def write_sharpcap(path: Path) -> Path:
    """SharpCap: a 'DARK' with 7-digit fractional seconds and no pointing at all."""
    hdr = fits.Header(
        [
            ("DATE-OBS", "2023-01-05T01:02:03.4567890"),
            ("EXPTIME", 10.0),
            ("IMAGETYP", "DARK"),
            ("FILTER", "V"),
            ("INSTRUME", "ZWO ASI294MC"),
        ]
    )
    fits.PrimaryHDU(_image((20, 30), 3), hdr).writeto(path)
    return path


def write_ekos(path: Path) -> Path:
    """KStars/Ekos: MJD-OBS in TT, 'Light', 'Rc', RA/DEC in degrees, unbinned PIXSIZE."""
    hdr = fits.Header(
        [
            ("MJD-OBS", 60000.5),
            ("TIMESYS", "TT"),
            ("EXPTIME", 120.0),
            ("FRAME", "Light"),
            ("IMAGETYP", "Light Frame"),
            ("FILTER", "Rc"),
            ("TELESCOP", "Kolonica ZA"),
            ("INSTRUME", "ZWO ASI6200MM Pro"),
            ("PIXSIZE1", 3.76),
            ("PIXSIZE2", 3.76),
            ("XBINNING", 2),
            ("YBINNING", 2),
            ("FOCALLEN", 500.0),
            ("RA", 325.679),
            ("DEC", 43.5862),
        ]
    )
    fits.PrimaryHDU(_image((25, 35), 4), hdr).writeto(path)
    return path


def write_decam_fz(path: Path) -> Path:
    """A DECam-like tile-compressed MEF: two CCDs with their own WCS, one table."""
    scale = 0.263 / 3600.0
    primary = fits.PrimaryHDU(
        header=fits.Header(
            [
                ("TELESCOP", "CTIO 4.0-m telescope"),
                ("INSTRUME", "DECam"),
                ("OBSERVAT", "CTIO"),
                ("OBSTYPE", "object"),
                ("FILTER", "r DECam SDSS c0002 6415.0 1480.0"),
                ("BAND", "r"),
                ("DATE-OBS", "2019-04-05T06:07:08.900"),
                ("TIMESYS", "UTC"),
                ("MJD-OBS", 58578.25496412),
                ("EXPTIME", 90.0),
                ("RA", "18:03:40.0"),
                ("DEC", "-30:00:00"),
            ]
        )
    )
    hdus = [primary]
    for i, (ext, ccd, dra) in enumerate((("S1", 25, 0.0), ("N4", 35, 0.05))):
        hdr = fits.Header(
            [
                ("EXTNAME", ext),
                ("CCDNUM", ccd),
                *_wcs_cards(270.9166667 + dra, -30.0, scale, 64, 32),
            ]
        )
        hdus.append(fits.CompImageHDU(_image((32, 64), 10 + i), hdr))
    hdus.append(fits.BinTableHDU.from_columns([fits.Column("x", "E", array=np.arange(3.0))]))
    fits.HDUList(hdus).writeto(path, checksum=True)
    return path


def write_bad_date(path: Path) -> Path:
    hdr = fits.Header([("DATE-OBS", "2021-13-45T99:00:00"), ("EXPTIME", 5.0)])
    fits.PrimaryHDU(_image((10, 10), 5), hdr).writeto(path)
    return path


def write_truncated(path: Path) -> Path:
    tmp = path.with_suffix(".tmp")
    write_nina(tmp)
    data = tmp.read_bytes()
    tmp.unlink()
    path.write_bytes(data[: len(data) - 2000])
    return path


def write_garbage(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(7).bytes(6000))
    return path


def write_bad_checksum(path: Path) -> Path:
    tmp = path.with_suffix(".tmp")
    write_maxim(tmp)
    data = bytearray(tmp.read_bytes())
    tmp.unlink()
    data[2880 + 100] ^= 0xFF  # one data byte flipped, header untouched
    path.write_bytes(bytes(data))
    return path


def build_archive(root: Path) -> dict[str, list[str]]:
    """Write the mixed folder; return {'good': [...], 'bad': [...]} relative names."""
    night = root / "Alica" / "2021-10-22"
    other = root / "ZA" / "misc"
    night.mkdir(parents=True)
    other.mkdir(parents=True)
    write_maxim(night / "2021-10-22T20:13:42_r.fit")
    write_nina(other / "nina_light.FITS")
    write_sharpcap(other / "sharpcap_dark.fts")
    write_ekos(other / "ekos.fits")
    write_decam_fz(other / "c4d_190405_060708_ooi_r.fits.fz")
    for name, src in REAL_GOOD.items():
        shutil.copyfile(src, other / name)
    for name, src in REAL_BAD.items():
        shutil.copyfile(src, root / name)
    write_bad_date(root / "bad_date.fits")
    write_truncated(root / "truncated.fits")
    write_garbage(root / "garbage.fits")
    write_bad_checksum(root / "bad_checksum.fit")
    (root / "notes.txt").write_text("not a FITS file, must be ignored")
    good = [
        "Alica/2021-10-22/2021-10-22T20:13:42_r.fit",
        "ZA/misc/nina_light.FITS",
        "ZA/misc/sharpcap_dark.fts",
        "ZA/misc/ekos.fits",
        "ZA/misc/c4d_190405_060708_ooi_r.fits.fz",
        *(f"ZA/misc/{n}" for n in REAL_GOOD),
    ]
    bad = [*REAL_BAD, "bad_date.fits", "truncated.fits", "garbage.fits", "bad_checksum.fit"]
    return {"good": good, "bad": bad}


def fov_rad(n: int, scale_deg: float) -> float:
    return math.radians(n * scale_deg)


__all__ = ["build_archive", "fov_rad"]
