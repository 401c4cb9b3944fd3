"""The VO services end to end: the shared real server (see conftest.py), pyvo and httpx.

Ported from the research-tap prototype; the database is the web tests' (a processed
simulated survey and the archive fixtures).
"""

from __future__ import annotations

import json
import os
import random
import time
import warnings
import xml.etree.ElementTree as ET

import httpx
import numpy as np
import psycopg
import pytest
import pyvo
from astropy.coordinates import SkyCoord

from photdb.web.adql import ADQLError, translate

SSCYG = (325.679, 43.5862)
VOT = "{http://www.ivoa.net/xml/VOTable/v1.3}"


def _admin(settings):
    return psycopg.connect(
        host=settings.host,
        port=settings.port,
        dbname=settings.dbname,
        user=settings.user("admin"),
        password=settings.password("admin"),
        autocommit=True,
    )


@pytest.fixture(scope="module")
def vo(web):
    """(base URL, settings, trace file); FIELD is the survey's centre, N_GAL its rows."""
    global FIELD, N_GAL, N_OBJ
    with _admin(web.settings) as conn:
        ra, dec, n = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ra),"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY dec), count(*) FROM galsources"
            " WHERE dec < 0"
        ).fetchone()
        FIELD = (float(ra), float(dec))
        N_GAL = conn.execute("SELECT count(*) FROM galsources").fetchone()[0]
        N_OBJ = conn.execute("SELECT count(*) FROM objects").fetchone()[0]
    assert N_GAL > 2000
    return web.base, web.settings, web.trace


FIELD = (0.0, 0.0)
N_GAL = N_OBJ = 0


def _count(settings, query, params=()):
    with _admin(settings) as conn:
        return conn.execute(query, params).fetchone()[0]


# ------------------------------------------------------------------ SCS


def test_scs_objects_with_pyvo(vo):
    base, settings, _ = vo
    svc = pyvo.dal.SCSService(base + "/scs/objects")
    res = svc.search(SkyCoord(*SSCYG, unit="deg"), 0.1)
    expect = _count(
        settings,
        "SELECT count(*) FROM objects WHERE coordequ <@ scircle(spoint(radians(%s), radians(%s)), "
        "radians(0.1))",
        SSCYG,
    )
    assert len(res) == expect == 3
    first = res[0]
    assert first["simbad_name"] == "V* SS Cyg"
    assert first.pos.separation(SkyCoord(*SSCYG, unit="deg")).arcsec < 1e-3  # UCD1 names
    assert int(first.id) == int(first["id"])
    t = res.to_table()
    assert str(t["ra"].unit) == "deg" and str(t["_r"].unit) == "deg"
    assert list(t["_r"]) == sorted(t["_r"])
    fields = {f.name: f for f in res.fielddescs}
    assert fields["ra"].ucd == "POS_EQ_RA_MAIN" and fields["id"].ucd == "ID_MAIN"
    full = svc.search(SkyCoord(*SSCYG, unit="deg"), 0.01, verbosity=3)
    assert full[0]["vsx_name"] == "SS Cyg" and "class" in full.fieldnames


def test_scs_galsources_counts_match_q3c(vo):
    base, settings, _ = vo
    svc = pyvo.dal.SCSService(base + "/scs/galsources")
    for r in (1 / 60, 0.02):
        res = svc.search(SkyCoord(*FIELD, unit="deg"), r, verbosity=3)
        expect = _count(
            settings,
            "SELECT count(*) FROM galsources WHERE q3c_radial_query(ra, dec, %s, %s, %s)",
            (*FIELD, r),
        )
        assert len(res) == expect > 0
        assert "fracflux" in res.fieldnames
    meta = svc.columns  # SR=0: metadata only
    assert {c.name for c in meta} >= {"id", "ra", "dec", "mag", "_r"}


