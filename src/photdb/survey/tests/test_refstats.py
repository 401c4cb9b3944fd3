"""galrefstats: kept up to date image by image == recomputed from galsources.

A simulated survey at the database level (one reference catalogue, search images
with known light curves: constant stars, variables, reference outliers, missing
points, two images at the same MJD) is stored image by image the way
:func:`photdb.survey.process.run_search` stores it — galsources COPY, galvarobjs,
the statistics update, one transaction per image — in time order, in reverse, at
random, and by two processes at once; every time the table must equal
``rebuild`` and the other orders.
"""

from __future__ import annotations

import multiprocessing
import random

import numpy as np
import pytest
from astropy.table import Table

from photdb.db import connect
from photdb.survey import refstats, store

N_SRC, N_IMG = 400, 12
STAT_COLS = ("n_epochs", "n_det", "mean_mag", "chi2nu", "eta", "stetson_j", "amplitude",
             "max_sig", "ref_offset", "ref_offset_sigma", "ref_outlier", "sum_w", "sum_wd",
             "sum_wd2", "sum_d", "sum_d2", "sum_dd2", "sum_j", "first_mjd", "last_mjd")  # fmt: skip


def _truth(seed=11):
    rng = np.random.default_rng(seed)
    ref_mag = rng.uniform(15.0, 21.0, N_SRC)
    ref_err = np.float32(0.003 + 0.02 * (ref_mag - 15) / 6)
    mjd = np.sort(rng.uniform(59310, 59360, N_IMG))
    mjd[5] = mjd[4]  # same MJD (two chips of one exposure): ties go by image id
    err = np.float32(0.005 + 0.03 * ((ref_mag - 15) / 6) ** 2) * np.ones((N_IMG, 1))
    mag = ref_mag + rng.normal(0, err)
    mag[:, :30] += rng.uniform(-0.6, 0.6, (N_IMG, 30))  # variables
    mag[:, 30:50] += 0.3  # wrong on the reference
    have = rng.random((N_IMG, N_SRC)) > 0.1
    err[rng.random((N_IMG, N_SRC)) < 0.01] = np.nan  # a few points without an error
    ref_mag[-1] = np.nan  # a new source added after the reference: no reference magnitude
    return ref_mag, ref_err, mjd, mag.astype(np.float32), err.astype(np.float32), have


def _positions():
    rng = np.random.default_rng(3)
    return 271.0 + rng.uniform(0, 0.01, N_SRC), -29.0 + rng.uniform(0, 0.01, N_SRC)


def _truth_index(ra) -> np.ndarray:
    """Truth star of each stored right ascension (the writer numbers sources in sky order)."""
    star = {float(r): k for k, r in enumerate(_positions()[0])}
    return np.array([star[float(r)] for r in np.asarray(ra, float)], np.int64)


def _setup(settings):
    """The reference exposure and catalogue, and the search images (status new)."""
    ref_mag, ref_err, mjd, _, _, _ = _truth()
    with connect("writer", settings) as conn, conn.transaction(), conn.cursor() as cur:
        gids = []
        for k, (t, isref) in enumerate([(59300.0, True), *((float(m), False) for m in mjd)]):
            eid = cur.execute(
                "INSERT INTO galexposures (filename, path, sha256, mjd, filter, is_reference)"
                " VALUES (%s, '/sim', %s, %s, 'r', %s) RETURNING id",
                [f"e{k}.fits", f"{k:064d}", t, isref],
            ).fetchone()[0]
            gid = cur.execute("INSERT INTO observations (band) VALUES ('r') RETURNING id"
                              ).fetchone()[0]  # fmt: skip
            cur.execute("INSERT INTO galimages (id, galexposure_id, hdu, status)"
                        " VALUES (%s, %s, 1, 'new')", [gid, eid])  # fmt: skip
            gids.append(gid)
        ra, dec = _positions()
        cat = Table({"ra": ra, "dec": dec, "mag": ref_mag,
                     "magerr": ref_err, "flux": np.ones(N_SRC)})  # fmt: skip
        store.write_sources(cur, gids[0], cat)
        cur.execute("UPDATE galimages SET status = 'done' WHERE id = %s", [gids[0]])
        cur.execute("UPDATE galimages SET reference = %s WHERE id <> %s", [gids[0], gids[0]])
    return gids[0], gids[1:]


def _store(settings, refimg, gid, k):
    """Store search image k as run_search does (one transaction)."""
    _, _, _, mag, err, have = _truth()
    with connect("writer", settings) as conn:
        ref = store.fetch_reference_table(conn, refimg)
        stars = np.flatnonzero(have[k])
        row_of = np.empty(N_SRC, np.int64)
        row_of[_truth_index(ref["ra"])] = np.arange(len(ref))
        rows = row_of[stars]
        m, e = mag[k, stars].astype(float), err[k, stars].astype(float)
        sig = (m - np.asarray(ref["mag"])[rows]) / np.hypot(e, np.asarray(ref["magerr"])[rows])
        det = np.abs(np.nan_to_num(sig)) >= 5
        cat = Table({"ra": np.asarray(ref["ra"])[rows], "dec": np.asarray(ref["dec"])[rows],
                     "mag": m, "magerr": e, "flux": np.ones(rows.size)})  # fmt: skip
        with conn.transaction(), conn.cursor() as cur:
            assert store.lock_unfinished(cur, gid)
            ids = store.write_sources(cur, gid, cat, ref_ids=np.asarray(ref["id"])[rows])
            store.write_variables(cur, gid, ids[det], np.asarray(ref["id"])[rows][det],
                                  (m - np.asarray(ref["mag"])[rows])[det], sig[det])  # fmt: skip
            refstats.update_for_image(cur, gid, refimg, ref, rows, m, e, det, sig)
            cur.execute("UPDATE galimages SET status = 'done' WHERE id = %s", [gid])


