"""One database and one real server for all the web tests (module-scoped would build it
three times: the pages, the VO services and the browser tests share it).

The database holds a small simulated survey processed by the real pipeline (so the
candidates have FITS files for their stamps), the archive fixtures of
``archive/tests/test_query.py`` and stellarphot's EY UMa night loaded with
``photdb diffphot``. ``serve.py`` runs the app under uvicorn on a free loopback
port in a subprocess.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import new_database


@dataclass(frozen=True)
class Server:
    base: str
    settings: object
    trace: Path
    log: Path
    data: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sim_config():
    from photdb.sim import SimConfig

    return SimConfig(nx=256, ny=128, n_chips=1, filters=("g", "r"), n_epochs=3,
                     n_references=1, variable_fraction=0.2,
                     amplitude_range_mag=(0.6, 1.5), seed=7)  # fmt: skip


def _fill(settings, tmp: Path) -> None:
    from dataclasses import replace

    from photdb.archive.tests.test_query import populate
    from photdb.pipeline import PipelineConfig
    from photdb.survey.process import process
    from photdb.survey.simulated import load_survey, make_survey

    survey = make_survey(tmp / "sim", _sim_config())
    load_survey(settings, survey)
    cfg = PipelineConfig(astrometric_catalog=str(survey.catalog))
    cfg = replace(cfg, calibration=replace(cfg.calibration, min_stars=25),
                  variability=replace(cfg.variability, nsigma=6.0))  # fmt: skip
    report = process(settings, jobs=2, config=cfg)
    assert not report.failed, [o.message for o in report.failed]
    archive = tmp / "archive"
    archive.mkdir()
    populate(settings, archive)


@pytest.fixture(scope="session")
def web(template_settings, tmp_path_factory):
    """A running server over a filled database: :class:`Server`."""
    tmp = tmp_path_factory.mktemp("web")
    trace, logfile = tmp / "trace.jsonl", tmp / "server.log"
    with new_database(template_settings) as settings:
        _fill(settings, tmp)
        port = _free_port()
        env = dict(os.environ, DB_NAME=settings.dbname)
        with open(logfile, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "photdb.web.tests.serve", "--port", str(port),
                 "--trace", str(trace), "--timeout", "3"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if httpx.get(base + "/tap/availability", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"server did not start: {logfile.read_text()[-2000:]}")
                time.sleep(0.3)
            yield Server(base, settings, trace, logfile, tmp)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            text = logfile.read_text(errors="replace")
            assert "Traceback" not in text, text[-3000:]