def test_scs_overflow_and_verb(vo):
    base, _, _ = vo
    r = httpx.get(
        base + "/scs/galsources",
        params={"RA": FIELD[0], "DEC": FIELD[1], "SR": 0.05, "VERB": 1, "MAXREC": 10},
    )
    assert r.status_code == 200
    root = ET.fromstring(r.content)
    assert len(root.findall(f".//{VOT}TR")) == 10
    assert [f.get("name") for f in root.iter(f"{VOT}FIELD")] == ["id", "ra", "dec", "_r"]
    infos = [(i.get("name"), i.get("value")) for i in root.iter(f"{VOT}INFO")]
    assert ("QUERY_STATUS", "OVERFLOW") in infos


@pytest.mark.parametrize(
    "params, words",
    [
        ({"DEC": 1, "SR": 1}, "missing parameter RA"),
        ({"RA": "nan", "DEC": 1, "SR": 1}, "finite"),
        ({"RA": "inf", "DEC": 1, "SR": 1}, "finite"),
        ({"RA": 1, "DEC": 91, "SR": 1}, "DEC must be"),
        ({"RA": 1, "DEC": 1, "SR": -1}, "SR must be"),
        ({"RA": 1, "DEC": 1, "SR": 1e9}, "SR must be"),
        ({"RA": "1;DROP TABLE objects", "DEC": 1, "SR": 1}, "not a number"),
        ({"RA": "1' OR '1'='1", "DEC": 1, "SR": 1}, "not a number"),
        ({"RA": "9" * 5000, "DEC": 1, "SR": 1}, "too long"),
        ({"RA": 1, "DEC": 1, "SR": 1, "VERB": "x"}, "VERB"),
        ({"RA": 1, "DEC": 1, "SR": 1, "MAXREC": "-1"}, "MAXREC"),
    ],
)
def test_scs_errors(vo, params, words):
    base, _, _ = vo
    r = httpx.get(base + "/scs/objects", params=params)
    assert r.status_code == 400
    root = ET.fromstring(r.content)
    err = [i for i in root.findall(f"{VOT}INFO") if i.get("name") == "Error"]
    assert err and words in err[0].get("value")
    query = pyvo.dal.scs.SCSQuery(base + "/scs/objects", **{k: str(v) for k, v in params.items()})
    with pytest.raises(pyvo.DALQueryError, match=words.split()[0]):
        query.execute()


# ------------------------------------------------------------------ TAP with pyvo


def test_tap_run_sync_cone_rewritten_to_q3c(vo):
    base, settings, _ = vo
    tap = pyvo.dal.TAPService(base + "/tap")
    q = (
        "SELECT id, ra, dec, mag FROM galsources WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
        f"CIRCLE('ICRS', {FIELD[0]}, {FIELD[1]}, 0.02))"
    )
    res = tap.run_sync(q, maxrec=20000)
    expect = _count(
        settings,
        "SELECT count(*) FROM galsources WHERE spoint(radians(ra), radians(dec)) @ "
        "scircle(spoint(radians(%s), radians(%s)), radians(0.02))",
        FIELD,
    )
    assert len(res) == expect > 0
    t = res.to_table()
    assert str(t["ra"].unit) == "deg" and str(t["mag"].unit) == "mag"
    assert {f.name: f.ucd for f in res.fielddescs}["ra"] == "pos.eq.ra;meta.main"
    assert "q3c_radial_query(ra, dec" in translate(q).sql  # 0.02 deg >= RADIAL_FROM_DEG


