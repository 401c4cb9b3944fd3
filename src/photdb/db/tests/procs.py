"""Helpers for tests that run real ``photdb`` processes against a throw-away home.

Each home gets its own embedded cluster (fsync off); :func:`destroy` removes it.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
from astropy.table import Table

from photdb.archive.tests.fitsfactory import write_maxim

#: Objects used by the process tests: three named stars and one by Gaia id only.
STARS = [
    ("1972957892448494592", "V* SS Cyg", "SS Cyg", 325.679, 43.5862),
    ("1650000000000000001", "TYC 4568-471-1", None, 259.95, 76.70),
    ("1234567890123456789", None, "EY UMa", 135.5865, 49.81926),
    ("1111111111111111111", None, None, 10.0, 10.0),
]


def home_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a command using the embedded cluster in ``home`` (fsync off)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "PHOTDB_"))}
    env.update(
        PHOTDB_HOME=str(home),
        PHOTDB_ENV_FILE=str(home.parent / "absent.env"),
        PHOTDB_NO_FSYNC="1",
        COLUMNS="200",
        NO_COLOR="1",
    )
    env.update(extra)
    return env


def start(env: dict[str, str], *args: object) -> subprocess.Popen:
    """Start ``photdb ARGS`` (stdin closed, output captured)."""
    return subprocess.Popen(
        [sys.executable, "-m", "photdb", *map(str, args)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(env: dict[str, str], *args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``photdb ARGS`` to the end."""
    return subprocess.run(
        [sys.executable, "-m", "photdb", *map(str, args)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kill(proc: subprocess.Popen) -> int:
    """SIGKILL ``proc``, reap it and close its pipes; return its exit status."""
    proc.kill()
    proc.communicate()
    return proc.returncode


def finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[tuple[int, str, str]]:
    """Wait for every process; (exit status, stdout, stderr) each."""
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout, stderr))
    return out


def write_folder(folder: Path, seed: int = 1, n: int = 3) -> list[Path]:
    """``n`` small, distinct MaxIm frames in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_maxim(folder / f"frame_{seed}_{k}.fit", seed=seed * 100 + k) for k in range(n)]


def write_objects(path: Path) -> Path:
    """The :data:`STARS` as an ECSV object list."""
    t = Table(rows=STARS, names=("source_id", "main_id", "vsx_name", "ra", "dec"))
    t.write(path, overwrite=True)
    return path


def write_points(path: Path, n: int, *, start_jd: float, seed: int = 0) -> Path:
    """``n`` points per star of :data:`STARS` (by Gaia id) as CSV."""
    rng = np.random.default_rng(seed)
    gaia = np.repeat([s[0] for s in STARS], n)
    jd = np.tile(start_jd + np.arange(n) * 0.01, len(STARS))
    Table(
        {
            "jd": jd,
            "mag": np.round(12 + 0.1 * rng.standard_normal(jd.size), 4),
            "mag_err": np.full(jd.size, 0.01),
            "object": [f"Gaia DR3 {g}" for g in gaia],
        }
    ).write(path, format="ascii.csv", overwrite=True)
    return path


def secrets_of(home: Path) -> list[str]:
    """The role passwords of the embedded cluster in ``home``."""
    lines = (home / "credentials.env").read_text().splitlines()
    return [ln.split("=", 1)[1] for ln in lines if "=" in ln and not ln.startswith("#")]


def leaks(home: Path, extra: list[Path] = ()) -> list[str]:
    """Files under ``home`` (the cluster and its log included) that hold a password.

    ``credentials.env`` and ``pgpass`` may, but only readable by their owner.
    Also looks at the environment and command line of the running server.
    """
    words = [s.encode() for s in secrets_of(home)]
    found = []
    roots = [home, (home / "pg").resolve(), *extra]
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                if not any(w in data for w in words):
                    continue
                private = path.name in ("credentials.env", "pgpass") and path.parent == home
                if not private or path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                    found.append(str(path))
    pidfile = (home / "pg").resolve() / "data" / "postmaster.pid"
    if pidfile.exists():
        pid = pidfile.read_text().split()[0]
        for part in ("environ", "cmdline"):
            data = Path(f"/proc/{pid}/{part}").read_bytes()
            if any(w in data for w in words):
                found.append(f"/proc/{pid}/{part} (the server)")
    return sorted(set(found))


def destroy(home: Path) -> None:
    """Stop and delete the cluster of ``home`` (and its /var/lib/photdb target)."""
    from photdb.db.server import EmbeddedServer

    if home.exists():
        EmbeddedServer(home).destroy()
