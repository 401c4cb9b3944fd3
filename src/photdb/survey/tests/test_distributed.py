"""The distributed engine and the claims, with real parts in separate processes.

One tiny survey (one filter, one 256 x 128 chip, one reference and two search
epochs) is processed with ``-j 1`` in this process into a module database; its
rows are what every other way of processing it must give exactly: a real
``dask scheduler`` with two ``dask worker`` processes (``photdb process
--scheduler``), two ``photdb process`` commands at once on one database, and a
worker of that cluster killed (SIGKILL) while it holds an image. The claim SQL is tested on its
own first.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest

from conftest import new_database
from photdb.db import connect
from photdb.survey.tests.cluster import HoldOnce, cli_env, dask_cluster, photdb

CONFIG_TOML = """
[calibration]
min_stars = 25

[variability]
nsigma = 6.0
"""


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    from photdb.sim import SimConfig
    from photdb.survey.simulated import make_survey

    cfg = SimConfig(nx=256, ny=128, n_chips=1, filters=("g",), n_epochs=2, n_references=1,
                    variable_fraction=0.2, amplitude_range_mag=(0.6, 1.5), seed=11)  # fmt: skip
    return make_survey(tmp_path_factory.mktemp("sim"), cfg)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real ``dask scheduler`` and two ``dask worker`` processes (w0, w1; nannies
    restart a killed worker)."""
    with dask_cluster(tmp_path_factory.mktemp("dask")) as address:
        yield address


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    """The tiny chip's settings (few calibration stars, 6 sigma), as `--config` reads them."""
    path = tmp_path_factory.mktemp("cfg") / "pipeline.toml"
    path.write_text(CONFIG_TOML)
    return path


def _config(survey, config_file):
    from photdb.pipeline import load_config

    return load_config(config_file, astrometric_catalog=survey.catalog)


def _cli_args(survey, config_file):
    return ["--config", config_file, "--astrometric-catalog", survey.catalog]


@pytest.fixture(scope="module")
def serial(template_settings, survey, config_file):
    """The rows of ``-j 1`` (in this process), and the number of images."""
    from photdb.survey.process import process
    from photdb.survey.simulated import load_survey

    with new_database(template_settings) as settings:
        load_survey(settings, survey)
        report = process(settings, jobs=1, config=_config(survey, config_file))
        assert not report.failed, [o.message for o in report.failed]
        yield _rows(settings), len(report.done)


def _rows(settings):
    """galsources and galvarobjs contents, minus ids and timestamps, in a stable order."""
    with connect("readonly", settings) as conn:
        src = conn.execute(
            "SELECT e.filename, i.hdu, s.ra, s.dec, s.mag, s.magerr, s.magerr_raw, s.flux,"
            " s.dflux, s.x, s.y, s.qf, s.rchi2, s.fracflux, s.flags, r.ra, r.dec"
            " FROM galsources s JOIN galimages i ON s.galimage_id = i.id"
            " JOIN galexposures e ON i.galexposure_id = e.id"
            " LEFT JOIN galsources r ON r.id = s.ref_id ORDER BY 1, 2, 3, 4, 5"
        ).fetchall()
        var = conn.execute(
            "SELECT e.filename, r.ra, r.dec, s.mag, v.dmag, v.significance FROM galvarobjs v"
            " JOIN galsources r ON r.id = v.refsource_id JOIN galsources s"
            " ON s.id = v.galsource_id JOIN galimages i ON v.galimage_id = i.id"
            " JOIN galexposures e ON i.galexposure_id = e.id ORDER BY 1, 2, 3"
        ).fetchall()
    assert src and var
    return src, var


def _claims(settings):
    """{image id: (claimant, attempts, outcome)} and the image statuses."""
    with connect("readonly", settings) as conn:
        rows = conn.execute("SELECT galimage_id, claimant, attempts, outcome FROM galclaims")
        claims = {r[0]: r[1:] for r in rows.fetchall()}
        status = dict(conn.execute("SELECT id, status FROM galimages").fetchall())
    return claims, status


# ----------------------------------------------------------------------------- claim SQL