def test_tap_objects_point_and_distance(vo):
    base, settings, _ = vo
    tap = pyvo.dal.TAPService(base + "/tap")
    res = tap.run_sync(
        "SELECT id, coordequ, DISTANCE(coordequ, POINT('ICRS', 325.679, 43.5862)) AS d "
        "FROM objects WHERE DISTANCE(coordequ, POINT('ICRS', 325.679, 43.5862)) < 0.1"
    )
    expect = _count(
        settings,
        "SELECT count(*) FROM objects WHERE coordequ <@ scircle(spoint(radians(325.679), "
        "radians(43.5862)), radians(0.1))",
    )
    assert len(res) == expect == 3
    fields = {f.name: f for f in res.fielddescs}
    assert fields["coordequ"].xtype == "point" and fields["coordequ"].arraysize == "2"
    t = res.to_table()
    best = int(np.argmin(t["d"]))
    assert abs(t["coordequ"][best][0] - 325.679) < 1e-6


def test_tap_adql_functions_through_shims(vo):
    base, _, _ = vo
    tap = pyvo.dal.TAPService(base + "/tap")
    res = tap.run_sync(
        "SELECT TOP 1 COORD1(coordequ) AS ra, COORD2(coordequ) AS dec, "
        "AREA(CIRCLE('ICRS', 0, 0, 1)) AS a, LOG10(100) AS l FROM objects ORDER BY id"
    )
    assert abs(res["ra"][0] - SSCYG[0]) < 1e-9 and abs(res["dec"][0] - SSCYG[1]) < 1e-9
    assert abs(res["a"][0] - 3.14151) < 1e-4 and abs(res["l"][0] - 2) < 1e-12


def test_objects_cone_uses_gist_index(vo):
    _, settings, _ = vo
    sql = translate(
        "SELECT id FROM objects WHERE CONTAINS(coordequ, CIRCLE('ICRS', 325.679, 43.5862, 0.1)) = 1"
    ).sql
    assert "coordequ @ scircle" in sql
    dist = translate(
        "SELECT id FROM objects WHERE DISTANCE(coordequ, POINT('ICRS', 325.679, 43.5862)) < 0.1"
    ).sql
    assert "spoint_dwithin(coordequ" in dist  # pgSphere 1.2 lacks it: metadata.SPOINT_DWITHIN
    with _admin(settings) as conn:
        conn.execute("SET enable_seqscan = off")  # 300 rows: prove the index *can* serve it
        for q in (sql, dist):
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + q))
            assert "objects_coordequ_idx" in plan, plan


def test_tap_overflow_maxrec(vo):
    base, _, _ = vo
    tap = pyvo.dal.TAPService(base + "/tap")
    with pytest.warns(pyvo.dal.exceptions.DALOverflowWarning):
        res = tap.run_sync("SELECT id FROM galsources")  # default MAXREC 2000 here
    assert len(res) == 2000
    assert res.query_status == "OVERFLOW"
    res = tap.run_sync("SELECT id FROM galsources", maxrec=7)
    assert len(res) == 7
    res = tap.run_sync("SELECT TOP 5 id FROM galsources", maxrec=7)
    assert len(res) == 5 and res.query_status == "OK"
    # MAXREC=0 (metadata only): pyvo drops it (`if maxrec:`), so ask with httpx
    r = httpx.post(
        base + "/tap/sync",
        data={
            "REQUEST": "doQuery",
            "LANG": "ADQL",
            "MAXREC": 0,
            "QUERY": "SELECT id, ra FROM galsources",
        },
    )
    root = ET.fromstring(r.content)
    assert [f.get("name") for f in root.iter(f"{VOT}FIELD")] == ["id", "ra"]
    assert not root.findall(f".//{VOT}TR")
    assert [i.get("value") for i in root.iter(f"{VOT}INFO") if i.get("name") == "QUERY_STATUS"][
        -1
    ] == "OVERFLOW"


