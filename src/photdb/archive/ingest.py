"""Ingest FITS files into the archive tables, one transaction per file.

One file becomes one ``galexposures`` row; each of its image HDUs one
``observations`` row, one ``galimages`` row (same id) and one
``metadata_obs_json`` row. The file's SHA-256 is its identity: a file seen
before is a no-op (or gets back the images deleted from it), and a different
file at an already-ingested path and name is refused, never overwritten.

Any number of ingests may run at once, on the same files too: when two insert
the same file, the database's unique keys let one win and the other, retried,
finds it present. A lost connection to the server stops the run at once with
one line; files already committed stay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from photdb.archive.catalogues import spoint_text
from photdb.archive.fitsfiles import ExposureError, ExposureRecord, ImageRecord, read_exposure
from photdb.archive.headers import HeaderError, HeaderMaps
from photdb.archive.walk import printable, walk_fits
from photdb.errors import DatabaseError

__all__ = ["FileResult", "IngestReport", "LostServer", "ingest_exposure", "ingest_paths"]

Status = Literal["ingested", "present", "failed"]


@dataclass(frozen=True)
class FileResult:
    """What happened to one file; ``message`` is one line naming the file."""

    path: str
    status: Status
    message: str
    exposure_id: int | None = None
    observation_ids: tuple[int, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class IngestReport:
    """Per-file results of :func:`ingest_paths` and the counts over them."""

    results: tuple[FileResult, ...] = ()
    seconds: float = 0.0
    dry_run: bool = False

    def count(self, status: Status) -> int:
        """Number of files with ``status``."""
        return sum(r.status == status for r in self.results)

    @property
    def ingested(self) -> int:
        return self.count("ingested")

    @property
    def present(self) -> int:
        return self.count("present")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def messages(self) -> list[str]:
        """The one-line message of every file that was not simply ingested."""
        return [r.message for r in self.results if r.status != "ingested"]

    @property
    def warnings(self) -> list[str]:
        """Every warning of every file, one line each, naming the file."""
        return [f"{r.path}: {w}" for r in self.results for w in r.warnings]


class LostServer(DatabaseError):
    """The connection to the server broke during an ingest; the run stopped there."""


class _Refused(Exception):
    """A file the database side refuses (conflict, unknown name)."""


class _Again(Exception):
    """A concurrent ingest changed what this one saw: try the file again."""


#: Errors a concurrent ingest of the same file can cause; the file is tried again.
_RACES = (
    _Again,
    psycopg.errors.UniqueViolation,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
)


_NAMED = {"telescopes", "instruments", "observatories"}


def _name_id(
    cur: psycopg.Cursor,
    table: str,
    name: str | None,
    *,
    create: bool,
    what: str,
    extra: dict[str, object] | None = None,
) -> int | None:
    if name is None:
        return None
    assert table in _NAMED
    ident = sql.Identifier(table)
    row = cur.execute(sql.SQL("SELECT id FROM {} WHERE name = %s").format(ident), [name]).fetchone()
    if row:
        return row[0]
    if not create:
        raise _Refused(f"unknown {what} {name!r} (not in {table}; create it or allow creation)")
    cols = {"name": name, **(extra or {})}
    query = sql.SQL(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (name) DO NOTHING RETURNING id"
    ).format(
        ident,
        sql.SQL(", ").join(map(sql.Identifier, cols)),
        sql.SQL(", ").join(sql.Placeholder() * len(cols)),
    )
    row = cur.execute(query, list(cols.values())).fetchone()
    if row is None:  # created meanwhile by a concurrent ingest
        row = cur.execute(
            sql.SQL("SELECT id FROM {} WHERE name = %s").format(ident), [name]
        ).fetchone()
    return row[0]


def _spoint(coord: tuple[float, float] | None) -> str | None:
    return None if coord is None else spoint_text(*coord)


def _point(xy: tuple[float, float] | None) -> str | None:
    return None if xy is None else f"({xy[0]!r},{xy[1]!r})"


_OBS_INSERT = """
INSERT INTO observations (dateobs, accumtime, telescope_id, instrument_id, fov, mode, band,
    coordequ, coordequsrc, type, filename, path_to_fits, mjd, timesys, ingest_notes)
