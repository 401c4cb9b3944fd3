"""The pages, downloads, stamps and the Python API against the real server (httpx).

Every parameter of every page route is fuzzed with values it cannot take: each
answer is a 4xx with one readable line, never a traceback, and the database is
exactly as before.
"""

from __future__ import annotations

import io
import re
import time

import httpx
import numpy as np
import pytest
from astropy.table import Table
from astropy.time import Time

from photdb.db import connect


def _get(web, path, **params):
    return httpx.get(web.base + path, params=params, timeout=30, follow_redirects=False)


@pytest.fixture(scope="module")
def facts(web):
    """Ids the tests need, read straight from the database."""
    with connect("readonly", web.settings) as conn:
        top = conn.execute(
            "SELECT refsource_id, count(*) FROM galvarobjs WHERE refsource_id NOT IN"
            " (SELECT refsource_id FROM galrefstats WHERE ref_outlier)"
            " GROUP BY 1 HAVING count(*) >= 2 ORDER BY 2 DESC, 1 LIMIT 1"
        ).fetchone()
        n_forced = conn.execute("SELECT count(*) FROM galsources WHERE ref_id = %s",
                                [top[0]]).fetchone()[0]  # fmt: skip
        ss = conn.execute("SELECT id FROM objects WHERE vsx_name = 'SS Cyg'").fetchone()[0]
        outlier = conn.execute("SELECT min(refsource_id) FROM galrefstats WHERE ref_outlier"
                               ).fetchone()[0]  # fmt: skip
    return {"top": int(top[0]), "ndet": int(top[1]), "n_forced": int(n_forced), "sscyg": ss,
            "outlier": outlier}  # fmt: skip


def test_home_and_search(web, facts):
    r = _get(web, "/")
    assert r.status_code == 200 and "By reference source" in r.text
    r = _get(web, "/search", q="SS Cyg")
    assert r.status_code == 303 and r.headers["location"] == f"/lightcurve?object={facts['sscyg']}"
    r = _get(web, "/search", refsource=facts["top"])
    assert r.status_code == 303 and r.headers["location"].endswith(f"refsource={facts['top']}")
    r = _get(web, "/search", q="21:42:43 +43:35:10")
    assert r.status_code == 303 and r.headers["location"].startswith("/cone?")
    r = _get(web, "/cone", ra="325.679", dec="43.5862", radius="0.04deg")
    assert r.status_code == 200
    assert r.text.count("/lightcurve?object=") == 2  # SS Cyg and its 20" neighbour, not 180"
    r = _get(web, "/search", q="Nobody")
    assert r.status_code == 200 and "Archive objects (0)" in r.text


def test_lightcurve_page_by_object_and_refsource(web, facts):
    r = _get(web, "/lightcurve", object="SS Cyg")
    assert r.status_code == 200
    assert "V (Johnson)" in r.text and "Vega" in r.text and "KOL-SS" in r.text
    assert 'data-points="3"' in r.text
    r = _get(web, "/lightcurve", refsource=facts["top"])
    assert r.status_code == 200
    # its reference row, its forced points, and the other filter's star (cross-filter)
    n = int(re.search(r'data-points="(\d+)"', r.text).group(1))
    assert n >= facts["n_forced"] + 1
    assert "g (DECam)" in r.text and "r (DECam)" in r.text and "AB" in r.text
    assert "reference image" in r.text and "χ²/ν factor" in r.text
    for fmt in ("aavso", "csv", "ecsv", "votable", "parquet"):
        assert f'data-format="{fmt}"' in r.text


