"""Connection settings: environment variables, a ``.env`` file, or the embedded default.

The variable names are the archive document's (``DB_HOST``, ``DB_NAME``,
``DB_WRITER_USER`` ...) plus an admin pair for migrations. Real environment
variables win over ``.env``. With no ``DB_HOST`` anywhere, photdb runs its own
PostgreSQL cluster under ``$PHOTDB_HOME`` (default ``~/.local/share/photdb``).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from dotenv import dotenv_values

from photdb.errors import ConfigError

log = logging.getLogger("photdb")

ROLES = ("admin", "writer", "readonly")

#: Role names used by the embedded cluster (and the defaults for a real server).
DEFAULT_USERS = {
    "admin": "photdb_admin",
    "writer": "writer_user",
    "readonly": "readonly_user",
}


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """Return ``$PHOTDB_HOME`` or ``~/.local/share/photdb``."""
    environ = os.environ if environ is None else environ
    home = environ.get("PHOTDB_HOME")
    if home:
        return Path(home).expanduser().absolute()
    return Path("~/.local/share/photdb").expanduser().absolute()


@dataclass(frozen=True)
class Settings:
    """Where the database is and who may connect.

    Passwords are excluded from ``repr`` so that logging a Settings object never
    shows them.

    Parameters
    ----------
    embedded : bool
        True when photdb manages its own cluster under ``home``.
    home : Path
        ``$PHOTDB_HOME``: the embedded cluster, its credentials and pgpass file.
    host, port, dbname : str, int, str
        Server address and database name (for the embedded cluster these are
        filled in once it has started).
    users, passwords : dict
        Role name and password for ``admin``, ``writer`` and ``readonly``.
    readonly_timeout_s : float
        ``statement_timeout`` of every read-only session photdb opens [s]
        (``PHOTDB_READONLY_TIMEOUT_S``, default 300; 0 = none).
    max_unpacked_mb : int
        Largest size a ``.gz`` FITS file, or one tile-compressed image, may
        unpack to [MB] (``PHOTDB_MAX_UNPACKED_MB``, default 1024); beyond it
        the file is skipped as a possible decompression bomb.
    no_fsync : bool
        Create the embedded cluster with fsync off (``PHOTDB_NO_FSYNC=1``):
        for throw-away clusters (tests, benchmarks) only.
    """

    embedded: bool
    home: Path
    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = "photdb"
    users: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_USERS))
    passwords: dict[str, str | None] = field(default_factory=dict, repr=False)
    readonly_timeout_s: float = 300.0
    max_unpacked_mb: int = 1024
    no_fsync: bool = False

    def user(self, role: str) -> str:
        """Return the login name of ``role`` (admin, writer or readonly)."""
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        return self.users[role]

    def password(self, role: str) -> str | None:
        """Return the password of ``role`` (never print it)."""
        self.user(role)
        return self.passwords.get(role)

    def with_dbname(self, dbname: str) -> Settings:
        """Return a copy pointing at another database on the same server."""
        return replace(self, dbname=dbname)

    def describe(self, role: str = "writer") -> str:
        """``user@host:port/dbname`` for messages: no password."""
        return f"{self.user(role)}@{self.host}:{self.port}/{self.dbname}"


_ENV_KEYS = {
    "admin": ("DB_ADMIN_USER", "DB_ADMIN_PASS"),
    "writer": ("DB_WRITER_USER", "DB_WRITER_PASS"),
    "readonly": ("DB_READONLY_USER", "DB_READONLY_PASS"),
}


def _read_env_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    mode = path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("%s is readable by other users; run: chmod 600 %s", path, path)
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def load_settings(
    env_file: str | Path | None = ".env",
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read settings from the environment and an optional ``.env`` file.

    Parameters
    ----------
    env_file : str or Path or None
        The ``.env`` file to read (default ``./.env``); None reads none.
        ``$PHOTDB_ENV_FILE`` overrides the default.
    environ : mapping, optional
        The process environment (default ``os.environ``); it wins over the file.

    Returns
    -------
    Settings
        ``embedded=True`` when no ``DB_HOST`` is configured.
    """
    environ = dict(os.environ if environ is None else environ)
    if env_file == ".env" and environ.get("PHOTDB_ENV_FILE"):
        env_file = environ["PHOTDB_ENV_FILE"]
    values: dict[str, str] = {}
    if env_file is not None:
        values.update(_read_env_file(Path(env_file)))
    values.update({k: v for k, v in environ.items() if k.startswith(("DB_", "PHOTDB_"))})
    home = default_home(values)
    common = {
        "readonly_timeout_s": _number(values, "PHOTDB_READONLY_TIMEOUT_S", 300.0),
        "max_unpacked_mb": int(_number(values, "PHOTDB_MAX_UNPACKED_MB", 1024)),
        "no_fsync": values.get("PHOTDB_NO_FSYNC", "").strip().lower() in ("1", "true", "yes", "on"),
    }

    if not values.get("DB_HOST"):
        return Settings(embedded=True, home=home, dbname=values.get("DB_NAME", "photdb"), **common)

    users = dict(DEFAULT_USERS)
    passwords: dict[str, str | None] = {}
    for role, (ukey, pkey) in _ENV_KEYS.items():
        if values.get(ukey):
            users[role] = values[ukey]
        passwords[role] = values.get(pkey)
    try:
        port = int(values.get("DB_PORT", "5432"))
    except ValueError:
        raise ConfigError(f"DB_PORT must be a number, not {values['DB_PORT']!r}") from None
    return Settings(
        embedded=False,
        home=home,
        host=values["DB_HOST"],
        port=port,
        dbname=values.get("DB_NAME", "photdb"),
        users=users,
        passwords=passwords,
        **common,
    )


def _number(values: Mapping[str, str], key: str, default: float) -> float:
    text = values.get(key, "").strip()
    if not text:
        return default
    try:
        number = float(text)
    except ValueError:
        raise ConfigError(f"{key} must be a number, not {text!r}") from None
    if not (number >= 0 and number < float("inf")):
        raise ConfigError(f"{key} must be a finite number >= 0, not {text!r}")
    return number
