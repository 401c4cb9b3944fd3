"""The archive commands through the command line.

Exit codes, terminals (progress, confirmation) and the refusal without one are
checked on the real ``python -m photdb`` in a subprocess; the many output
checks run the same ``main()`` in-process (``invoke``), because each fresh
interpreter spends seconds importing astropy.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys

import numpy as np
import pytest
from astropy.table import Table

from photdb.api import get_lightcurve
from photdb.archive.tests.fitsfactory import write_garbage, write_maxim, write_nina
from photdb.archive.tests.test_delete import snapshot
from photdb.archive.tests.test_query import SSCYG_GAIA, TYC, _objects, populate
from photdb.db import connect


@pytest.fixture
def env(db_settings, tmp_path):
    """Environment that points the CLI at this test's database."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "PHOTDB_"))}
    e.update(
        PHOTDB_HOME=str(db_settings.home),
        DB_NAME=db_settings.dbname,
        PHOTDB_ENV_FILE=str(tmp_path / "none.env"),
        COLUMNS="220",
        NO_COLOR="1",
    )
    return e


@pytest.fixture
def invoke(db_settings, monkeypatch, capsys):
    """Run ``photdb ARGS`` in this process; return (exit code, stdout, stderr)."""
    from photdb.cli import console, err_console, main

    monkeypatch.setenv("DB_NAME", db_settings.dbname)
    monkeypatch.delenv("DB_HOST", raising=False)
    monkeypatch.setattr(console, "_width", 220)
    monkeypatch.setattr(err_console, "_width", 220)

    def _invoke(*args):
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["photdb", *map(str, args)])
        with pytest.raises(SystemExit) as stop:
            main()
        out = capsys.readouterr()
        code = stop.value.code
        return (0 if code is None else code), out.out, out.err

    return _invoke