def test_downloads_in_every_format(web, facts):
    import pyarrow.parquet as pq

    from photdb.api import fetch_lightcurve

    truth = fetch_lightcurve(refsource=facts["top"], settings=web.settings)
    q = {"refsource": facts["top"]}
    got = {}
    for fmt in ("csv", "ecsv", "votable", "parquet", "aavso"):
        r = _get(web, f"/lightcurve.{fmt}", **q)
        assert r.status_code == 200, r.text
        assert f'filename="ref{facts["top"]}' in r.headers["content-disposition"]
        got[fmt] = r.content
    csv = Table.read(got["csv"].decode(), format="ascii.csv")
    ecsv = Table.read(got["ecsv"].decode(), format="ascii.ecsv")
    vot = Table.read(io.BytesIO(got["votable"]), format="votable")
    par = pq.read_table(io.BytesIO(got["parquet"]))
    for t in (csv, ecsv, vot):
        assert len(t) == len(truth) and np.allclose(t["mjd"], truth["mjd"], atol=1e-9, rtol=0)
    assert par.num_rows == len(truth)
    assert isinstance(ecsv["time"], Time) and ecsv["time"].scale == "utc"
    assert ecsv.meta["ra"] == pytest.approx(truth.meta["ra"]) and str(ecsv["mag"].unit) == "mag"
    xml = got["votable"].decode()
    assert 'ucd="phot.mag"' in xml and "<TIMESYS" in xml and 'name="ra"' in xml
    assert par.schema.field("mag").metadata[b"ucd"] == b"phot.mag"
    lines = got["aavso"].decode().splitlines()
    assert lines[0] == "#TYPE=EXTENDED" and "#DATE=JD" in lines
    body = [ln for ln in lines if not ln.startswith("#")]
    assert len(body) == int(np.isfinite(np.ma.filled(truth["mag"], np.nan)).sum())
    assert all(ln.split(",")[4] in ("SG", "SR") for ln in body)


def test_candidates_page_and_stamps(web, facts):
    r = _get(web, "/candidates")
    assert r.status_code == 200
    assert "Repeated Detections" in r.text and "Number of Objects" in r.text
    assert f'href="/lightcurve?refsource={facts["top"]}"' in r.text
    if facts["outlier"] is not None:  # shown apart, after the candidates, never among them
        cands, _, outl = r.text.partition('id="reference-outliers"')
        assert f'refsource={facts["outlier"]}"' in outl
        assert f'refsource={facts["outlier"]}"' not in cands
    stamps = re.findall(r'src="(/stamp/\d+\.png)"', r.text)
    assert len(stamps) >= 2
    for url in stamps[:2]:
        s = httpx.get(web.base + url, timeout=30)
        assert s.status_code == 200 and s.content.startswith(b"\x89PNG")
    r = _get(web, "/candidates", min_repeats=99)
    assert r.status_code == 200 and "0 candidates" in r.text
    r = _get(web, "/candidates", mag_min=0, mag_max=1)
    assert "0 candidates" in r.text
    r = _get(web, "/stamp/999999999.png")
    assert r.status_code == 404 and r.text.count("\n") == 1


def test_images_page(web):
    r = _get(web, "/images")
    assert r.status_code == 200
    with connect("readonly", web.settings) as conn:
        done = conn.execute("SELECT count(*) FROM galimages WHERE status = 'done'").fetchone()[0]
    assert f"done: {done}" in r.text and "error factor" in r.text
    r = _get(web, "/images", status="failed")
    assert r.status_code == 200 and "c4d" not in r.text


def test_python_api(web, facts):
    from astropy.coordinates import SkyCoord

    import photdb

    lc = photdb.fetch_lightcurve("SS Cyg", settings=web.settings)
    assert isinstance(lc["time"], Time) and lc["time"].scale == "utc"
    assert lc.meta["object_name"] == "V* SS Cyg" and lc.meta["ra"] == pytest.approx(325.679)
    assert str(lc["mag"].unit) == "mag" and len(lc) == 3
    cone = photdb.cone("325.679 43.5862", "6arcmin", settings=web.settings)
    assert isinstance(cone["coord"], SkyCoord) and len(cone) == 3
    assert photdb.cone((325.679, 43.5862), 30, settings=web.settings)["dist_arcsec"].max() < 30
    cands = photdb.variable_candidates(settings=web.settings)
    assert int(cands["ndet"][0]) == facts["ndet"] and isinstance(cands["coord"], SkyCoord)
    assert facts["top"] in set(cands["refsource_id"][cands["ndet"] == facts["ndet"]])
    star = photdb.fetch_lightcurve(refsource=facts["top"], settings=web.settings)
    assert star.meta["refsource_ids"][0] == facts["top"] and len(set(star["band"])) == 2


# ------------------------------------------------------------------------------- fuzz

