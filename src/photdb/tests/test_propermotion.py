"""photdb.propermotion: Gaia DR3 catalogues as delivered, moved to an image's epoch."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import MaskedColumn, Table
from astropy.time import Time

from photdb.propermotion import (
    attach_proper_motions,
    catalog_at_epoch,
    epoch_of_header,
    normalise_catalog,
    positions_at_epoch,
)

DEC = -28.9


def _gaia(n=3):
    t = Table()
    t["source_id"] = np.arange(n, dtype=np.int64) + 4_000_000_000
    t["ref_epoch"] = np.full(n, 2016.0)
    t["ra"] = 271.5 + np.arange(n) * 1e-3
    t["dec"] = np.full(n, DEC)
    t["pmra"] = MaskedColumn([6.0, 0.0, 0.0][:n], mask=[False, False, True][:n])
    t["pmdec"] = MaskedColumn([0.0, -4.0, 0.0][:n], mask=[False, False, True][:n])
    t["phot_g_mean_mag"] = [17.0, 18.0, 19.0][:n]
    units = {"ref_epoch": "yr", "ra": "deg", "dec": "deg", "pmra": "mas / yr",
             "pmdec": "mas / yr", "phot_g_mean_mag": "mag"}  # fmt: skip
    for k, v in units.items():
        t[k].unit = v
    return t


@pytest.mark.parametrize("fmt", ["ascii.ecsv", "ascii.csv", "fits"])
def test_gaia_files_as_delivered_move_by_their_proper_motions(tmp_path, fmt):
    path = tmp_path / f"gaia.{fmt.split('.')[-1]}"
    _gaia().write(path, format=fmt)
    cat = Table.read(path, format=fmt)
    moved = catalog_at_epoch(cat, Time(2021.0, format="jyear"))
    dra = (moved["ra"] - moved["ra_catalog"]) * 3.6e6 * np.cos(np.radians(DEC))
    ddec = (moved["dec"] - moved["dec_catalog"]) * 3.6e6
    np.testing.assert_allclose(dra, [30.0, 0.0, 0.0], atol=0.01)  # 6 mas/yr x 5 yr
    np.testing.assert_allclose(ddec, [0.0, -20.0, 0.0], atol=0.01)
    assert moved["mag"].tolist() == [17.0, 18.0, 19.0]  # phot_g_mean_mag
    # moving again to the same epoch changes nothing
    again = catalog_at_epoch(moved, Time(2021.0, format="jyear"))
    np.testing.assert_allclose(again["ra"], moved["ra"], rtol=0, atol=1e-12)


def test_old_format_and_no_epoch_keep_positions():
    old = Table({"ra": [271.5], "dec": [DEC], "mag": [17.0]})
    out = catalog_at_epoch(old, Time(2030.0, format="jyear"))
    assert out["ra"][0] == 271.5 and out["dec"][0] == DEC
    out = catalog_at_epoch(_gaia(), None)
    np.testing.assert_array_equal(out["ra"], _gaia()["ra"])


def test_bad_catalogues_say_why():
    with pytest.raises(ValueError, match="lacks dec"):
        normalise_catalog(Table({"ra": [1.0]}))
    with pytest.raises(ValueError, match="only one of pmra and pmdec"):
        normalise_catalog(Table({"ra": [1.0], "dec": [1.0], "pmra": [1.0]}))


def test_reference_sources_take_their_counterparts_motion():
    gaia = _gaia()
    t_ref = Time(2021.0, format="jyear")
    at_ref = catalog_at_epoch(gaia, t_ref)
    ref = Table({"ra": np.r_[at_ref["ra"], 271.6], "dec": np.r_[at_ref["dec"], DEC]})
    ref = attach_proper_motions(ref, gaia, t_ref)
    assert np.isfinite(ref["pmra"]).tolist() == [True, True, False, False]
    ra, dec = positions_at_epoch(ref, Time(2026.0, format="jyear"))
    assert (ra[0] - ref["ra"][0]) * 3.6e6 * np.cos(np.radians(DEC)) == pytest.approx(30, abs=0.05)
    assert (dec[1] - ref["dec"][1]) * 3.6e6 == pytest.approx(-20.0, abs=0.05)
    assert ra[3] == ref["ra"][3] and ra[2] == ref["ra"][2]  # no proper motion: unchanged


def test_epoch_of_header():
    h = fits.Header({"MJD-OBS": 59300.0, "EXPTIME": 86.4})
    assert epoch_of_header(h).mjd == pytest.approx(59300.0005)
    h = fits.Header({"DATE-OBS": "2021-03-20T00:00:00"})
    assert epoch_of_header(h).mjd == pytest.approx(59293.0)
    assert epoch_of_header(fits.Header()) is None