def run(env, *args, stdin=subprocess.DEVNULL, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "photdb", *map(str, args)],
        env=env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def run_tty(env, *args, answer: bytes):
    """Run on a pseudo-terminal, answer the first prompt, return (exit code, output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "photdb", *args],
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    out, answered = b"", False
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                proc.kill()
                raise AssertionError(f"no output: {out!r}")
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if not answered and b"[y/N]" in out:
                os.write(master, answer)
                answered = True
    finally:
        os.close(master)
    return proc.wait(timeout=30), out.decode(errors="replace")


def _read(path, fmt):
    return Table.read(path, format={"csv": "ascii.csv", "ecsv": "ascii.ecsv"}.get(fmt, fmt))


def test_lightcurve_and_cone(env, invoke, db_settings, tmp_path):
    populate(db_settings, tmp_path)
    with connect("readonly", settings=db_settings) as conn:
        truth = get_lightcurve(conn, object="VY UMi")
    assert set(truth["source"]) == {"archive", "pipeline"}
    # the real command: VOTable by file suffix, and a sexagesimal cone
    r = run(env, "lightcurve", "TYC 4568-471-1", "--output", tmp_path / "lc.xml")
    assert r.returncode == 0, r.stderr
    r = run(env, "cone", "21:42:42.96", "+43:35:10.32", "6arcmin")
    assert r.returncode == 0, r.stderr
    cones = {"6arcmin": r.stdout}
    for args in (
        ["-o", tmp_path / "lc.csv"],
        ["--format", "ecsv", "--output", tmp_path / "lc.ecsv"],
    ):
        code, _, err = invoke("lightcurve", "TYC 4568-471-1", *args)
        assert code == 0, err
    for fmt, name in (("votable", "lc.xml"), ("csv", "lc.csv"), ("ecsv", "lc.ecsv")):
        back = _read(tmp_path / name, fmt)
        kept = truth.colnames if fmt == "ecsv" else truth.colnames[1:]  # Time: ECSV only
        assert back.colnames == kept and len(back) == len(truth) == 4, fmt
        assert np.allclose(back["mjd"], truth["mjd"], rtol=0, atol=1e-9)
        assert np.allclose(back["jd"], truth["jd"], rtol=0, atol=1e-9)
        assert list(back["iso"]) == list(truth["iso"])
        assert list(back["source"]) == list(truth["source"])
    # by position, JD only, CSV on stdout
    code, out, err = invoke(
        "lightcurve",
        "--ra",
        TYC.ra.to_string("hourangle", sep=":", precision=4),
        "--dec",
        TYC.dec.to_string(sep=":", precision=3, alwayssign=True),
        "--radius",
        '2"',
        "--format",
        "csv",
        "--time",
        "jd",
    )
    assert code == 0, err
    t = Table.read(out, format="ascii.csv")
    assert "jd" in t.colnames and "mjd" not in t.colnames and "iso" not in t.colnames
    assert np.allclose(np.sort(t["jd"]), np.sort(truth["jd"]), rtol=0, atol=1e-8)
    # on screen, by Gaia id; an unknown name is one line and exit 1
    code, out, _ = invoke("lightcurve", SSCYG_GAIA)
    assert code == 0 and "3 points" in out and "KOL-SS" in out and "2459510.3" in out
    code, _, err = invoke("lightcurve", "Nobody")
    assert code == 1 and err.strip().count("\n") == 0 and "no object" in err
    # cone: nearest first, in three units
    order = ["1972957892448494592", "1972957308333789312", "1972957690592232192"]
    for args in (("325.679", "43.5862", "30arcsec"), ("325.679d", "43.5862", "0.1deg")):
        code, cones[args[2]], err = invoke("cone", *args)
        assert code == 0, err
    for radius, n in (("30arcsec", 2), ("6arcmin", 3), ("0.1deg", 3)):
        out = cones[radius]
        found = [g for g in order if g in out]
        assert found == order[:n] and f"{n} objects" in out, radius
        positions = [out.index(g) for g in found]
        assert positions == sorted(positions)  # nearest first
    code, out, err = invoke("cone", "10", "-5:30:00", "1deg")  # a negative Dec is no option
    assert code == 0 and "0 objects" in out, err
    code, _, err = invoke("cone", "10", "10", "3 parsec")
    assert code == 1 and "radius" in err and err.strip().count("\n") == 0


def test_delete_asks_and_refuses(env, invoke, db_settings, tmp_path):
    populate(db_settings, tmp_path)
    with connect("readonly", settings=db_settings, autocommit=True) as conn:
        before = snapshot(conn)
        # no terminal, no --yes: refused, one line, nothing changed
        r = run(env, "delete", "object", "SS Cyg")
        assert r.returncode == 1 and "--yes" in r.stderr
        assert r.stderr.strip().count("\n") == 0 and "lightcurves" in r.stdout
        assert snapshot(conn) == before
        # on a terminal, declined
        code, out = run_tty(env, "delete", "night", "2021-10-22", answer=b"n\n")
        assert code == 1 and "nothing deleted" in out and "observations" in out
        assert snapshot(conn) == before
        # on a terminal, accepted
        code, out = run_tty(env, "delete", "datasource", "KOL-SS", answer=b"y\n")
        assert code == 0 and "deleted 7 rows" in out, out
        after = snapshot(conn)
        assert before["lightcurves"] - after["lightcurves"] == 3
        assert before["metadata_lc_json"] - after["metadata_lc_json"] == 3
        assert before["datasources"] - after["datasources"] == 1
        assert {
            k: v
            for k, v in after.items()
            if k not in ("lightcurves", "metadata_lc_json", "datasources")
        } == {
            k: v
            for k, v in before.items()
            if k not in ("lightcurves", "metadata_lc_json", "datasources")
        }
        # --yes: no question
        code, out, err = invoke("delete", "observation", "a_r.fit", "--yes")
        assert code == 0 and "deleted" in out, err
        gone = snapshot(conn)
        assert after["observations"] - gone["observations"] == 1
        assert after["galexposures"] - gone["galexposures"] == 1
        code, out, _ = invoke("delete", "night", "1999-01-01")
        assert code == 0 and "nothing to delete" in out
        code, _, err = invoke("delete", "object", "Nobody", "--yes")
        assert code == 1 and "no object" in err


def test_ingest_and_loads(env, invoke, db_settings, tmp_path):
    folder = tmp_path / "night"
    folder.mkdir()
    write_maxim(folder / "a_r.fit")
    write_nina(folder / "nina.fits")
    write_garbage(folder / "broken.fits")
    with connect("readonly", settings=db_settings, autocommit=True) as conn:
        r = run(env, "ingest", folder)
        assert r.returncode == 1, r.stderr
        assert "2 ingested, 0 already present, 1 failed" in r.stdout
        failures = [ln for ln in r.stderr.splitlines() if "failed" in ln]
        assert len(failures) == 1 and "broken.fits" in failures[0], r.stderr
        assert snapshot(conn)["observations"] == 2
        code, out, _ = invoke("ingest", folder)
        assert code == 1 and "0 ingested, 2 already present, 1 failed" in out
        (folder / "broken.fits").unlink()
        write_maxim(folder / "c_r.fit", seed=3)
        code, out, _ = invoke("ingest", folder, "--dry-run")
        assert code == 0 and "1 would be ingested, 2 already present, 0 failed" in out
        assert snapshot(conn)["observations"] == 2
        code, out, _ = invoke("ingest", folder)
        assert code == 0 and "1 ingested, 2 already present, 0 failed" in out
        code, _, err = invoke("ingest", tmp_path / "missing")
        assert code == 1 and "no such file" in err
        # catalogue and light-curve uploads
        _objects().write(tmp_path / "objects.ecsv")
        code, out, err = invoke("objects", "load", tmp_path / "objects.ecsv", "--match-radius", "2")
        assert code == 0 and "5 inserted" in out, err
        Table(
            {
                "time": [2459510.3, 2459510.4],
                "mag": [12.0, 12.1],
                "err": [0.01, 0.01],
                "star": ["SS Cyg"] * 2,
            }
        ).write(tmp_path / "lc.csv")
        code, out, err = invoke(
            "lightcurves",
            "load",
            tmp_path / "lc.csv",
            "--datasource",
            "KOL",
            "--band",
            "V",
            "--time-format",
            "jd",
        )
        assert code == 0 and "2 inserted" in out, err
        lc = get_lightcurve(conn, object="SS Cyg")
        assert lc["jd"].tolist() == pytest.approx([2459510.3, 2459510.4], abs=1e-8)
        Table({"jd": [2459510.5], "mag": [12.0], "err": [0.01]}).write(tmp_path / "lc2.csv")
        code, out, err = invoke(
            "lightcurves",
            "load",
            tmp_path / "lc2.csv",
            "--object",
            "Nobody",
            "--datasource",
            "KOL",
            "--band",
            "V",
        )
        assert code == 1 and "0 inserted" in out and "1 refused" in out
        assert "row 1: object 'Nobody' not found in objects; refused" in err
        # the same file twice adds nothing and says so
        code, out, err = invoke(
            "lightcurves", "load", tmp_path / "lc.csv", "--datasource", "KOL", "--band", "V",
            "--time-format", "jd",
        )  # fmt: skip
        assert code == 0 and "0 inserted, 2 already present" in out and "nothing new" in out
        assert len(get_lightcurve(conn, object="SS Cyg")) == 2


def test_warnings_are_counted_and_shown_with_verbose(invoke, tmp_path):
    from photdb.archive.tests.corpus import frame

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        # no WCS and no pointing: coordequ is left empty, and the user is told why
        frame(tmp_path / name / "nopointing.fits", [], wcs=False, seed=ord(name))
    code, out, err = invoke("ingest", tmp_path / "a")
    assert code == 0 and "1 ingested" in out and "1 warning (--verbose shows each)" in out
    assert "coordequ left empty" not in err
    code, out, err = invoke("--verbose", "ingest", tmp_path / "b")
    assert code == 0 and "1 ingested" in out and "1 warning (1 files" in out
    line = "nopointing.fits: HDU 0: no usable WCS or pointing coordinates: coordequ left empty"
    assert line in err