def test_tap_tables_and_tap_schema(vo):
    base, _, _ = vo
    tap = pyvo.dal.TAPService(base + "/tap")
    tables = tap.tables
    names = set(tables.keys())
    assert {"objects", "galsources", "TAP_SCHEMA.columns"} <= names
    assert "observations" not in names
    ra = {c.name: c for c in tables["galsources"].columns}["ra"]
    assert ra.unit == "deg" and ra.ucd == "pos.eq.ra;meta.main" and ra.description
    cap = tap.get_tap_capability()
    assert cap.outputlimit.hard.content == 20000 and tap.maxrec == 2000
    av = ET.fromstring(httpx.get(base + "/tap/availability").content)
    assert av.find("{http://www.ivoa.net/xml/VOSIAvailability/v1.0}available").text == "true"
    res = tap.run_sync(
        'SELECT column_name, unit, ucd, datatype, "size", principal FROM TAP_SCHEMA.columns '
        "WHERE table_name = 'galsources' ORDER BY column_index"
    )
    # in the table's column order (migration 0009: 8-byte columns first)
    assert list(res["column_name"])[:5] == ["id", "ra", "dec", "ref_id", "galimage_id"]
    assert len(tap.run_sync("SELECT * FROM TAP_SCHEMA.tables")) == 13  # 8 + TAP_SCHEMA
    assert len(tap.run_sync("SELECT * FROM TAP_SCHEMA.keys")) >= 1


