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
