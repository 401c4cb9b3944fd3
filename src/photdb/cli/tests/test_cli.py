"""The command line's conventions, and ``photdb diffphot`` on stellarphot's real EY UMa night.

Real ``python -m photdb`` processes (output is not a terminal there: tables must come
out whole) against a fresh database of the session's cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import typer.main
from astropy.table import Table

from photdb.archive.tests.test_query import populate
from photdb.db import connect
from photdb.tests.test_diffphot import _data_dir


@pytest.fixture
def env(db_settings, tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "PHOTDB_", "COLUMNS"))}
    e.update(PHOTDB_HOME=str(db_settings.home), DB_NAME=db_settings.dbname,
             PHOTDB_ENV_FILE=str(tmp_path / "none.env"), NO_COLOR="1")  # fmt: skip
    return e


@pytest.fixture
def invoke(db_settings, monkeypatch, capsys):
    """Run ``photdb ARGS`` in this process (a fresh interpreter costs seconds of imports);
    return (exit code, stdout, stderr)."""
    from photdb.cli import main

    monkeypatch.setenv("DB_NAME", db_settings.dbname)
    monkeypatch.delenv("DB_HOST", raising=False)

    def _invoke(*args):
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["photdb", *map(str, args)])
        with pytest.raises(SystemExit) as stop:
            main()
        out = capsys.readouterr()
        return (0 if stop.value.code is None else stop.value.code), out.out, out.err

    return _invoke


def run(env, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "photdb", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=cwd)  # fmt: skip


def test_short_options_have_one_meaning_and_help_has_examples():
    from photdb.cli import _register, app
    from photdb.tests.test_layers import _walk

    _register()
    meaning: dict[str, set[str]] = {}
    for name, cmd in _walk(typer.main.get_command(app)):
        if hasattr(cmd, "commands"):
            continue
        assert "example" in (cmd.help or "").lower(), f"`{name}` help has no example"
        for p in cmd.params:
            for opt in getattr(p, "opts", []) + getattr(p, "secondary_opts", []):
                if opt.startswith("-") and not opt.startswith("--"):
                    long = max(p.opts, key=len)
                    meaning.setdefault(opt, set()).add(long)
    allowed = {"-o": {"--output", "--outdir"}, "-j": {"--jobs", "--workers"}}
    for short, longs in meaning.items():
        assert len(longs) == 1 or longs <= allowed.get(short, set()), (short, longs)
    assert meaning["-f"] == {"--filter"}


def test_radius_json_and_full_tables(env, invoke, db_settings, tmp_path):
    populate(db_settings, tmp_path)
    # a bare radius is arcsec in both commands; units are accepted
    a = json.loads(invoke("cone", "325.679", "43.5862", "360", "--json")[1])
    b = json.loads(invoke("cone", "325.679", "43.5862", "6arcmin", "--json")[1])
    c = json.loads(invoke("cone", "325.679", "43.5862", "0.1deg", "--json")[1])
    assert len(a["rows"]) == len(b["rows"]) == len(c["rows"]) == 3
    assert a["columns"]["dist_arcsec"] == "arcsec" and a["rows"][0]["gaia_name"]
    one = json.loads(invoke("lightcurve", "VY UMi", "--radius", "1", "--json")[1])
    same = json.loads(invoke("lightcurve", "VY UMi", "--radius", "1arcsec", "--json")[1])
    assert same["rows"] == one["rows"] and len(one["rows"]) == 4
    assert one["meta"]["object_name"] == "TYC 4568-471-1"
    code, _, err = invoke("lightcurve", "VY UMi", "--radius", "3 parsec")
    assert code == 1 and "radius" in err and err.strip().count("\n") == 0
    # plot and AAVSO by suffix
    code, _, err = invoke("lightcurve", "SS Cyg", "-o", tmp_path / "ss.txt", "--plot",
                          tmp_path / "ss.png")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "ss.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "ss.txt").read_text().startswith("#TYPE=EXTENDED\n")
    code, out, _ = invoke("variables", "--json")
    assert code == 0 and json.loads(out)["candidates"] == []
    assert json.loads(out)["reference_outliers"] == []
    code, out, _ = invoke("stats", "rebuild")
    assert code == 0 and "statistics of 0 reference source(s) rebuilt" in out
    # the real command, piped: the table is complete, every column and no cut cell
    r = run(env, "lightcurve", "VY UMi")
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stdout and "mag_err" in r.stdout and "filename" in r.stdout


def test_diffphot_command_on_ey_uma(env, invoke, db_settings, tmp_path):
    data = _data_dir()
    phot = Table.read(data / "2014-12-29-ey-uma-9.fits")
    comps = Table.read(data / "comp_stars.fits")
    comps = comps[comps["band"] == "Rc"]
    var = Table.read(data / "variables.fits")
    from astropy.coordinates import SkyCoord

    stars = phot.group_by("star_id")
    ids = np.array([g["star_id"][0] for g in stars.groups])
    pos = SkyCoord([np.nanmean(g["RA"]) for g in stars.groups],
                   [np.nanmean(g["Dec"]) for g in stars.groups], unit="deg")  # fmt: skip
    idx, sep, _ = SkyCoord(comps["ra"], comps["dec"], unit="deg").match_to_catalog_sky(pos)
    ok = sep.arcsec < 2
    Table({"star": ids[idx[ok]], "name": comps["auid"][ok], "mag": comps["mag"][ok]}).write(
        tmp_path / "comps.ecsv"
    )
    target = int(ids[np.argmin(SkyCoord(var["RAJ2000"][0], var["DEJ2000"][0],
                                        unit="deg").separation(pos))])  # fmt: skip
    Table({"ra": [var["RAJ2000"][0]], "dec": [var["DEJ2000"][0]], "vsx_name": ["EY UMa"]}).write(
        tmp_path / "obj.ecsv"
    )
    assert invoke("objects", "load", tmp_path / "obj.ecsv")[0] == 0
    args = ["diffphot", data / "2014-12-29-ey-uma-9.fits", "--target", target, "--object",
            "EY UMa", "--band", "Rc", "--datasource", "stellarphot", "--comp-catalog",
            tmp_path / "comps.ecsv", "--mag-col", "mag_inst_R"]  # fmt: skip
    r = run(env, *args)
    assert r.returncode == 0, r.stderr
    assert "94 points of EY UMa loaded" in r.stdout and "11 comparison stars" in r.stdout
    with connect("readonly", db_settings) as conn:
        rows = conn.execute(
            "SELECT l.magnitude, m.data FROM lightcurves l JOIN metadata_lc_json m"
            " ON m.lightcurve_id = l.id JOIN objects o ON o.id = l.object_id"
            " WHERE o.vsx_name = 'EY UMa'"
        ).fetchall()
    assert len(rows) == 94
    meta = rows[0][1]
    assert len(meta["comp_stars"]) == 11 and meta["num_comp"] == 11 and meta["differential"] == 1
    assert meta["exp_time"] > 0 and "aver_comp" in meta
    assert meta["type_calib"].startswith("ensemble")
    assert 14.0 < float(np.median([float(m) for m, _ in rows])) < 15.0
    # a missing column: one line, nothing loaded
    code, _, err = invoke(*args[:-1], "no_such_column")
    assert code == 1 and "no column" in err and err.strip().count("\n") == 0
    with connect("readonly", db_settings) as conn:
        assert conn.execute("SELECT count(*) FROM lightcurves").fetchone()[0] == 94