BAD = {
    "number": [
        "'",
        "1' OR '1'='1",
        "1;DROP TABLE objects",
        "NaN",
        "inf",
        "-inf",
        "1e999",
        "9" * 400,
        "0x1F",
        "½",
        "%00",
        "1:2:3:4",
    ],  # fmt: skip
    "radius": [
        "1e9deg",
        "NaN arcsec",
        "3 parsec",
        "-1arcsec",
        "'; DROP TABLE objects; --",
        "1" + "0" * 300,
        "inf",
        "2 furlongs",
        "x" * 200,
    ],  # fmt: skip
    "name": [
        "'; DROP TABLE objects; --",
        "x' OR '1'='1",
        "a" * 300,
        "<script>",
        "\x00",
        "$$x$$",
        "name;select",
    ],  # fmt: skip
}
#: route -> {parameter: kind}, with the other parameters set to good values
ROUTES = {
    "/lightcurve": ({"object": "name", "refsource": "number", "ra": "number", "dec": "number",
                     "radius": "radius"}, {"ra": "325.679", "dec": "43.5862"}),
    "/lightcurve.csv": ({"object": "name", "refsource": "number", "radius": "radius"},
                        {"object": "SS Cyg"}),
    "/cone": ({"ra": "number", "dec": "number", "radius": "radius"},
              {"ra": "325.679", "dec": "43.5862"}),
    "/candidates": ({"min_repeats": "number", "mag_min": "number", "mag_max": "number",
                     "ra": "number", "dec": "number", "radius": "radius", "filter": "name"},
                    {"ra": "271.5", "dec": "-28.9"}),
    "/search": ({"q": "name", "refsource": "number", "radius": "radius"},
                {"q": "21:42:43 +43:35:10"}),
    "/images": ({"status": "name", "filter": "name"}, {}),
    "/stamp/1.png": ({"size": "number"}, {}),
}  # fmt: skip


def _snapshot(settings) -> dict:
    with connect("admin", settings) as conn:
        tables = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'tap_schema')"
            " AND c.relkind = 'r' ORDER BY 1"
        ).fetchall()
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for (t,) in tables}


def test_every_page_parameter_fuzzed(web):
    """Each bad value in each parameter of each page: a 4xx, one line, no traceback."""
    before = _snapshot(web.settings)
    deadline = time.monotonic() + 150
    n = 0
    with httpx.Client(timeout=30) as client:
        for path, (params, good) in ROUTES.items():
            for name, kind in params.items():
                for value in BAD[kind]:
                    if name == "filter" and path == "/candidates" and value == "a" * 300:
                        pass
                    query = dict(good)
                    if name in ("ra", "dec") and not good:
                        query = {"ra": "1", "dec": "1"}
                    query[name] = value
                    if name in ("object", "refsource") or (path == "/search" and name == "q"):
                        query = {name: value}
                    r = client.get(web.base + path, params=query)
                    n += 1
                    text = r.text
                    assert 400 <= r.status_code < 500, (path, name, value, r.status_code)
                    assert "Traceback" not in text and 'File "' not in text
                    if r.headers["content-type"].startswith("text/plain"):
                        assert text.count("\n") == 1 and text.strip(), (path, name, value)
                    else:
                        msg = re.findall(r'<p class="error" id="error">(.*?)</p>', text, re.S)
                        assert len(msg) == 1 and "\n" not in msg[0].strip(), (path, name, value)
                    assert time.monotonic() < deadline
        for path in ("/lightcurve.fits", "/lightcurve.%27%3B", "/stamp/abc.png",
                     "/stamp/1%27%20OR%201=1.png", "/stamp/" + "9" * 40 + ".png", "/nowhere",
                     "/static/../../pyproject.toml", "/lightcurve.csv"):  # fmt: skip
            r = client.get(web.base + path)
            n += 1
            assert 400 <= r.status_code < 500 and "Traceback" not in r.text, path
            assert r.text.strip() and (r.text.count("\n") == 1 or 'id="error"' in r.text), path
        r = client.post(web.base + "/lightcurve", data={"object": "SS Cyg"})
        assert r.status_code == 405 and 'id="error"' in r.text
    assert n > 150
    assert _snapshot(web.settings) == before
