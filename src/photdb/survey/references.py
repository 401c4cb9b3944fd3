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
  ``$PHOTDB_HOME/stacks/`` (science HDUs in a FITS file, variance and mask in
  a ``.npz`` beside it), ingested as its own exposure (``observations.type =
  'stack'``, ``is_reference``), and that exposure is the primary.

All members are flagged ``galexposures.is_reference``. A search chip is forced
at the catalogue of the primary's chip with the same CCDNUM, else EXTNAME, else
HDU, else the chip whose centre is nearest (footprint overlap). Marking new
references for a filter deactivates its previous set; images already processed
keep the reference they used (``galimages.reference``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
from astropy.io import fits

from photdb.errors import PhotdbError

__all__ = [
    "ReferenceError",
    "ReferenceSet",
    "active_reference_sets",
    "choose_primary",
    "load_chip",
    "mark_references",
    "matching_chip",
    "resolve_exposures",
]


class ReferenceError(PhotdbError):
    """A reference cannot be marked (unknown exposure, mixed input...)."""


@dataclass(frozen=True)
class ReferenceSet:
    """The active references of one filter."""

    id: int
    filter: str
    kind: str
    primary_exposure_id: int
    member_exposure_ids: tuple[int, ...]


def resolve_exposures(conn: psycopg.Connection, targets: Iterable[str | int]) -> list[int]:
    """Exposure ids of ``targets``: ids, or FITS files (ingested first when new)."""
    ids: list[int] = []
    for t in targets:
        s = str(t)
        if s.isdigit() and not Path(s).exists():
            row = conn.execute("SELECT id FROM galexposures WHERE id = %s", [int(s)]).fetchone()
            if row is None:
                raise ReferenceError(f"no exposure with id {s}")
            ids.append(row[0])
            continue
        path = Path(s).expanduser()
        if not path.is_file():
            raise ReferenceError(f"{s}: neither an exposure id nor a file")
        path = path.resolve()
        row = conn.execute(
            "SELECT id FROM galexposures WHERE path = %s AND filename = %s",
            [str(path.parent), path.name],
        ).fetchone()
        if row is None:
            from photdb.archive.ingest import ingest_paths

            report = ingest_paths([path], conn=conn)
            res = report.results[0]
            if res.exposure_id is None:
                raise ReferenceError(res.message)
            row = (res.exposure_id,)
        ids.append(row[0])
    return list(dict.fromkeys(ids))


def _seeing_arcsec(conn: psycopg.Connection, exposure_id: int) -> float | None:
    row = conn.execute(
        """
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY COALESCE(
            (m.data->>'SEEING')::float8,
            (m.data->>'FWHM')::float8 * COALESCE((m.data->>'PIXSCAL1')::float8, 0.263)))
        FROM galimages i JOIN metadata_obs_json m ON m.observation_id = i.id
        WHERE i.galexposure_id = %s
          AND jsonb_typeof(COALESCE(m.data->'SEEING', m.data->'FWHM')) = 'number'
        """,
        [exposure_id],
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def choose_primary(conn: psycopg.Connection, exposure_ids: Sequence[int]) -> int:
    """Best header seeing, ties and missing seeing broken by the earliest MJD."""
    rows = conn.execute(
        "SELECT id, mjd FROM galexposures WHERE id = ANY(%s)", [list(exposure_ids)]
    ).fetchall()
    keyed = []
    for eid, mjd in rows:
        see = _seeing_arcsec(conn, eid)
        keyed.append((np.inf if see is None else round(see, 2), mjd, eid))
    return min(keyed)[2]


def active_reference_sets(
    conn: psycopg.Connection, *, filter: str | None = None
) -> list[ReferenceSet]:
    """The active reference set of each filter (or of ``filter``)."""
    rows = conn.execute(
        "SELECT id, filter, kind, primary_exposure_id, member_exposure_ids FROM galrefsets"
        " WHERE active AND (%(f)s::text IS NULL OR filter = %(f)s) ORDER BY filter",
        {"f": filter},
    ).fetchall()
    return [ReferenceSet(r[0], r[1], r[2], r[3], tuple(r[4])) for r in rows]


def matching_chip(conn: psycopg.Connection, galimage_id: int, exposure_id: int) -> int | None:
    """The chip of ``exposure_id`` covering the same sky as image ``galimage_id``.

    Same CCDNUM, else same EXTNAME, else same HDU, else the nearest chip centre
    (``observations.coordequ``) within one chip diagonal.
    """
    exact = conn.execute(
        """
        SELECT c.id FROM galimages c, galimages s WHERE s.id = %(img)s
          AND c.galexposure_id = %(exp)s
          AND ((s.ccdnum IS NOT NULL AND c.ccdnum = s.ccdnum)
               OR (s.ccdnum IS NULL AND s.extname IS NOT NULL AND c.extname = s.extname)
               OR (s.ccdnum IS NULL AND s.extname IS NULL AND c.hdu = s.hdu))
        """,
        {"img": galimage_id, "exp": exposure_id},
    ).fetchone()
    if exact:
        return exact[0]
    near = conn.execute(
        """
        SELECT c.id FROM galimages c
        JOIN observations oc ON oc.id = c.id, observations os
        WHERE os.id = %(img)s AND c.galexposure_id = %(exp)s
          AND oc.coordequ IS NOT NULL AND os.coordequ IS NOT NULL
        ORDER BY oc.coordequ <-> os.coordequ LIMIT 1
        """,
        {"img": galimage_id, "exp": exposure_id},
    ).fetchone()
    return near[0] if near else None


def _exposure_files(conn: psycopg.Connection, exposure_id: int) -> tuple[Path, list[tuple]]:
    path, fname = conn.execute(
        "SELECT path, filename FROM galexposures WHERE id = %s", [exposure_id]
    ).fetchone()
    chips = conn.execute(
        "SELECT id, hdu, extname, ccdnum FROM galimages WHERE galexposure_id = %s ORDER BY hdu",
        [exposure_id],
    ).fetchall()
    return Path(path) / fname, chips


def load_chip(path: str | Path, hdu: int, *, config=None):
    """Read one chip as a :class:`photdb.image.Image` (stacks with their variance and mask)."""
    from photdb.pipeline import STACK_CARD, PipelineConfig, load_image

    config = PipelineConfig() if config is None else config
    path = Path(path)
    with fits.open(path) as hdul:
        header = hdul[hdu].header.copy()
        if header.get(STACK_CARD, False):
            from astropy.wcs import WCS

            from photdb.image import Image

            data = np.asarray(hdul[hdu].data, dtype=np.float32)
            aux = np.load(path.with_suffix(".npz"))
            key = str(hdu)
            return Image(
                data,
                aux[f"mask_{key}"].astype(np.int32),
                aux[f"var_{key}"].astype(np.float32),
                WCS(header).celestial,
                header,
                float(header.get("GAIN", 1.0)),
                float(header.get("RDNOISE", 0.0)),
                np.inf,
            )
    return load_image(path, hdu, config=config)


def build_stack(
    conn: psycopg.Connection, exposure_ids: Sequence[int], *, home: Path, config=None
) -> int:
    """Stack the chips of ``exposure_ids`` (first = frame), write, ingest; new exposure id."""
    from photdb.archive.ingest import ingest_paths
    from photdb.pipeline import PipelineConfig, build_stacked_reference

    config = PipelineConfig() if config is None else config
    first_path, first_chips = _exposure_files(conn, exposure_ids[0])
    others = [(e, *_exposure_files(conn, e)) for e in exposure_ids[1:]]
    (band,) = conn.execute(
        "SELECT filter FROM galexposures WHERE id = %s", [exposure_ids[0]]
    ).fetchone()
    digest = hashlib.sha256(
        (",".join(map(str, exposure_ids)) + config.provenance_id()).encode()
    ).hexdigest()[:12]
    outdir = home / "stacks"
    outdir.mkdir(parents=True, exist_ok=True)
    out = outdir / f"stack_{band}_{digest}.fits"
    row = conn.execute(
        "SELECT id FROM galexposures WHERE path = %s AND filename = %s",
        [str(outdir.resolve()), out.name],
    ).fetchone()
    if row is not None:  # the same members and settings were stacked before
        return row[0]
    with fits.open(first_path) as hdul:
        primary = fits.PrimaryHDU(header=hdul[0].header.copy()) if hdul[0].data is None else None
    hdus: list = [primary if primary is not None else fits.PrimaryHDU()]
    aux: dict[str, np.ndarray] = {}
    for gid, hdu, _ext, _ccd in first_chips:
        images = [load_chip(first_path, hdu, config=config)]
        for oexp, opath, ochips in others:
            oid = matching_chip(conn, gid, oexp)
            ohdu = next((c[1] for c in ochips if c[0] == oid), None)
            if ohdu is not None:
                images.append(load_chip(opath, ohdu, config=config))
        stack = build_stacked_reference(images, config=config)
        header = stack.header.copy()
        for key in list(header):
            if (
                key.startswith(
                    ("CD", "PC", "CRPIX", "CRVAL", "CTYPE", "CUNIT", "A_", "B_", "AP_", "BP_")
                )
                and key != "PCOUNT"
            ):
                del header[key]
        header.update(stack.wcs.to_header(relax=True))
        header["GAIN"] = (float(stack.gain), "e-/ADU of the first input")
        hdus.append(fits.ImageHDU(stack.data.astype(np.float32), header=header))
        aux[f"var_{len(hdus) - 1}"] = stack.variance.astype(np.float32)
        aux[f"mask_{len(hdus) - 1}"] = stack.mask.astype(np.int32)
    tmp = out.with_suffix(".tmp.fits")
    fits.HDUList(hdus).writeto(tmp, overwrite=True, checksum=True)
    np.savez_compressed(out.with_suffix(".npz"), **aux)
    os.replace(tmp, out)
    report = ingest_paths([out], conn=conn)
    res = report.results[0]
    if res.exposure_id is None:
        raise ReferenceError(res.message)
    conn.execute(
        "UPDATE observations SET type = 'stack' WHERE id IN"
        " (SELECT id FROM galimages WHERE galexposure_id = %s)",
        [res.exposure_id],
    )
    return res.exposure_id


def mark_references(
    conn: psycopg.Connection,
    targets: Iterable[str | int],
    *,
    stack: bool = False,
    primary: str | int | None = None,
    home: Path | None = None,
    config=None,
) -> list[ReferenceSet]:
    """Make ``targets`` the references of their filters (one set per filter).

    Runs in one transaction. Returns the new active sets.
    """
    with conn.transaction():
        ids = resolve_exposures(conn, targets)
        if not ids:
            raise ReferenceError("no exposures given")
        prim = resolve_exposures(conn, [primary])[0] if primary is not None else None
        rows = conn.execute(
            "SELECT id, filter FROM galexposures WHERE id = ANY(%s)", [ids]
        ).fetchall()
        by_filter: dict[str, list[int]] = {}
        for eid, band in rows:
            if band is None:
                raise ReferenceError(f"exposure {eid} has no filter")
            by_filter.setdefault(band, []).append(eid)
        sets = []
        for band, members in sorted(by_filter.items()):
            first = prim if prim in members else choose_primary(conn, members)
            members = [first] + sorted(m for m in members if m != first)
            kind = "single" if len(members) == 1 else "set"
            primary_id = first
            if stack and len(members) > 1:
                from photdb.settings import load_settings

                kind = "stack"
                primary_id = build_stack(
                    conn, members, home=home or load_settings().home, config=config
                )
            old = conn.execute(
                "UPDATE galrefsets SET active = false WHERE active AND filter = %s"
                " RETURNING primary_exposure_id, member_exposure_ids",
                [band],
            ).fetchall()
            for p, ms in old:
                conn.execute(
                    "UPDATE galexposures SET is_reference = false WHERE id = ANY(%s)"
                    " AND NOT id = ANY(%s)",
                    [[p, *ms], [primary_id, *members]],
                )
            conn.execute(
                "UPDATE galexposures SET is_reference = true WHERE id = ANY(%s)",
                [[primary_id, *members]],
            )
            (sid,) = conn.execute(
                "INSERT INTO galrefsets (filter, kind, primary_exposure_id, member_exposure_ids)"
                " VALUES (%s, %s, %s, %s) RETURNING id",
                [band, kind, primary_id, [m for m in members if m != primary_id]],
            ).fetchone()
            sets.append(ReferenceSet(sid, band, kind, primary_id,
                                     tuple(m for m in members if m != primary_id)))  # fmt: skip
    return sets
