"""Ensemble differential photometry on stellarphot's real EY UMa night (2014-12-29, R band).

The photometry table has 41 stars in 94 frames; ``comp_stars.fits`` is the
AAVSO comparison sequence and ``variables.fits`` VSX's entry for EY UMa. The
data files ship with stellarphot (``pip install --no-deps stellarphot``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table

from photdb.archive.catalogues import load_objects
from photdb.archive.lightcurves import load_lightcurves
from photdb.db import connect
from photdb.diffphot import differential_photometry


def _data_dir() -> Path:
    spec = importlib.util.find_spec("stellarphot")
    assert spec is not None, "stellarphot's test data is needed: pip install --no-deps stellarphot"
    return Path(spec.submodule_search_locations[0]) / "differential_photometry/tests/data"


@pytest.fixture(scope="module")
def ey_uma():
    data = _data_dir()
    phot = Table.read(data / "2014-12-29-ey-uma-9.fits")
    comps = Table.read(data / "comp_stars.fits")
    comps = comps[comps["band"] == "Rc"]
    var = Table.read(data / "variables.fits")
    stars = phot.group_by("star_id")
    ids = np.array([g["star_id"][0] for g in stars.groups])
    pos = SkyCoord(
        [np.nanmean(g["RA"]) for g in stars.groups],
        [np.nanmean(g["Dec"]) for g in stars.groups],
        unit="deg",
    )
    idx, sep, _ = SkyCoord(comps["ra"], comps["dec"], unit="deg").match_to_catalog_sky(pos)
    matched = sep.arcsec < 2
    comp = {
        int(ids[j]): (str(a), float(m))
        for j, a, m, ok in zip(idx, comps["auid"], comps["mag"], matched, strict=True)
        if ok
    }
    target_sep = SkyCoord(var["RAJ2000"][0], var["DEJ2000"][0], unit="deg").separation(pos)
    assert target_sep.min().arcsec < 2
    target = int(ids[np.argmin(target_sep)])
    return phot, comp, target, var


def _run(phot, comp, target, candidates):
    return differential_photometry(
        phot,
        target,
        candidates,
        frame_col="file",
        mag_col="mag_inst_R",
        err_col="mag_error",
        catalog_mags={k: v[1] for k, v in comp.items()},
        names={k: v[0] for k, v in comp.items()},
    )


def test_ey_uma_light_curve(ey_uma):
    phot, comp, target, _ = ey_uma
    assert len(comp) == 11 and target not in comp
    result = _run(phot, comp, target, [*comp, target])  # the target offered as a comp too
    lc = result.lightcurve
    assert len(lc) == 94
    assert result.rejected == {str(target): "the target"}
    assert set(result.comp_stars) == {v[0] for v in comp.values()}
    assert set(lc["num_comp"]) == {11}
    assert lc["comp_stars"][0].split(",") == list(result.comp_stars)
    # the three brightest comparison stars, each against the other ten, are constant to < 1 %
    bright = sorted(comp.values(), key=lambda v: v[1])[:3]
    assert max(result.comp_scatter[a] for a, _ in bright) < 0.01
    assert max(result.comp_chi2.values()) < 3
    # EY UMa (R ~ 14.5) varies far beyond comparison stars of its brightness
    similar = [result.comp_scatter[a] for a, m in comp.values() if 14.0 < m < 14.6]
    binned = [np.median(lc["magnitude"][i : i + 8]) for i in range(0, 94, 8)]
    assert np.ptp(binned) > 0.2 and np.std(lc["magnitude"]) > 2 * max(similar)
    assert 14.0 < np.median(lc["magnitude"]) < 15.0
    assert np.allclose(lc["magnitude"] - lc["mag_diff"], lc["aver_comp"])


def test_variable_comparison_star_is_rejected(ey_uma):
    phot, comp, target, _ = ey_uma
    brightest = min(comp, key=lambda k: comp[k][1])
    result = differential_photometry(
        phot,
        brightest,
        [c for c in comp if c != brightest] + [target],
        frame_col="file",
        mag_col="mag_inst_R",
        err_col="mag_error",
    )
    assert list(result.rejected) == [str(target)] and "variable" in result.rejected[str(target)]
    assert str(target) not in result.comp_stars and len(result.comp_stars) == 10
    assert np.isnan(result.lightcurve["magnitude"]).all()  # no catalogue magnitudes given


def test_ey_uma_into_database(ey_uma, db_settings):
    phot, comp, target, var = ey_uma
    result = _run(phot, comp, target, list(comp))
    lc = result.lightcurve
    times = {f: d for f, d in zip(phot["file"], phot["date-obs"], strict=True)}
    exptime = float(phot["exposure"][0])
    table = Table(
        {
            "dateobs": [times[f] for f in lc["frame"]],
            "filename": lc["frame"],
            "magnitude": lc["magnitude"],
            "mag_err": lc["mag_err"],
            "mag_diff": lc["mag_diff"],
            "mag_diff_err": lc["mag_diff_err"],
            "comp_stars": lc["comp_stars"],
            "num_comp": lc["num_comp"],
            "aver_comp": lc["aver_comp"],
            "exp_time": [exptime] * len(lc),
            "differential": [1] * len(lc),
        }
    )
    objects = Table(
        {
            "ra": [var["RAJ2000"][0]],
            "dec": [var["DEJ2000"][0]],
            "vsx_name": ["EY UMa"],
            "class": [str(var["Type"][0])],
            **{
                k: [None]
                for k in ("gaia_name", "simbad_name", "ucac4_name", "apass_name", "description")
            },
        }
    )
    with connect("writer", settings=db_settings) as conn:
        assert load_objects(conn, objects).inserted == 1
        rep = load_lightcurves(conn, table, datasource="stellarphot", band="Rc", object="ey uma")
        assert rep.inserted == 94  # the frames themselves are not in observations:
        assert len(rep.messages) == 94 and all("not found" in m for m in rep.messages)
        label = comp[min(comp, key=lambda k: comp[k][1])][0]
        (n,) = conn.execute(
            "SELECT COUNT(lightcurve_id) FROM metadata_lc_json WHERE"
            f" '\"{label}\"' <@ (data->'comp_stars')"
        ).fetchone()
        assert n == 94
        (n,) = conn.execute(
            "SELECT COUNT(lightcurve_id) FROM metadata_lc_json WHERE"
            " '\"000-BBQ-208\"' <@ (data->'comp_stars')"
        ).fetchone()
        assert n == 0  # matched no star in the field, so never used
        row = conn.execute(
            "SELECT min(l.magnitude), max(l.magnitude), p.band, d.progid, m.data->'num_comp'"
            " FROM lightcurves l JOIN photosys p ON p.id = l.photosys_id"
            " JOIN datasources d ON d.id = l.datasource_id"
            " JOIN metadata_lc_json m ON m.lightcurve_id = l.id"
            " WHERE l.object_id = (SELECT id FROM objects WHERE vsx_name = 'EY UMa')"
            " GROUP BY p.band, d.progid, m.data->'num_comp'"
        ).fetchall()
        assert len(row) == 1 and row[0][2:] == ("R", "stellarphot", 11)
        assert float(row[0][1]) - float(row[0][0]) == pytest.approx(
            np.ptp(lc["magnitude"]), abs=2e-4
        )