def test_tap_csv_and_get(vo):
    base, _, _ = vo
    r = httpx.get(
        base + "/tap/sync",
        params={
            "REQUEST": "doQuery",
            "LANG": "ADQL",
            "FORMAT": "csv",
            "QUERY": "SELECT TOP 3 id, mag FROM galsources ORDER BY id",
        },
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text.splitlines()[0] == "id,mag" and len(r.text.splitlines()) == 4


# ------------------------------------------------------------------ TAP attacks

ATTACKS = [
    ("SELECT pg_sleep(100) FROM objects", "pg_sleep"),
    ("SELECT pg_sleep(100)", "syntax"),
    ("DELETE FROM objects", "syntax"),
    ("SELECT * FROM objects; DROP TABLE objects", "one statement"),
    ("SELECT * FROM objects; DELETE FROM objects", "one statement"),
    ("SELECT * FROM pg_authid", "not published"),
    ("SELECT * FROM pg_catalog.pg_authid", "not published"),
    ("SELECT rolpassword FROM pg_authid", "not published"),
    ("SELECT id FROM objects WHERE id IN (SELECT usesysid FROM pg_user)", "not published"),
    ("SELECT * FROM observations", "not published"),
    ("SELECT pg_read_file('/etc/passwd') FROM objects", "pg_read_file"),
    ("SELECT lo_import('/etc/passwd') FROM objects", "lo_import"),
    ("SELECT nextval('objects_id_seq') FROM objects", "nextval"),
    ("SELECT setval('objects_id_seq', 1) FROM objects", "setval"),
    ("SELECT pg_terminate_backend(1) FROM objects", "pg_terminate_backend"),
    ("SELECT * FROM dblink('host=127.0.0.1', 'select 1') AS t", "syntax"),
    ("SELECT dblink('host=127.0.0.1', 'select 1') FROM objects", "dblink"),
    ("SELECT set_config('statement_timeout', '0', false) FROM objects", "set_config"),
    ("SELECT current_setting('data_directory') FROM objects", "current_setting"),
    ("SELECT * INTO evil FROM objects", "syntax"),
    ("SELECT * FROM objects FOR UPDATE", "syntax"),
    ("SELECT id::text FROM objects", "syntax"),
    ("SELECT * FROM objects WHERE gaia_name = $$x$$", "lexical"),
    ("SELECT * FROM objects WHERE gaia_name = E'\\x27'", "syntax"),
    (
        "SELECT * FROM objects WHERE CONTAINS(POINT('ICRS', print('x'), 0), "
        "CIRCLE('ICRS', 1, 2, 3)) = 1",
        "print",
    ),
    (
        'SELECT * FROM galsources WHERE DISTANCE(ra, dec, 0, eval(\'__import__("os")'
        '.system("touch /tmp/photdb-pwned")\')) < 1',
        "eval",
    ),
    (
        "SELECT * FROM galsources WHERE CONTAINS(POINT('ICRS', ra - -1, dec), "
        "CIRCLE('ICRS', 1, 2, 3)) = 1",
        "geometry argument",
    ),
    ("SELECT COUNT(*) FROM galsources AS a, galsources AS b, galsources AS c", "cancelled"),
    ("SELECT * FROM objects WHERE CONTAINS(coordequ, CIRCLE('ICRS', 1, 2, 100)) = 1", "database"),
    (
        "SELECT * FROM galsources WHERE CONTAINS(POINT('ICRS', ra, dec), "
        "CIRCLE('ICRS', 1/0, 2, 3)) = 1",
        "must be a number",
    ),
    ("SELECT TOP 99999999999999999999 id FROM objects", "database"),
    ("SELECT nosuch FROM objects", "does not exist"),
    (
        "SELECT id FROM galsources WHERE 1 = CONTAINS(POINT(ra, dec), "
        "POLYGON('ICRS', 1, 2, 3, 4, 5, ' || pg_sleep(5) || '))",
        "must be a number",
    ),
    (
        "SELECT id FROM galsources WHERE 1 = CONTAINS(POINT('GALACTIC', ra, dec), "
        "CIRCLE('GALACTIC', 1, 2, 0.1))",
        "coordinate system",
    ),
    ('SELECT * FROM "GALSOURCES"', "does not exist"),
    ("", "empty"),
    ("SELECT " + "x," * 12000 + "x FROM objects", "longer"),
    ("SELECT 'a\x00b' FROM objects", "control"),
]


@pytest.mark.parametrize("query, words", ATTACKS, ids=range(len(ATTACKS)))
def test_tap_attacks_fail_cleanly(vo, query, words):
    base, _, _ = vo
    r = httpx.post(
        base + "/tap/sync", data={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query}, timeout=30
    )
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/x-votable+xml")
    root = ET.fromstring(r.content)
    st = [i for i in root.iter(f"{VOT}INFO") if i.get("name") == "QUERY_STATUS"]
    assert st and st[-1].get("value") == "ERROR"
    assert words.lower() in (st[-1].text or "").lower(), st[-1].text
    assert "Traceback" not in r.text and 'File "' not in r.text
    assert not os.path.exists("/tmp/photdb-pwned")


def test_pyvo_sees_errors_as_dalqueryerror(vo):
    base, _, _ = vo
    tap = pyvo.dal.TAPService(base + "/tap")
    with pytest.raises(pyvo.DALQueryError, match="not published"):
        tap.run_sync("SELECT * FROM pg_authid")


def test_database_unchanged_after_attacks(vo):
    _, settings, _ = vo
    assert _count(settings, "SELECT count(*) FROM objects") == N_OBJ
    assert _count(settings, "SELECT count(*) FROM galsources") == N_GAL
    assert _count(settings, "SELECT count(*) FROM pg_class WHERE relname = 'evil'") == 0


def test_readonly_connection_refuses_writes(vo):
    from photdb.db import connect
    from photdb.web.service import ReadOnlyPool, WebConfig

    _, settings, _ = vo
    db = settings.dbname
    with connect("readonly", settings, autocommit=True) as r:  # what the role may do to itself
        r.execute("SET default_transaction_read_only = off")
        r.execute(f"ALTER ROLE {settings.user('readonly')} IN DATABASE {db}"
                  " SET extra_float_digits = -15")  # fmt: skip
        r.execute(f"ALTER ROLE {settings.user('readonly')} IN DATABASE {db} SET jit = on")
    try:
        pool = ReadOnlyPool(settings, WebConfig(statement_timeout_s=2, pool_min=1, pool_max=1))
        pool.open()
        with pool.connection() as conn:
            for stmt in (
                "DELETE FROM objects",
                "CREATE TABLE evil (a int)",
                "SET default_transaction_read_only = off; DELETE FROM objects",
            ):
                with pytest.raises(psycopg.Error):
                    conn.execute(stmt)
                conn.rollback()
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(10)")
            conn.rollback()
            assert conn.execute("SHOW statement_timeout").fetchone()[0] == "2s"
            # photdb's session settings too (full float precision, JIT off), not the role's
            assert conn.execute("SHOW extra_float_digits").fetchone()[0] == "1"
            assert conn.execute("SHOW jit").fetchone()[0] == "off"
            assert conn.execute("SHOW lock_timeout").fetchone()[0] == "5s"
        pool.close()
    finally:  # the role's defaults as they were
        with connect("readonly", settings, autocommit=True) as r:
            r.execute("SET default_transaction_read_only = off")
            r.execute(f"ALTER ROLE {settings.user('readonly')} IN DATABASE {db} RESET ALL")


@pytest.mark.parametrize(
    "params, words",
    [
        ({"REQUEST": "getCapabilities", "LANG": "ADQL", "QUERY": "SELECT 1"}, "REQUEST"),
        ({"REQUEST": "doQuery", "LANG": "SQL", "QUERY": "SELECT 1 FROM objects"}, "LANG"),
        ({"REQUEST": "doQuery", "LANG": "ADQL"}, "QUERY"),
        (
            {
                "REQUEST": "doQuery",
                "LANG": "ADQL",
                "QUERY": "SELECT id FROM objects",
                "FORMAT": "fits",
            },
            "format",
        ),
        (
            {
                "REQUEST": "doQuery",
                "LANG": "ADQL",
                "QUERY": "SELECT id FROM objects",
                "MAXREC": "1e9",
            },
            "MAXREC",
        ),
        (
            {
                "REQUEST": "doQuery",
                "LANG": "ADQL",
                "QUERY": "SELECT id FROM objects",
                "MAXREC": "99999999",
            },
            "MAXREC",
        ),
        (
            {
                "REQUEST": "doQuery",
                "LANG": "ADQL",
                "QUERY": "SELECT id FROM objects",
                "UPLOAD": "t,http://127.0.0.1/x",
            },
            "UPLOAD",
        ),
    ],
)
def test_tap_parameter_errors(vo, params, words):
    base, _, _ = vo
    r = httpx.get(base + "/tap/sync", params=params)
    assert r.status_code == 400
    assert words.lower() in r.text.lower()


def test_huge_bodies_refused(vo):
    base, _, _ = vo
    big = "QUERY=" + "x" * 2_000_000
    headers = {"content-type": "application/x-www-form-urlencoded"}
    r = httpx.post(base + "/tap/sync", content=big, headers=headers)
    assert r.status_code == 413 and "larger than" in r.text

    def chunks():  # no Content-Length: chunked transfer encoding
        for _ in range(40):
            yield b"x" * 100_000

    r = httpx.post(base + "/tap/sync", content=chunks(), headers=headers)
    assert r.status_code == 413 and "larger than" in r.text
    r = httpx.post(base + "/tap/sync", files={"UPLOAD": ("t.xml", b"<VOTABLE/>")},
                   data={"QUERY": "SELECT id FROM objects"})  # fmt: skip
    assert r.status_code == 400 and "upload" in r.text.lower()


def test_fuzzed_requests_never_500(vo):
    """Bounded fuzz (300 requests, loopback only): every answer is 2xx/4xx and parses."""
    base, _, _ = vo
    rnd = random.Random(11)
    pieces = [
        "'",
        '"',
        ";",
        "--",
        "/*",
        "\\",
        "\x7f",
        "NaN",
        "inf",
        "-0",
        "1e308",
        "ǅ",
        "💥",
        "SELECT",
        "FROM",
        "objects",
        "galsources",
        "(",
        ")",
        ",",
        "%",
        "%27",
        "\n",
        "CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 1, 2, 3))",
        "=1",
        "TOP",
        "TAP_SCHEMA.tables",
        "x" * 300,
        "9" * 40,
        "pg_sleep(1)",
        "UNION",
        "ORDER BY",
    ]
    deadline = time.monotonic() + 120
    with httpx.Client(timeout=30) as client:
        for i in range(300):
            if time.monotonic() > deadline:
                break
            junk = "".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 12)))
            if i % 3 == 0:
                r = client.post(
                    base + "/tap/sync",
                    data={
                        "REQUEST": "doQuery",
                        "LANG": "ADQL",
                        "QUERY": junk,
                        "MAXREC": rnd.choice(["", "5", junk]),
                    },
                )
            elif i % 3 == 1:
                r = client.post(
                    base + "/tap/sync",
                    data={
                        "REQUEST": "doQuery",
                        "LANG": "ADQL",
                        "QUERY": "SELECT TOP 3 id FROM objects WHERE " + junk,
                    },
                )
            else:
                table = rnd.choice(["objects", "galsources"])
                r = client.get(
                    base + f"/scs/{table}",
                    params={
                        "RA": rnd.choice([junk, "10", "-5"]),
                        "DEC": rnd.choice([junk, "10", "-90"]),
                        "SR": rnd.choice([junk, "0.1", "0", "10"]),
                    },
                )
            assert r.status_code in (200, 400), (junk, r.status_code, r.text[:300])
            ET.fromstring(r.content)


