"""Ingest FITS files into the archive tables, one transaction per file.

One file becomes one ``galexposures`` row; each of its image HDUs one
``observations`` row, one ``galimages`` row (same id) and one
``metadata_obs_json`` row. The file's SHA-256 is its identity: a file seen
before is a no-op, and a different file at an already-ingested path and name is
refused, never overwritten.
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
from photdb.archive.fitsfiles import ExposureError, ExposureRecord, find_fits, read_exposure
from photdb.archive.headers import HeaderError, HeaderMaps

__all__ = ["FileResult", "IngestReport", "ingest_exposure", "ingest_paths"]

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


class _Refused(Exception):
    """A file the database side refuses (conflict, unknown name)."""


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
    name = name[:64]
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
    coordequ, coordequsrc, type, filename, path_to_fits, mjd, timesys)
VALUES (%s, %s, %s, %s, %s::point, %s, %s, %s::spoint, %s, %s, %s, %s, %s, %s)
RETURNING id
"""


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
        row = cur.execute(
            "SELECT id, path, filename FROM galexposures WHERE sha256 = %s", [exposure.sha256]
        ).fetchone()
        if row:
            same = (row[1], row[2]) == (exposure.path, exposure.filename)
            text = "already present" + ("" if same else f" as {row[1]}/{row[2]}")
            return "present", f"{where}: {text}", row[0], ()
        row = cur.execute(
            "SELECT sha256 FROM galexposures WHERE path = %s AND filename = %s",
            [exposure.path, exposure.filename],
        ).fetchone()
        if row:
            raise _Refused(
                f"conflict: a different file (sha256 {row[0][:12]}...) was ingested "
                "under this path and name; refusing to overwrite"
            )
        obs_id = _name_id(
            cur, "observatories", exposure.observatory, create=create_missing, what="observatory"
        )
        named: dict[tuple[str, str | None], int | None] = {}

        def name_id(table: str, name: str | None, what: str) -> int | None:
            """_name_id once per name in this file (a DECam file has 60 images)."""
            if (table, name) not in named:
                extra = {"observatory_id": obs_id} if table == "telescopes" else None
                named[table, name] = _name_id(cur, table, name, create=create_missing,
                                              what=what, extra=extra)  # fmt: skip
            return named[table, name]

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
        ids = []
        for image in exposure.images:
            o = image.observation
            tid = name_id("telescopes", o.telescope, "telescope")
            iid = name_id("instruments", o.instrument, "instrument")
            (oid,) = cur.execute(
                _OBS_INSERT,
                [
                    o.dateobs,
                    o.accumtime,
                    tid,
                    iid,
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
            ids.append(oid)
    n = len(ids)
    return "ingested", f"{where}: ingested, {n} image{'s' * (n != 1)}", exp_id, tuple(ids)


@dataclass(frozen=True)
class _Options:
    create_missing: bool = True
    dry_run: bool = False
    maps: HeaderMaps | None = field(default=None)


def _one(conn: psycopg.Connection, path: Path, opts: _Options) -> FileResult:
    try:
        exposure = read_exposure(path, maps=opts.maps)
    except (ExposureError, HeaderError) as exc:
        return FileResult(str(path), "failed", str(exc))
    except OSError as exc:
        return FileResult(str(path), "failed", f"{path}: cannot read ({exc.strerror or exc})")
    try:
        with conn.transaction() as tx:
            status, message, exp_id, ids = ingest_exposure(
                conn, exposure, create_missing=opts.create_missing
            )
            if opts.dry_run:
                message = message.replace(": ingested", ": would be ingested (dry run)")
                exp_id, ids = None, ()
                raise psycopg.Rollback(tx)  # leaves the block quietly, rolled back
    except _Refused as exc:
        return FileResult(str(path), "failed", f"{path}: {exc}", warnings=exposure.warnings)
    except psycopg.Error as exc:
        text = " ".join(str(exc).split())
        return FileResult(
            str(path),
            "failed",
            f"{path}: database refused the file ({text})",
            warnings=exposure.warnings,
        )
    return FileResult(str(path), status, message, exp_id, ids, exposure.warnings)


def ingest_paths(
    paths: str | Path | Iterable[str | Path],
    *,
    conn: psycopg.Connection | None = None,
    settings: object | None = None,
    create_missing: bool = True,
    dry_run: bool = False,
    maps: HeaderMaps | None = None,
    progress: Callable[[int, int, FileResult], None] | None = None,
) -> IngestReport:
    """Ingest every FITS file under ``paths``.

    Parameters
    ----------
    paths : path or iterable of paths
        Files and directories (walked recursively, see :func:`find_fits`).
    conn : psycopg.Connection, optional
        Connection to use (each file is its own transaction, or a savepoint
        if the caller has one open). Default: ``photdb.db.connect("writer",
        settings)``, closed at the end.
    settings : photdb.settings.Settings, optional
        Used only when ``conn`` is not given.
    create_missing : bool
        Create telescopes/instruments/observatories named in headers but not
        yet in the database; when False such a file fails, naming the name.
    dry_run : bool
        Read, verify and write every file, then roll each transaction back.
    maps : HeaderMaps, optional
        Filter/mode maps (:func:`~photdb.archive.headers.load_maps`).
    progress : callable, optional
        Called as ``progress(done, total, result)`` after every file.

    Returns
    -------
    IngestReport
        A file that fails leaves nothing in the database; the rest go on.
    """
    files = find_fits(paths)
    opts = _Options(create_missing=create_missing, dry_run=dry_run, maps=maps)
    own = conn is None
    if own:
        from photdb.db import connect

        conn = connect("writer", settings=settings)  # type: ignore[arg-type]
    start = time.perf_counter()
    results = []
    try:
        for done, path in enumerate(files, 1):
            result = _one(conn, path, opts)
            results.append(result)
            if progress is not None:
                progress(done, len(files), result)
    finally:
        if own:
            conn.close()
    return IngestReport(tuple(results), time.perf_counter() - start, dry_run)
