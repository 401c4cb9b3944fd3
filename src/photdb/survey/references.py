"""Reference exposures per filter: marking, reference sets, stacked references.

``photdb reference`` records one *reference set* per filter (table
``galrefsets``, migration 0004):

* ``single`` - one exposure; its chips get full crowdsource catalogues.
* ``set`` - several exposures. The **primary** is the one with the best
  median seeing recorded in its chip headers (``FWHM`` pix or ``SEEING``
  arcsec), or, when the headers carry none, the earliest; ``primary=`` chooses
  it explicitly. The primary gets the full catalogue; every other member is
  forced at the primary's positions, calibrated to it and the magnitudes
  combined per source with an outlier-rejecting median
  (:func:`photdb.pipeline.reduce_reference_set`), so an artefact on one
  reference does not define the reference magnitude.
* ``stack`` - the members are combined into an aligned, outlier-rejected stack
  (:func:`photdb.pipeline.build_stacked_reference`), written to
  ``$PHOTDB_HOME/stacks/`` (:func:`photdb.pipeline.write_stack`: science HDUs in a
  FITS file, variance and mask in a ``.npz`` beside it), ingested as its own
  exposure (``observations.type = 'stack'``, ``is_reference``), and that exposure
  is the primary.

All members are flagged ``galexposures.is_reference``. A search chip is forced
at the catalogue of the primary's chip with the same CCDNUM, else EXTNAME, else
HDU, else the chip whose centre is nearest (footprint overlap). Marking new
references for a filter deactivates its previous set; images already processed
keep the reference they used (``galimages.reference``). The SQL is in
:mod:`photdb.survey.bookkeeping`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import psycopg
from astropy.io import fits

from photdb.archive.ingest import ingest_paths
from photdb.errors import PhotdbError
from photdb.pipeline import PipelineConfig, build_stacked_reference, read_chip, write_stack
from photdb.settings import load_settings
from photdb.survey import bookkeeping as book
from photdb.survey.bookkeeping import ReferenceSet

__all__ = [
    "ReferenceSet",
    "ReferenceSetError",
    "build_stack",
    "choose_primary",
    "mark_references",
    "resolve_exposures",
]


class ReferenceSetError(PhotdbError):
    """References cannot be marked (unknown exposure, a file that cannot be ingested...)."""


def _ingest_one(conn: psycopg.Connection, path: Path) -> int:
    report = ingest_paths([path], conn=conn)
    res = report.results[0]
    if res.exposure_id is None:
        raise ReferenceSetError(res.message)
    return res.exposure_id


def resolve_exposures(conn: psycopg.Connection, targets: Iterable[str | int]) -> list[int]:
    """Exposure ids of ``targets``: ids, or FITS files (ingested first when new)."""
    ids: list[int] = []
    for t in targets:
        s = str(t)
        if s.isdigit() and not Path(s).exists():
            eid = book.exposure_by_id(conn, int(s))
            if eid is None:
                raise ReferenceSetError(f"no exposure with id {s}")
            ids.append(eid)
            continue
        path = Path(s).expanduser()
        if not path.is_file():
            raise ReferenceSetError(f"{s}: neither an exposure id nor a file")
        path = path.resolve()
        eid = book.exposure_by_file(conn, str(path.parent), path.name)
        ids.append(eid if eid is not None else _ingest_one(conn, path))
    return list(dict.fromkeys(ids))


def choose_primary(conn: psycopg.Connection, exposure_ids: Sequence[int]) -> int:
    """Best header seeing, ties and missing seeing broken by the earliest MJD."""
    keyed = [
        (np.inf if see is None else round(float(see), 2), mjd, eid)
        for eid, mjd, see in book.exposure_seeing(conn, exposure_ids)
    ]
    return min(keyed)[2]


def build_stack(
    conn: psycopg.Connection,
    exposure_ids: Sequence[int],
    *,
    home: Path,
    config: PipelineConfig | None = None,
) -> int:
    """Stack the chips of ``exposure_ids`` (first = frame), write, ingest; new exposure id."""
    config = PipelineConfig() if config is None else config
    first_path, first_chips = book.exposure_chips(conn, exposure_ids[0])
    others = [(e, *book.exposure_chips(conn, e)) for e in exposure_ids[1:]]
    ((_, band),) = book.exposure_filters(conn, [exposure_ids[0]])
    digest = hashlib.sha256(
        (",".join(map(str, exposure_ids)) + config.provenance_id()).encode()
    ).hexdigest()[:12]
    outdir = home / "stacks"
    outdir.mkdir(parents=True, exist_ok=True)
    out = outdir / f"stack_{band}_{digest}.fits"
    done = book.exposure_by_file(conn, str(outdir.resolve()), out.name)
    if done is not None:  # the same members and settings were stacked before
        return done
    stacks = []
    for gid, hdu, _ext, _ccd in first_chips:
        images = [read_chip(first_path, hdu, config=config)]
        for oexp, opath, ochips in others:
            oid = book.matching_chip(conn, gid, oexp)
            ohdu = next((c[1] for c in ochips if c[0] == oid), None)
            if ohdu is not None:
                images.append(read_chip(opath, ohdu, config=config))
        stacks.append(build_stacked_reference(images, config=config))
    with fits.open(first_path) as hdul:
        primary = hdul[0].header.copy() if hdul[0].data is None else None
    write_stack(out, stacks, primary=primary)
    exposure_id = _ingest_one(conn, out)
    book.mark_stack(conn, exposure_id)
    return exposure_id


def mark_references(
    conn: psycopg.Connection,
    targets: Iterable[str | int],
    *,
    stack: bool = False,
    primary: str | int | None = None,
    home: Path | None = None,
    config: PipelineConfig | None = None,
) -> list[ReferenceSet]:
    """Make ``targets`` the references of their filters (one set per filter).

    Runs in one transaction. Returns the new active sets.
    """
    with conn.transaction():
        ids = resolve_exposures(conn, targets)
        if not ids:
            raise ReferenceSetError("no exposures given")
        prim = resolve_exposures(conn, [primary])[0] if primary is not None else None
        by_filter: dict[str, list[int]] = {}
        for eid, band in book.exposure_filters(conn, ids):
            if band is None:
                raise ReferenceSetError(f"exposure {eid} has no filter")
            by_filter.setdefault(band, []).append(eid)
        sets = []
        for band, members in sorted(by_filter.items()):
            first = prim if prim in members else choose_primary(conn, members)
            members = [first] + sorted(m for m in members if m != first)
            kind = "single" if len(members) == 1 else "set"
            primary_id = first
            if stack and len(members) > 1:
                kind = "stack"
                home = home or load_settings().home
                primary_id = build_stack(conn, members, home=home, config=config)
            sets.append(book.replace_reference_set(conn, band, kind, primary_id, members))
    return sets