VALUES (%s, %s, %s, %s, %s::point, %s, %s, %s::spoint, %s, %s, %s, %s, %s, %s, %s)
RETURNING id
"""


def _insert_image(cur: psycopg.Cursor, exp_id: int, image: ImageRecord, name_id) -> int:
    o = image.observation
    (oid,) = cur.execute(
        _OBS_INSERT,
        [
            o.dateobs,
            o.accumtime,
            name_id("telescopes", o.telescope, "telescope"),
            name_id("instruments", o.instrument, "instrument"),
            _point(o.fov),
            o.mode,
            o.band,
            _spoint(o.coordequ),
            o.coordequsrc,
            o.type,
            o.filename,
            o.path_to_fits,
            o.mjd,
            o.timesys,
            list(o.warnings) or None,
        ],
    ).fetchone()
    cur.execute(
        "INSERT INTO galimages (id, galexposure_id, hdu, extname, ccdnum, naxis1, naxis2)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [oid, exp_id, image.hdu, image.extname, image.ccdnum, image.naxis1, image.naxis2],
    )
    cur.execute(
        "INSERT INTO metadata_obs_json (observation_id, data) VALUES (%s, %s)",
        [oid, Jsonb(image.header_json)],
    )
    return oid


def ingest_exposure(
    conn: psycopg.Connection, exposure: ExposureRecord, *, create_missing: bool = True
) -> tuple[Status, str, int, tuple[int, ...]]:
    """Write one parsed file inside the caller's transaction.

    Returns
    -------
    status, message, exposure id, observation ids
        ``('present', ...)`` when a file with the same SHA-256 is already there.

    Raises
    ------
    _Refused
        Path/name conflict or an unknown name with ``create_missing=False``.
    """
    where = f"{exposure.path}/{exposure.filename}"
    with conn.cursor() as cur:
        obs_id = None
        named: dict[tuple[str, str | None], int | None] = {}

        def name_id(table: str, name: str | None, what: str) -> int | None:
            """_name_id once per name in this file (a DECam file has 60 images)."""
            if (table, name) not in named:
                extra = {"observatory_id": obs_id} if table == "telescopes" else None
                named[table, name] = _name_id(cur, table, name, create=create_missing,
                                              what=what, extra=extra)  # fmt: skip
            return named[table, name]

        row = cur.execute(
            "SELECT id, path, filename FROM galexposures WHERE sha256 = %s FOR UPDATE",
            [exposure.sha256],
        ).fetchone()
        if row:
            same = (row[1], row[2]) == (exposure.path, exposure.filename)
            text = f"{where}: already present" + ("" if same else f" as {row[1]}/{row[2]}")
            hdus = cur.execute("SELECT hdu FROM galimages WHERE galexposure_id = %s", [row[0]])
            stored = {r[0] for r in hdus.fetchall()}
            missing = [im for im in exposure.images if im.hdu not in stored]
            if not missing:
                return "present", text, row[0], ()
            obs_id = _name_id(
                cur, "observatories", exposure.observatory, create=create_missing,
                what="observatory",
            )  # fmt: skip
            ids = tuple(_insert_image(cur, row[0], im, name_id) for im in missing)
            cur.execute(
                "UPDATE galexposures SET n_images = (SELECT count(*) FROM galimages"
                " WHERE galexposure_id = %s) WHERE id = %s",
                [row[0], row[0]],
            )
            n = len(ids)
            return "ingested", f"{text}; {n} missing image{'s' * (n != 1)} added", row[0], ids
        row = cur.execute(
            "SELECT sha256 FROM galexposures WHERE path = %s AND filename = %s",
            [exposure.path, exposure.filename],
        ).fetchone()
        if row and row[0] == exposure.sha256:
            raise _Again  # committed by a concurrent ingest between our two look-ups
        if row:
            raise _Refused(
                f"conflict: a different file (sha256 {row[0][:12]}...) was ingested "
                "under this path and name; refusing to overwrite"
            )
        obs_id = _name_id(
            cur, "observatories", exposure.observatory, create=create_missing, what="observatory"
        )
        tel_id = name_id("telescopes", exposure.telescope, "telescope")
        ins_id = name_id("instruments", exposure.instrument, "instrument")
        (exp_id,) = cur.execute(
            "INSERT INTO galexposures (sha256, filename, path, mjd, filter, exptime_s, n_images,"
            " telescope_id, instrument_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
            [
                exposure.sha256,
                exposure.filename,
                exposure.path,
                exposure.mjd,
                exposure.band,
                exposure.exptime,
                len(exposure.images),
                tel_id,
                ins_id,
            ],
        ).fetchone()
        ids = tuple(_insert_image(cur, exp_id, image, name_id) for image in exposure.images)
    n = len(ids)
    return "ingested", f"{where}: ingested, {n} image{'s' * (n != 1)}", exp_id, ids


@dataclass(frozen=True)
class _Options:
    create_missing: bool = True
    dry_run: bool = False
    maps: HeaderMaps | None = field(default=None)
    max_unpacked_mb: float = 1024


def _lost(conn: psycopg.Connection) -> bool:
    return conn.closed or conn.broken


def _write(conn: psycopg.Connection, exposure: ExposureRecord, opts: _Options):
    """One file in its own transaction (or savepoint); concurrent twins are retried."""
    for attempt in range(5):
        try:
            with conn.transaction() as tx:
                status, message, exp_id, ids = ingest_exposure(
                    conn, exposure, create_missing=opts.create_missing
                )
                if opts.dry_run:
                    message = message.replace(": ingested", ": would be ingested (dry run)")
                    message = message.replace("added", "would be added (dry run)")
                    exp_id, ids = None, ()
                    raise psycopg.Rollback(tx)  # leaves the block quietly, rolled back
            return status, message, exp_id, ids
        except _RACES:
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))  # the other transaction has finished: look again
    raise AssertionError("unreachable")


def _one(conn: psycopg.Connection, path: Path, opts: _Options) -> FileResult:
    name = printable(path)
    try:
        exposure = read_exposure(path, maps=opts.maps, max_unpacked_mb=opts.max_unpacked_mb)
    except (ExposureError, HeaderError) as exc:
        return FileResult(name, "failed", str(exc))
    except OSError as exc:
        return FileResult(name, "failed", f"{name}: cannot read ({exc.strerror or exc})")
    try:
        status, message, exp_id, ids = _write(conn, exposure, opts)
    except _Refused as exc:
        return FileResult(name, "failed", f"{name}: {exc}", warnings=exposure.warnings)
    except psycopg.Error as exc:
        if _lost(conn) or isinstance(exc, psycopg.OperationalError):
            raise LostServer(
                f"lost the connection to the database server while ingesting {name} "
                f"({' '.join(str(exc).split()) or type(exc).__name__}); stopped there"
            ) from None
        text = " ".join(str(exc).split())
        return FileResult(
            name,
            "failed",
            f"{name}: database refused the file ({text})",
            warnings=exposure.warnings,
        )
    return FileResult(name, status, message, exp_id, ids, exposure.warnings)


def ingest_paths(
    paths: str | Path | Iterable[str | Path],
    *,
    conn: psycopg.Connection | None = None,
    settings: object | None = None,
    create_missing: bool = True,
    dry_run: bool = False,
    maps: HeaderMaps | None = None,
    max_unpacked_mb: float | None = None,
    progress: Callable[[int, int, FileResult], None] | None = None,
) -> IngestReport:
    """Ingest every FITS file under ``paths``.

    Parameters
    ----------
    paths : path or iterable of paths
        Files and directories (walked recursively, see
        :func:`~photdb.archive.walk.walk_fits`; what the walk skips is
        reported as failed, one line each).
    conn : psycopg.Connection, optional
        Connection to use (each file is its own transaction, or a savepoint
        if the caller has one open). Default: ``photdb.db.connect("writer",
        settings)``, closed at the end.
    settings : photdb.settings.Settings, optional
        Used only when ``conn`` is not given, and for ``max_unpacked_mb``.
    create_missing : bool
        Create telescopes/instruments/observatories named in headers but not
        yet in the database; when False such a file fails, naming the name.
    dry_run : bool
        Read, verify and write every file, then roll each transaction back.
    maps : HeaderMaps, optional
        Filter/mode maps (:func:`~photdb.archive.headers.load_maps`).
    max_unpacked_mb : float, optional
        Decompression limit [MB] (default: ``settings.max_unpacked_mb``, 1024).
    progress : callable, optional
        Called as ``progress(done, total, result)`` after every file.

    Returns
    -------
    IngestReport
        A file that fails leaves nothing in the database; the rest go on.

    Raises
    ------
    LostServer
        The connection to the server broke: the run stops at once (files
        already committed stay).
    """
    walk = walk_fits(paths)
    if max_unpacked_mb is None:
        max_unpacked_mb = getattr(settings, "max_unpacked_mb", 1024)
    opts = _Options(create_missing, dry_run, maps, max_unpacked_mb)
    own = conn is None
    if own:
        from photdb.db import connect

        conn = connect("writer", settings=settings)  # type: ignore[arg-type]
    start = time.perf_counter()
    results = [FileResult(line.split(": ", 1)[0], "failed", line) for line in walk.skipped]
    total = len(walk.files) + len(results)
    try:
        if progress is not None:
            for done, result in enumerate(results, 1):
                progress(done, total, result)
        for path in walk.files:
            result = _one(conn, path, opts)
            results.append(result)
            if progress is not None:
                progress(len(results), total, result)
    finally:
        if own:
            conn.close()
    return IngestReport(tuple(results), time.perf_counter() - start, dry_run)