def test_what_pyvo_sent(vo):
    """The recorded requests: paths, methods and parameters pyvo used."""
    _, _, trace = vo
    recs = [json.loads(line) for line in trace.read_text().splitlines()]
    sync = [r for r in recs if r["path"] == "/tap/sync" and r["method"] == "POST" and "form" in r]
    keys = {k for r in sync for k, _ in r["form"]}
    assert {"REQUEST", "LANG", "QUERY"} <= keys
    assert any(r["path"] == "/tap/tables" and ["detail", "min"] in r["query"] for r in recs)
    assert any(r["path"] == "/tap/capabilities" for r in recs)
    scs = [r for r in recs if r["path"] == "/scs/objects" and r["method"] == "GET"]
    assert any({k for k, _ in r["query"]} == {"RA", "DEC", "SR", "VERB"} for r in scs)


# ------------------------------------------------------------------ translation unit tests


def test_translation_rejects_without_a_server():
    for q, words in ATTACKS:
        if words in ("cancelled", "database", "does not exist"):
            translate(q)  # these reach the database and fail there
            continue
        with pytest.raises(ADQLError):
            translate(q)
    # the last guard: comments, second statements, dollar quotes outside literals
    from photdb.web.adql import _scan_sql

    for bad in ("SELECT 1 -- x", "SELECT 1 /* x */", "SELECT 1; SELECT 2", "SELECT $$x$$"):
        with pytest.raises(ADQLError):
            _scan_sql(bad)
    _scan_sql("SELECT '--;$' AS \"a--b\" FROM t;")
    # string literals survive queryparser's formatting
    assert "'a_ b . c'" in translate("SELECT id FROM objects WHERE simbad_name = 'a_ b . c'").sql
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (
            "q3c_radial_query"
            in translate(
                "SELECT id FROM galsources g "
                "WHERE CONTAINS(POINT(g.ra, g.dec), CIRCLE(271, -29, 0.5)) = 1"
            ).sql
        )