def test_claim_lease_takeover_and_hold(template_settings, survey):
    from photdb.survey import claims
    from photdb.survey.simulated import load_survey

    with new_database(template_settings) as settings:
        load_survey(settings, survey)
        with connect("writer", settings, autocommit=True) as a, \
                connect("writer", settings, autocommit=True) as b:  # fmt: skip
            gid = a.execute("SELECT min(id) FROM galimages").fetchone()[0]
            policy = claims.ClaimPolicy(lease_s=60)
            first = claims.claim(a, gid, "host:1", policy)
            assert isinstance(first, claims.Claim) and first.attempts == 1
            busy = claims.claim(b, gid, "host:2", policy)
            assert isinstance(busy, claims.Refused) and busy.busy and "host:1" in busy.reason
            assert claims.renew(a, first, 60)
            # the row is locked (someone claims or stores it): SKIP LOCKED, no waiting
            with b.transaction():
                b.execute("SELECT 1 FROM galimages WHERE id = %s FOR UPDATE", [gid])
                locked = claims.claim(a, gid, "host:1", policy)
            assert isinstance(locked, claims.Refused) and locked.busy
            # the lease expires (its worker died): another claimant takes the image over
            a.execute("UPDATE galclaims SET lease_until = now() - interval '1 s'")
            second = claims.claim(b, gid, "host:2", policy)
            assert isinstance(second, claims.Claim) and second.attempts == 2
            assert not claims.renew(a, first, 60)  # the old claimant's heartbeat sees it lost
            with a.transaction(), a.cursor() as cur:
                assert not claims.hold(cur, first)  # ... and may not store the image
            with b.transaction(), b.cursor() as cur:
                assert claims.hold(cur, second)
                cur.execute("UPDATE galimages SET status = 'done' WHERE id = %s", [gid])
                claims.finish(cur, second, "done")
            done = claims.claim(a, gid, "host:1", policy)
            assert isinstance(done, claims.Refused) and not done.busy
            assert done.reason == "already done"
            row = a.execute("SELECT claimant, attempts, outcome, finished_at IS NOT NULL"
                            " FROM galclaims WHERE galimage_id = %s", [gid]).fetchone()  # fmt: skip
            assert row == ("host:2", 2, "done", True)


def test_claim_gives_up_after_max_attempts_and_respects_since(template_settings, survey):
    from photdb.survey import claims
    from photdb.survey.simulated import load_survey

    with new_database(template_settings) as settings:
        load_survey(settings, survey)
        with connect("writer", settings, autocommit=True) as conn:
            gid, other = [r[0] for r in conn.execute(
                "SELECT id FROM galimages ORDER BY id LIMIT 2").fetchall()]  # fmt: skip
            policy = claims.ClaimPolicy(lease_s=60, max_attempts=2)
            for k in range(2):
                c = claims.claim(conn, gid, f"host:{k}", policy)
                assert isinstance(c, claims.Claim) and c.attempts == k + 1
                conn.execute("UPDATE galclaims SET lease_until = now() - interval '1 s'")
            gave_up = claims.claim(conn, gid, "host:9", policy)
            assert isinstance(gave_up, claims.Refused) and not gave_up.busy
            status, failure = conn.execute("SELECT status, failure FROM galimages WHERE id = %s",
                                           [gid]).fetchone()  # fmt: skip
            assert status == "failed" and "2 attempts" in failure and "\n" not in failure
            # a run started before another failed the image does not retry it
            since = claims.database_now(conn)
            c = claims.claim(conn, other, "host:1", policy)
            with conn.transaction(), conn.cursor() as cur:
                assert claims.hold(cur, c)
                cur.execute("UPDATE galimages SET status = 'failed' WHERE id = %s", [other])
                claims.finish(cur, c, "failed")
            retry = claims.ClaimPolicy(lease_s=60, retry_failed=True, since=since)
            again = claims.claim(conn, other, "host:2", retry)
            assert isinstance(again, claims.Refused) and "during this run" in again.reason
            later = claims.ClaimPolicy(lease_s=60, retry_failed=True)
            assert isinstance(claims.claim(conn, other, "host:2", later), claims.Claim)
            states = claims.image_states(conn, [gid, other, -1], later)
            assert [s.status for s in states] == ["failed", "failed", None]
            assert [s.live for s in states] == [False, True, False]


def test_heartbeat_renews_the_lease_until_the_claim_is_taken_over(template_settings, survey):
    from photdb.survey import claims
    from photdb.survey.simulated import load_survey

    def wait_for(cond, what):
        deadline = time.monotonic() + 60
        while not cond():
            assert time.monotonic() < deadline, what
            time.sleep(0.1)

    with new_database(template_settings) as settings:
        load_survey(settings, survey)
        with connect("writer", settings, autocommit=True) as conn:
            gid = conn.execute("SELECT min(id) FROM galimages").fetchone()[0]
            mine = claims.claim(conn, gid, "host:1", claims.ClaimPolicy(lease_s=1.0))
            beat = claims.Heartbeat(settings, mine, 1.0)
            try:
                first = conn.execute("SELECT lease_until FROM galclaims").fetchone()[0]
                wait_for(lambda: conn.execute("SELECT lease_until FROM galclaims").fetchone()[0]
                         > first, "the lease was never renewed")  # fmt: skip
                assert not beat.lost.is_set()
                # taken over (as after an expiry): the heartbeat notices and stops
                conn.execute("UPDATE galclaims SET lease_until = now() - interval '1 s'")
                theirs = claims.claim(conn, gid, "host:2", claims.ClaimPolicy(lease_s=60))
                assert isinstance(theirs, claims.Claim)
                wait_for(beat.lost.is_set, "the heartbeat did not see its claim lost")
            finally:
                beat.stop()
            row = conn.execute("SELECT claimant, attempts FROM galclaims").fetchone()
            assert row == ("host:2", 2)


