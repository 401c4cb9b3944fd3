"""Plan-then-execute deletion: exactly the planned rows go, in one transaction."""

from __future__ import annotations

import pytest
from astropy.table import Table

from photdb.archive.delete import (
    TABLE_ORDER,
    DeleteError,
    execute_delete,
    plan_delete,
)
from photdb.archive.lightcurves import load_lightcurves
from photdb.archive.tests.test_query import populate
from photdb.db import connect

#: Every table of the schema, to see that nothing outside the plan changes.
ALL_TABLES = (
    *TABLE_ORDER,
    "telescopes",
    "instruments",
    "observatories",
    "photosys",
    "galprovenance",
)


def snapshot(conn) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ALL_TABLES}


@pytest.fixture
def data(db_settings, tmp_path):
    info = populate(db_settings, tmp_path)
    with connect("writer", settings=db_settings, autocommit=True) as conn:
        yield conn, info


def _delete(conn, target):
    before = snapshot(conn)
    plan = plan_delete(conn, target)
    assert snapshot(conn) == before  # planning changes nothing
    removed = execute_delete(conn, plan)
    after = snapshot(conn)
    assert removed == dict(plan.counts)
    assert {t: before[t] - after[t] for t in ALL_TABLES} == {
        t: plan.counts.get(t, 0) for t in ALL_TABLES
    }
    return plan


def _nonzero(plan) -> dict[str, int]:
    return {t: n for t, n in plan.counts.items() if n}


def test_delete_each_kind(data):
    conn, info = data
    obs = info["obs"]
    # observation by file name: a pipeline image with a reference catalogue row
    plan = _delete(conn, ("observation", "a_r.fit"))
    assert _nonzero(plan) == {
        "lightcurves": 1,
        "metadata_obs_json": 1,
        "galsources": 1,
        "galimages": 1,
        "observations": 1,
        "galexposures": 1,
    }
    assert plan.observation_ids == (obs["a_r.fit"],)
    assert any("ref_id" in n for n in plan.notes)  # the forced row on b keeps its ref_id
    # object by name: its points (with metadata) and the object; observations stay
    plan = _delete(conn, ("object", "v* ss cyg"))
    assert _nonzero(plan) == {"metadata_lc_json": 3, "lightcurves": 3, "objects": 1}
    # data source by progid
    plan = _delete(conn, ("datasource", "KOL-TYC"))
    assert _nonzero(plan) == {"lightcurves": 1, "datasources": 1}
    # observation by id: b, with a forced row, a neighbour and a variable-object row
    plan = _delete(conn, ("observation", str(obs["b_r.fit"])))
    assert _nonzero(plan) == {
        "metadata_obs_json": 1,
        "galvarobjs": 1,
        "galsources": 2,
        "galimages": 1,
        "observations": 1,
        "galexposures": 1,
    }
    assert conn.execute("SELECT count(*) FROM galsources").fetchone()[0] == 0


def test_delete_night_and_mef(data):
    conn, info = data
    # MaxIm frames start 2021-10-22 20:13 UTC: the night of the 22nd, not of the 21st or 23rd
    for day in ("2021-10-21", "2021-10-23"):
        assert plan_delete(conn, ("night", day)).empty
    # 150 deg west, local mean noon is 22:00 UTC: 20:13 UTC still belongs to the 21st's night
    conn.execute("UPDATE observatories SET longitude_deg = -150 WHERE name = 'Kolonica'")
    assert plan_delete(conn, ("night", "2021-10-21")).counts["observations"] == 2
    assert plan_delete(conn, ("night", "2021-10-22")).empty
    conn.execute("UPDATE observatories SET longitude_deg = 22.27 WHERE name = 'Kolonica'")
    plan = _delete(conn, ("night", "2021-10-22"))
    assert plan.counts["observations"] == 2 and plan.counts["galexposures"] == 2
    assert plan.counts["lightcurves"] == 2 and plan.counts["galsources"] == 3
    # Ekos MJD-OBS 60000.5 TT = 2023-02-25 11:58:50.8 UTC: before noon, so the 24th's night
    assert plan_delete(conn, ("night", "2023-02-25")).empty
    plan = _delete(conn, ("night", "2023-02-24"))
    assert plan.counts["observations"] == 1
    # a multi-extension file: the exposure goes with its last image only
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM observations WHERE filename = 'decam.fits.fz' ORDER BY id"
        )
    ]
    assert len(ids) >= 2
    for i, oid in enumerate(ids):
        plan = _delete(conn, ("observation", str(oid)))
        assert plan.counts["galexposures"] == (1 if i == len(ids) - 1 else 0)
    assert snapshot(conn)["observations"] == 0 and snapshot(conn)["galexposures"] == 0


def test_plan_is_rechecked_and_errors(data):
    conn, _ = data
    plan = plan_delete(conn, ("object", "SS Cyg"))
    load_lightcurves(
        conn,
        Table({"mjd": [60000.0], "magnitude": [12.0], "mag_err": [0.1]}),
        datasource="late",
        band="V",
        object="SS Cyg",
    )
    before = snapshot(conn)
    with pytest.raises(DeleteError, match="changed since the plan"):
        execute_delete(conn, plan)
    assert snapshot(conn) == before
    for target, message in (
        (("observation", "nope.fit"), "no observation"),
        (("object", "Nobody"), "no object"),
        (("object", "19729*"), "matches 4 objects"),
        (("datasource", "NOPE"), "no data source"),
        (("night", "22/10/2021"), "YYYY-MM-DD"),
        (("galaxy", "M31"), "cannot delete"),
    ):
        with pytest.raises(DeleteError, match=message):
            plan_delete(conn, target)


def test_deleted_hdu_can_be_ingested_again(db_settings, tmp_path):
    from photdb.archive.ingest import ingest_paths
    from photdb.archive.tests.fitsfactory import write_decam_fz

    path = write_decam_fz(tmp_path / "mef.fits.fz")
    assert ingest_paths(path, settings=db_settings).ingested == 1
    with connect("writer", settings=db_settings, autocommit=True) as conn:
        (first,) = conn.execute(
            "SELECT min(g.id) FROM galimages g JOIN galexposures e ON e.id = g.galexposure_id"
        ).fetchone()
        _delete(conn, ("observation", str(first)))
        assert conn.execute("SELECT n_images FROM galexposures").fetchall() == [(1,)]
        again = ingest_paths(path, settings=db_settings)
        assert again.ingested == 1 and "1 missing image added" in again.results[0].message
        rows = conn.execute(
            "SELECT e.n_images, count(g.id) FROM galexposures e"
            " JOIN galimages g ON g.galexposure_id = e.id GROUP BY e.id"
        )
        assert rows.fetchall() == [(2, 2)]
        assert ingest_paths(path, settings=db_settings).present == 1