def test_tap_schema_migration_is_current(vo):
    """The shipped TAP_SCHEMA migration is what the published metadata and the migrated
    schema give now (after a migration changes a published table, write a new one:
    ``python -m photdb.web.metadata > src/photdb/db/migrations/NNNN.tap-schema.sql`` with
    the next number, named in ``TAP_SCHEMA_MIGRATION``)."""
    from photdb.db.migrate import migrations_dir
    from photdb.web.metadata import TAP_SCHEMA_MIGRATION, tap_schema_sql

    _, settings, _ = vo
    with _admin(settings) as conn:
        generated = tap_schema_sql(conn)
        owner = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'tap_schema'"
        ).fetchall()
    newest = sorted(migrations_dir().glob("*.tap-schema.sql"))[-1]
    assert newest.name == TAP_SCHEMA_MIGRATION + ".sql"
    shipped = newest.read_text()
    assert generated == shipped, f"TAP_SCHEMA is stale: write a new {newest.name}"
    assert owner == [(settings.user("admin"),)]
    with psycopg.connect(host=settings.host, port=settings.port, dbname=settings.dbname,
                         user=settings.user("readonly"),
                         password=settings.password("readonly")) as ro:  # fmt: skip
        assert ro.execute("SELECT count(*) FROM tap_schema.columns").fetchone()[0] > 50
        for stmt in ("DELETE FROM tap_schema.columns", "CREATE TABLE tap_schema.x (a int)"):
            with pytest.raises(psycopg.Error):
                ro.execute(stmt)
            ro.rollback()


