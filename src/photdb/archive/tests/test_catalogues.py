"""Object lists in four formats, loaded twice: the second load adds nothing."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.coordinates import Angle
from astropy.table import Table

from photdb.archive.catalogues import load_objects, read_object_table
from photdb.db import connect

SS_CYG = (325.679, 43.5862)
#: The archive document's cone-search answer: Gaia ids and distances [rad] from SS Cyg.
NEIGHBOURS = {
    "1972957308333789312": 0.00017514574622243208,
    "1972957690592232192": 0.00022790859998570036,
}


def objects_table() -> Table:
    """SS Cyg, its two Gaia neighbours (straight north), a star 0.2 deg off, and a TYC star."""
    ra, dec = SS_CYG
    rows = [
        ("Gaia DR3 1972957892448494592", "V* SS Cyg", "SS Cyg", ra, dec, "UGSS", "dwarf nova"),
        *(
            (f"Gaia DR3 {g}", "", "", ra, dec + np.degrees(d), "", "")
            for g, d in NEIGHBOURS.items()
        ),
        ("Gaia DR3 1972960000000000001", "", "", ra, dec + 0.2, "", "outside the cone"),
        ("Gaia DR3 1650000000000000001", "TYC 4568-471-1", "", 259.95, 76.70, "EA", ""),
    ]
    names = ("source_id", "main_id", "vsx_name", "RAJ2000", "DEJ2000", "class", "description")
    return Table(rows=rows, names=names)


def write_formats(tmp_path) -> dict[str, object]:
    t = objects_table()
    paths = {}
    paths["fits"] = tmp_path / "objs.fits"
    t.write(paths["fits"])
    paths["ecsv"] = tmp_path / "objs.ecsv"
    t.write(paths["ecsv"])
    paths["vot"] = tmp_path / "objs.xml"
    t.write(paths["vot"], format="votable")
    csv = t.copy()  # sexagesimal, RA in hours, and bare Gaia ids
    csv["RAJ2000"] = [
        Angle(v, "deg").to_string("hourangle", sep=":", precision=4) for v in t["RAJ2000"]
    ]
    csv["DEJ2000"] = [
        Angle(v, "deg").to_string("deg", sep=":", precision=3, alwayssign=True)
        for v in t["DEJ2000"]
    ]
    csv["source_id"] = [s.split()[-1] for s in t["source_id"]]
    paths["csv"] = tmp_path / "objs.csv"
    csv.write(paths["csv"])
    return paths


@pytest.mark.parametrize("fmt", ["csv", "ecsv", "vot", "fits"])
def test_read_object_table_formats(tmp_path, fmt):
    t = read_object_table(write_formats(tmp_path)[fmt])
    assert len(t) == 5
    assert t["gaia_name"][0] == "1972957892448494592" and t["simbad_name"][0] == "V* SS Cyg"
    assert t["vsx_name"][0] == "SS Cyg" and t["class"][0] == "UGSS"
    assert t["vsx_name"][1] is None  # empty strings are missing values
    assert t["ra"][0] == pytest.approx(SS_CYG[0], abs=1e-6)
    assert t["dec"][4] == pytest.approx(76.70, abs=1e-6)


def test_load_objects_dedup(tmp_path, db_settings):
    paths = write_formats(tmp_path)
    with connect("writer", settings=db_settings) as conn:
        first = load_objects(conn, read_object_table(paths["csv"]))
        assert (first.inserted, first.updated, first.unchanged) == (5, 0, 0)
        for fmt in ("ecsv", "vot", "fits"):
            again = load_objects(conn, read_object_table(paths[fmt]))
            assert (again.inserted, again.updated, again.unchanged) == (0, 0, 5), fmt
        # by position only (no Gaia id): fills in the missing name, inserts nothing
        extra = Table(
            {
                "ra": [SS_CYG[0] + 0.2 / 3600],
                "dec": [SS_CYG[1]],
                "ucac4_name": ["669-094001"],
                "vsx_name": ["SS Cygni"],
            }
        )
        path = tmp_path / "extra.ecsv"
        extra.write(path)
        rep = load_objects(conn, read_object_table(path), match_radius_arcsec=1.0)
        assert (rep.inserted, rep.updated) == (0, 1)
        row = conn.execute(
            "SELECT ucac4_name, vsx_name FROM objects WHERE gaia_name = '1972957892448494592'"
        ).fetchone()
        assert row == ("669-094001", "SS Cyg")  # filled, never overwritten
        # beyond the radius it is a new object
        rep = load_objects(conn, read_object_table(path), match_radius_arcsec=0.1)
        assert rep.inserted == 1
        assert conn.execute("SELECT count(*) FROM objects").fetchone()[0] == 6