# ----------------------------------------------------------------------------- engine


def test_scheduler_with_two_workers_gives_the_rows_of_one_job(
    serial, cluster, template_settings, survey, config_file
):
    from photdb.survey.simulated import load_survey

    rows, n_images = serial
    with new_database(template_settings) as settings:
        load_survey(settings, survey)
        proc = photdb(cli_env(settings), "process", "--scheduler", cluster,
                      *_cli_args(survey, config_file))  # fmt: skip
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert f"processed {n_images} image(s)" in out
        assert _rows(settings) == rows
        claims, status = _claims(settings)
    done = {g for g, s in status.items() if s == "done"}
    assert set(claims) <= done and len(claims) == n_images
    for claimant, attempts, outcome in claims.values():
        # computed on the workers (host:pid/worker-name), each once
        assert re.fullmatch(r".+:\d+/w[01]", claimant) and attempts == 1 and outcome == "done"


def test_two_runs_at_once_compute_each_image_once(serial, template_settings, survey, config_file):
    from photdb.survey.simulated import load_survey

    rows, n_images = serial
    with new_database(template_settings) as settings:
        load_survey(settings, survey)
        env = cli_env(settings)
        procs = [photdb(env, "process", "-j", "1", *_cli_args(survey, config_file))
                 for _ in range(2)]  # fmt: skip
        results = [p.communicate(timeout=600) for p in procs]
        for p, (_, err) in zip(procs, results, strict=True):
            assert p.returncode == 0, err
        counts = [re.search(r"processed (\d+) image", out) for out, _ in results]
        # each image was computed by exactly one of the two runs; a run reports the images
        # it planned that the other finished (all of them, unless it planned late)
        done = [int(m.group(1)) for m in counts]
        assert sum(done) == n_images
        seen = [re.search(r"(\d+) image\(s\) finished by another run", out) for out, _ in results]
        seen = [int(m.group(1)) if m else 0 for m in seen]
        assert all(d + o <= n_images for d, o in zip(done, seen, strict=True)) and any(seen)
        assert _rows(settings) == rows
        claims, _ = _claims(settings)
    assert len(claims) == n_images
    assert all(attempts == 1 and outcome == "done" for _, attempts, outcome in claims.values())


def test_worker_killed_mid_image_is_done_once_after_its_lease(
    serial, cluster, template_settings, survey, config_file, tmp_path
):
    from photdb.survey.process import Hooks, process
    from photdb.survey.simulated import load_survey

    rows, n_images = serial
    marker = tmp_path / "victim.pid"
    killed: list[int] = []

    def kill_when_held() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if marker.exists() and marker.read_text():
                pid = int(marker.read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.1)

    with new_database(template_settings) as settings:
        load_survey(settings, survey)
        with connect("readonly", settings) as conn:
            victim = conn.execute(
                "SELECT i.id FROM galimages i JOIN galexposures e ON e.id = i.galexposure_id"
                " WHERE NOT e.is_reference ORDER BY e.mjd LIMIT 1"
            ).fetchone()[0]
        killer = threading.Thread(target=kill_when_held, daemon=True)
        killer.start()
        hooks = Hooks(after_claim=HoldOnce(victim, str(marker)))
        report = process(settings, scheduler=cluster, config=_config(survey, config_file),
                          lease_s=5.0, hooks=hooks)  # fmt: skip
        killer.join(timeout=5)
        assert len(killed) == 1
        assert not report.failed, [o.message for o in report.failed]
        assert sorted(o.galimage_id for o in report.done) == sorted(
            {o.galimage_id for o in report.done})  # fmt: skip
        assert len(report.done) == n_images
        assert _rows(settings) == rows
        claims, _ = _claims(settings)
    claimant, attempts, outcome = claims.pop(victim)
    assert attempts == 2 and outcome == "done"
    # the others were computed once: their heartbeats kept the 5 s leases alive
    assert all(a == 1 and o == "done" for _, a, o in claims.values())
    assert not claimant.split("/")[0].endswith(f":{killed[0]}")  # someone else finished it


def test_bad_scheduler_is_one_line(db_settings, tmp_path):
    missing = tmp_path / "no-such-scheduler.json"
    proc = photdb(cli_env(db_settings), "process", "--scheduler", missing)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in err
    assert f"--scheduler {missing}: neither" in err and len(err.strip().splitlines()) == 1