def _store_many(settings, refimg, jobs):
    for gid, k in jobs:
        _store(settings, refimg, gid, k)


def _table(settings) -> dict[int, tuple]:
    """galrefstats keyed by truth star."""
    with connect("readonly", settings) as conn:
        rows = conn.execute(
            "SELECT ra, " + ", ".join(STAT_COLS) + " FROM galrefstats ORDER BY 1"
        ).fetchall()
    stars = _truth_index([r[0] for r in rows])
    return {int(k): tuple(np.nan if v is None else float(v) for v in r[1:])
            for k, r in zip(stars, rows, strict=True)}  # fmt: skip


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    x = np.array([a[k] for k in sorted(a)], float)
    y = np.array([b[k] for k in sorted(b)], float)
    for j, name in enumerate(STAT_COLS):
        assert np.allclose(x[:, j], y[:, j], rtol=1e-6, atol=1e-9, equal_nan=True), name


def _rebuilt(settings) -> dict:
    with connect("writer", settings) as conn:
        refstats.rebuild(conn)
    return _table(settings)


@pytest.mark.parametrize("how", ["time", "reverse", "random"])
def test_incremental_equals_rebuild_in_any_order(db_settings, how):
    refimg, gids = _setup(db_settings)
    order = list(range(N_IMG))
    if how == "reverse":
        order.reverse()
    elif how == "random":
        random.Random(5).shuffle(order)
    _store_many(db_settings, refimg, [(gids[k], k) for k in order])
    inc = _table(db_settings)
    assert len(inc) == N_SRC
    _assert_same(inc, _rebuilt(db_settings))
    # the statistics are right, not only self-consistent: against the truth directly
    ref_mag, _, _, mag, err, have = _truth()
    ok = have & np.isfinite(err)
    n = ok.sum(axis=0)
    assert [inc[i][0] for i in sorted(inc)] == list(n)
    # reference outliers: the 20 stars wrong on the reference, no constant star
    flagged = np.array([inc[i][STAT_COLS.index("ref_outlier")] for i in sorted(inc)], bool)
    assert flagged[30:50].sum() >= 18
    assert not flagged[50:].any()
    # the source without a reference magnitude: statistics of its magnitudes
    last = dict(zip(STAT_COLS, inc[N_SRC - 1], strict=True))
    w = 1 / err[ok[:, -1], -1].astype(float) ** 2
    mean = np.sum(w * mag[ok[:, -1], -1]) / w.sum()
    assert abs(last["mean_mag"] - mean) < 1e-5 and last["n_epochs"] == n[-1]
    assert np.isnan(last["stetson_j"]) and np.isnan(last["ref_offset"])
    assert last["chi2nu"] < 3 and not last["ref_outlier"]


def test_same_result_from_two_processes_at_once(template_settings):
    from conftest import new_database

    with new_database(template_settings) as s1, new_database(template_settings) as s2:
        refimg, gids = _setup(s1)
        order = list(range(N_IMG))
        random.Random(9).shuffle(order)
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_store_many,
                             args=(s1, refimg, [(gids[k], k) for k in order[j::2]]))
                 for j in range(2)]  # fmt: skip
        for p in procs:
            p.start()
        for p in procs:
            p.join(300)
        assert [p.exitcode for p in procs] == [0, 0]
        concurrent = _table(s1)
        _assert_same(concurrent, _rebuilt(s1))
        refimg2, gids2 = _setup(s2)
        _store_many(s2, refimg2, [(gids2[k], k) for k in range(N_IMG)])
        _assert_same(_table(s2), concurrent)


def test_candidates_and_outliers_read_from_the_table(db_settings):
    from photdb.survey import candidates

    refimg, gids = _setup(db_settings)
    _store_many(db_settings, refimg, [(gids[k], k) for k in range(N_IMG)])
    with connect("readonly", db_settings) as conn:
        cands = candidates.variable_candidates(conn, min_repeats=2, limit=None)
        outl = candidates.reference_outliers(conn, limit=None)
        star = {
            r[0]: int(_truth_index([r[1]])[0])
            for r in conn.execute("SELECT refsource_id, ra FROM galrefstats")
        }
        assert candidates.count_candidates(conn, min_repeats=2) == len(cands)
        top = candidates.variable_candidates(conn, min_repeats=2, limit=5, mag_max=18.0)
        assert not candidates.stats_missing(conn)
    ids = {star[int(r)] for r in cands["refsource_id"]}
    assert ids and ids <= set(range(30))  # variables only: no constant star, no outlier
    assert not ids & {star[int(i)] for i in outl["refsource_id"]}  # never both
    assert {star[int(i)] for i in outl["refsource_id"]} == set(range(30, 50))
    nd = list(cands["ndet"])
    assert nd == sorted(nd, reverse=True)
    assert np.all(np.abs(np.asarray(outl["ref_offset"]) - 0.3) < 0.05)
    assert len(top) == 5 and np.all(np.asarray(top["ref_mag"]) <= 18.0)
    assert list(top["refsource_id"]) == [r for r in cands["refsource_id"] if
                                         cands["ref_mag"][list(cands["refsource_id"]).index(r)]
                                         <= 18.0][:5]  # fmt: skip
    # the detections behind each candidate are the galvarobjs rows
    assert all(len(e.split(",")) == n for e, n in zip(cands["epochs"], cands["ndet"], strict=True))