VO_BAD = {
    "/scs/objects": {"RA": ["x", "nan", "1e999", "'", "9" * 100], "DEC": ["91", "-inf", ";"],
                     "SR": ["-1", "1e9", "NaN", "1deg"], "VERB": ["0", "4", "x", "1.5"],
                     "MAXREC": ["-1", "1e9", "x", "9" * 30]},
    "/scs/galsources": {"RA": ["'; DROP TABLE galsources; --"], "SR": ["11"], "VERB": ["9"]},
    "/tap/sync": {"REQUEST": ["doNothing", "'"], "LANG": ["SQL", "PQL", "x" * 100],
                  "FORMAT": ["fits", "json", "'"], "MAXREC": ["-5", "1e3", "100001"],
                  "QUERY": ["", "DROP TABLE objects", "SELECT * FROM pg_shadow"],
                  "UPLOAD": ["t,http://127.0.0.1:1/x"]},
}  # fmt: skip
GOOD = {"/scs/objects": {"RA": "325.679", "DEC": "43.5862", "SR": "0.1"},
        "/scs/galsources": {"RA": "271.5", "DEC": "-28.9", "SR": "0.001"},
        "/tap/sync": {"REQUEST": "doQuery", "LANG": "ADQL",
                      "QUERY": "SELECT TOP 1 id FROM objects"}}  # fmt: skip


def test_every_vo_parameter_fuzzed(vo):
    """Each bad value of each VO parameter (GET and POST): HTTP 4xx, a parseable VOTable whose
    error message is one line, nothing changed."""
    base, settings, _ = vo
    before = _count(settings, "SELECT count(*) FROM galsources") + _count(
        settings, "SELECT count(*) FROM objects"
    )
    with httpx.Client(timeout=30) as client:
        for path, params in VO_BAD.items():
            for name, values in params.items():
                for value in values:
                    data = dict(GOOD[path], **{name: value})
                    for r in (client.get(base + path, params=data),
                              client.post(base + path, data=data)):  # fmt: skip
                        assert 400 <= r.status_code < 500, (path, name, value, r.status_code)
                        root = ET.fromstring(r.content)
                        msgs = [i.get("value") if i.get("name") == "Error" else i.text
                                for i in root.iter(f"{VOT}INFO")
                                if i.get("name") in ("Error", "QUERY_STATUS")
                                and (i.get("value") != "ERROR" or i.text)]  # fmt: skip
                        assert msgs and all(m and "\n" not in m.strip() for m in msgs), r.text
                        assert "Traceback" not in r.text
        for bad in ("/tap/tables/pg_authid", "/tap/tables/" + "x" * 300, "/scs/observations",
                    "/static/../pyproject.toml", "/tap/async"):  # fmt: skip
            r = client.get(base + bad)
            assert r.status_code == 404, bad
    after = _count(settings, "SELECT count(*) FROM galsources") + _count(
        settings, "SELECT count(*) FROM objects"
    )
    assert after == before
