"""Light-curve exports and the plot description, without a database."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io.votable import parse
from astropy.table import Table
from astropy.time import Time

from photdb.export import EXPORT_FORMATS, export_lightcurve, format_from_suffix
from photdb.lightcurve import band_colour, band_label, lightcurve_table, magnitude_system
from photdb.plot import plot_lightcurve, plot_series


@pytest.fixture
def lc():
    return lightcurve_table(
        {
            "source": ["archive", "archive", "pipeline", "pipeline", "pipeline"],
            "mjd": [59509.84, 59510.84, 59300.1, 59301.2, 59302.3],
            "band": ["V", "V", "g_decam", "g_decam", "r_decam"],
            "mag": [10.24, None, 19.5, 19.9, 18.2],
            "mag_err": [0.01, None, 0.02, 0.03, 0.02],
            "mag_diff": [None, 0.31, None, None, None],
            "mag_diff_err": [None, 0.01, None, None, None],
            "comp_stars": ["000-BBQ-1,000-BBQ-2", "000-BBQ-1", None, None, None],
            "is_reference": [None, None, True, False, False],
            "zero_point": [None, None, 31.1, 31.0, 31.2],
        },
        meta={"object_name": "V* SS Cyg", "ra": 325.679, "dec": 43.5862},
    )


def test_band_vocabulary():
    assert [band_label(b) for b in ("g_decam", "r_sdss", "R", "V", "clear", None)] == [
        "g (DECam)", "r (SDSS)", "R (Cousins)", "V (Johnson)", "clear (unfiltered)",
        "unknown band",
    ]  # fmt: skip
    assert magnitude_system("g_decam") == "AB" and magnitude_system("V") == "Vega"
    assert magnitude_system("Ha") is None
    assert band_colour("r_decam") == band_colour("r_sdss") != band_colour("g_decam")


def test_plot_series_and_png(lc, tmp_path):
    spec = plot_series(lc)
    assert [s["label"] for s in spec["series"]] == ["g (DECam)", "V (Johnson)", "r (DECam)"]
    g = spec["series"][0]
    assert g["reference"] == [True, False] and g["colour"] == band_colour("g_decam")
    v = next(s for s in spec["series"] if s["band"] == "V")
    assert v["mag"] == [10.24] and v["kind"] == "magnitude"  # the differential point is left out
    assert spec["inverted"] and "AB: g (DECam), r (DECam)" in spec["ylabel"]
    assert "Vega: V (Johnson)" in spec["ylabel"]
    assert spec["title"].startswith("V* SS Cyg — RA 325.67900°")
    only_diff = lc[lc["band"] == "V"][1:]
    assert plot_series(only_diff)["ylabel"] == "differential magnitude"
    out = plot_lightcurve(lc, tmp_path / "lc.png")
    assert out.read_bytes().startswith(b"\x89PNG")
    assert plot_lightcurve(lc, tmp_path / "lc.svg").read_text().lstrip().startswith("<?xml")


def test_every_export_reads_back(lc):
    assert set(EXPORT_FORMATS) == {"aavso", "csv", "ecsv", "votable", "parquet"}
    assert format_from_suffix("x.ECSV") == "ecsv" and format_from_suffix("x.dat") is None
    ecsv = Table.read(export_lightcurve(lc, "ecsv").decode(), format="ascii.ecsv")
    assert isinstance(ecsv["time"], Time) and ecsv["time"].scale == "utc"
    assert np.allclose(ecsv["time"].mjd, lc["mjd"]) and ecsv.meta["object_name"] == "V* SS Cyg"
    assert bool(ecsv["mag"].mask[1]) and str(ecsv["zero_point"].unit) == "mag"
    csv = Table.read(export_lightcurve(lc, "csv").decode(), format="ascii.csv")
    assert csv.colnames == lc.colnames[1:] and len(csv) == 5
    vot = parse(io.BytesIO(export_lightcurve(lc, "votable")))
    table = vot.get_first_table()
    fields = {f.name: f for f in table.fields}
    assert fields["mag"].ucd == "phot.mag" and str(fields["mag"].unit) == "mag"
    assert fields["mjd"].ref == "utc_mjd" and vot.time_systems[0].timescale == "UTC"
    params = {p.name: p.value for p in table.params}
    assert params["object_name"] == "V* SS Cyg" and params["ra"] == pytest.approx(325.679)
    par = pq.read_table(io.BytesIO(export_lightcurve(lc, "parquet")))
    assert par.num_rows == 5 and par.column("mag").null_count == 1
    assert par.schema.field("mjd").metadata[b"ucd"] == b"time.epoch;obs"
    lines = export_lightcurve(lc, "aavso", obscode="XYZ").decode().splitlines()
    assert lines[:6] == ["#TYPE=EXTENDED", "#OBSCODE=XYZ", lines[2], "#DELIM=,", "#DATE=JD",
                         "#OBSTYPE=CCD"]  # fmt: skip
    body = [ln.split(",") for ln in lines if not ln.startswith("#")]
    assert len(body) == 5
    v1, v2, g1 = body[0], body[1], body[2]
    assert v1[:8] == ["V* SS Cyg", "2459510.340000", "10.2400", "0.0100", "V", "NO", "STD",
                      "ENSEMBLE"]  # fmt: skip
    assert v2[2] == "0.3100" and v2[6] == "DIF" and v2[7] == "000-BBQ-1"
    assert g1[4] == "SG" and "band=g_decam" in g1[-1]
    with pytest.raises(ValueError, match="unknown format"):
        export_lightcurve(lc, "fits")


def test_import_photdb_is_light_and_lazy():
    import subprocess
    import sys

    code = (
        "import sys, photdb; heavy = [m for m in ('astropy', 'psycopg', 'matplotlib', 'numpy')"
        " if m in sys.modules]; print(heavy); f = photdb.fetch_lightcurve;"
        " print(f.__module__, 'astropy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.splitlines() == ["[]", "photdb.api True"], out.stderr


def test_lightcurve_table_masks_missing_values_and_keeps_the_rest():
    """None, NaN, infinities and masked values are masked (never a made-up number);
    numbers given as strings or Decimals are read; columns nobody gave are all masked;
    a column with nothing missing is a plain Column."""
    from decimal import Decimal

    from astropy.table import Column, MaskedColumn

    t = lightcurve_table(
        {
            "mjd": [59000.0, 59001.0, 59002.0, 59003.0],
            "mag": [np.ma.masked, float("inf"), Decimal("12.5"), np.float32(3.0)],
            "zero_point": ["31.2", None, 1, float("nan")],
            "error_factor": np.ma.MaskedArray([1.0, 2.0, 3.0, 4.0], mask=[0, 1, 0, 0]),
            "object_id": [1, None, float("nan"), 4],
            "ref_id": np.array([1, 2, 3, 4]),
        }
    )
    assert list(t["mag"].mask) == [True, True, False, False]
    mag = np.ma.getdata(t["mag"])
    assert list(mag[2:]) == [12.5, 3.0] and np.isnan(mag[:2]).all()  # filled with NaN
    assert list(t["zero_point"].mask) == [False, True, False, True]
    assert t["zero_point"][0] == 31.2 and t["zero_point"][2] == 1.0
    assert list(t["error_factor"].mask) == [False, True, False, False]
    assert list(t["object_id"].mask) == [False, True, True, False]
    assert type(t["ref_id"]) is Column and t["ref_id"].dtype == np.int64
    assert type(t["quality"]) is MaskedColumn and t["quality"].mask.all()
    assert t["mag"].unit == "mag" and t["mag"].meta["ucd"] == "phot.mag"
    assert t["time"].info.description.startswith("time of the point")
    empty = lightcurve_table({})
    assert len(empty) == 0 and empty.colnames == t.colnames
    assert all(type(empty[c]) is Column for c in empty.colnames if c != "time")
