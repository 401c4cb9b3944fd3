"""Walk folders for FITS files.

Special files (FIFOs, devices, sockets), names that are not UTF-8 and
unreadable folders are skipped with one line each, and the walk goes on. A FIFO
is never opened (reading one would block forever).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FITS_SUFFIXES", "FitsWalk", "find_fits", "printable", "walk_fits"]

#: File name endings taken as FITS (compared case-insensitively).
FITS_SUFFIXES = (".fit", ".fits", ".fts", ".fz", ".fits.gz", ".fit.gz", ".fts.gz")


def printable(path: str | Path) -> str:
    """A path as text that can always be printed (undecodable bytes as \\xNN)."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class FitsWalk:
    """What :func:`walk_fits` found: FITS files, and one line per entry it skipped."""

    files: tuple[Path, ...] = ()
    skipped: tuple[str, ...] = field(default_factory=tuple)


def _is_fits_name(name: str) -> bool:
    return name.lower().endswith(FITS_SUFFIXES)


def _usable(path: Path, skipped: list[str]) -> bool:
    """A regular file with a UTF-8 name; anything else gets one line in ``skipped``."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        skipped.append(f"{printable(path)}: file name is not valid UTF-8; skipped")
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        skipped.append(f"{printable(path)}: cannot read ({exc.strerror or exc}); skipped")
        return False
    if not stat.S_ISREG(mode):
        if stat.S_ISFIFO(mode):
            kind = "a FIFO"
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kind = "a device"
        else:
            kind = "a socket" if stat.S_ISSOCK(mode) else "a special file"
        skipped.append(f"{printable(path)}: {kind}, not a regular file; skipped")
        return False
    return True


def walk_fits(paths: str | Path | Iterable[str | Path]) -> FitsWalk:
    """FITS files among ``paths`` (directories walked recursively), sorted, unique.

    Files named explicitly are kept whatever their suffix; inside directories
    only names ending in :data:`FITS_SUFFIXES` (any case) are taken. FIFOs,
    devices, sockets, names that are not UTF-8 and unreadable directories are
    skipped with one line each, and the walk goes on.

    Raises
    ------
    FileNotFoundError
        A path named explicitly does not exist.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    found: set[Path] = set()
    skipped: list[str] = []

    def _unreadable(exc: OSError) -> None:
        skipped.append(f"{printable(exc.filename)}: cannot read ({exc.strerror}); skipped")

    for p in map(Path, paths):
        if not os.path.lexists(p):
            raise FileNotFoundError(f"{printable(p)}: no such file or directory")
        if p.is_dir():
            for root, dirs, names in os.walk(p, onerror=_unreadable):
                dirs.sort()
                for name in names:
                    f = Path(root) / name
                    if _is_fits_name(name) and _usable(f, skipped):
                        found.add(f)
        elif _usable(p, skipped):
            found.add(p)
    return FitsWalk(tuple(sorted(found)), tuple(skipped))


def find_fits(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """The files of :func:`walk_fits` (what it skipped is dropped: use ``walk_fits``)."""
    return list(walk_fits(paths).files)
