"""Reads for browsing the pipeline's results: exposures with their images' audit rows,
a candidate's detections and where its cut-outs come from.

SQL only (storage layer), used by :mod:`photdb.api` and the web pages. Every function
takes a connection (any role).
"""

from __future__ import annotations

import numpy as np
import psycopg
from astropy.table import MaskedColumn, Table

__all__ = ["IMAGE_COLUMNS", "detections", "images", "source_stamps", "strongest_detections"]

#: Columns of :func:`images`: the exposure, then the image's processing status and audit.
IMAGE_COLUMNS = (
    "exposure_id", "filename", "filter", "mjd", "is_reference", "exptime_s", "ingested_at",
    "galimage_id", "hdu", "extname", "status", "failure", "processed_at", "reference",
    "zp", "zp_scatter", "chi2nu", "error_factor", "astrom_rms_arcsec", "astrom_nmatch",
    "seeing_fwhm_arcsec", "sky_level", "n_detected", "n_forced", "n_saved", "n_variables",
    "provenance_id", "code_version",
)  # fmt: skip

_IMAGES = """
SELECT e.id, e.filename, e.filter, e.mjd, e.is_reference, e.exptime_s, e.ingested_at,
       i.id, i.hdu, i.extname, i.status, i.failure, i.processed_at, i.reference,
       i.zp, i.zp_scatter, i.chi2nu, i.error_factor, i.astrom_rms_arcsec, i.astrom_nmatch,
       i.seeing_fwhm_arcsec, i.sky_level, i.n_detected, i.n_forced, i.n_saved, i.n_variables,
       i.provenance_id, i.code_version
FROM galexposures e LEFT JOIN galimages i ON i.galexposure_id = e.id
WHERE (%(status)s::text IS NULL OR i.status = %(status)s)
  AND (%(filter)s::text IS NULL OR e.filter = %(filter)s)
ORDER BY e.mjd, e.id, i.hdu
LIMIT %(limit)s
"""


def _table(rows: list[tuple], names: tuple[str, ...]) -> Table:
    t = Table()
    for k, name in enumerate(names):
        values = [r[k] for r in rows]
        mask = [v is None for v in values]
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {int} and kinds:
            data = np.array([0 if m else v for v, m in zip(values, mask, strict=True)], np.int64)
        elif kinds <= {int, float} and kinds:
            data = np.array([np.nan if m else v for v, m in zip(values, mask, strict=True)], float)
        elif kinds == {bool}:
            data = np.array([bool(v) for v in values], bool)
        else:
            data = np.array(["" if m else str(v) for v, m in zip(values, mask, strict=True)],
                            dtype=str if values else "U1")  # fmt: skip
        t[name] = MaskedColumn(data, mask=mask) if any(mask) else data
    return t


def images(
    conn: psycopg.Connection,
    *,
    status: str | None = None,
    filter: str | None = None,
    limit: int = 5000,
) -> Table:
    """Exposures and their images with status and audit columns (:data:`IMAGE_COLUMNS`).

    An exposure whose images are not registered yet appears once with the image
    columns masked. Ordered by time, exposure and HDU; at most ``limit`` rows.
    """
    rows = conn.execute(
        _IMAGES, {"status": status, "filter": filter, "limit": int(limit)}
    ).fetchall()
    return _table(rows, IMAGE_COLUMNS)


_DETECTIONS = """
SELECT v.galsource_id, v.galimage_id, e.mjd, e.filter, v.dmag, v.significance, s.x, s.y,
       s.mag, s.magerr
FROM galvarobjs v
JOIN galsources s ON s.id = v.galsource_id
JOIN galimages i ON i.id = v.galimage_id
JOIN galexposures e ON e.id = i.galexposure_id
WHERE v.refsource_id = %s
ORDER BY abs(v.significance) DESC NULLS LAST, e.mjd
"""


def detections(conn: psycopg.Connection, refsource_id: int) -> Table:
    """The variable detections (``galvarobjs``) of one reference source, most significant first.

    Columns ``galsource_id, galimage_id, mjd, filter, dmag, significance, x, y, mag, magerr``.
    """
    rows = conn.execute(_DETECTIONS, [int(refsource_id)]).fetchall()
    names = ("galsource_id", "galimage_id", "mjd", "filter", "dmag", "significance", "x", "y",
             "mag", "magerr")  # fmt: skip
    return _table(rows, names)


_STAMP = """
SELECT e.path, e.filename, i.hdu, s.x, s.y, s.ra, s.dec, i.id
FROM galsources s
JOIN galimages i ON i.id = s.galimage_id
JOIN galexposures e ON e.id = i.galexposure_id
WHERE s.id = %s
"""


def source_stamps(conn: psycopg.Connection, galsource_id: int) -> tuple | None:
    """Where one measurement sits: ``(folder, filename, hdu, x, y, ra, dec, galimage_id)``,
    x and y 0-based pixels of its chip; None for an unknown id."""
    return conn.execute(_STAMP, [int(galsource_id)]).fetchone()


def strongest_detections(conn: psycopg.Connection, refsource_ids: list[int]) -> dict[int, int]:
    """``{refsource_id: galsource_id}`` of each reference source's most significant
    variable detection (the search-image measurement to show beside the reference)."""
    rows = conn.execute(
        "SELECT DISTINCT ON (refsource_id) refsource_id, galsource_id FROM galvarobjs"
        " WHERE refsource_id = ANY(%s)"
        " ORDER BY refsource_id, abs(significance) DESC NULLS LAST, galsource_id",
        [[int(i) for i in refsource_ids]],
    ).fetchall()
    return {int(r): int(g) for r, g in rows}
