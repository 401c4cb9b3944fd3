"""Variable candidates and reference outliers of the pipeline, read from ``galrefstats``.

The statistics are kept per reference source as images are stored
(:mod:`photdb.survey.refstats`), so the candidate list is an index scan of that
table plus, for the rows returned, their detections in ``galvarobjs``: it does not
grow with ``galsources``. Reference outliers (search epochs that agree with each
other and all differ from the reference) are never candidates; they are listed
apart by :func:`reference_outliers`.
"""

from __future__ import annotations

import numpy as np
import psycopg
from astropy.table import Table

from photdb.survey.newsources import added_sources

__all__ = [
    "CANDIDATE_COLUMNS",
    "OUTLIER_COLUMNS",
    "count_candidates",
    "reference_outliers",
    "stats_missing",
    "variable_candidates",
]

#: Columns of :func:`variable_candidates`, with their numpy types.
CANDIDATE_COLUMNS = {
    "refsource_id": np.int64,
    "filter": "U16",
    "ra": float,
    "dec": float,
    "ref_mag": float,
    "ndet": np.int64,
    "n_epochs": np.int64,
    "chi2nu": float,
    "amplitude": float,
    "max_significance": float,
    "epochs": "U200",
    "dmag_median": float,
    "mean_mag": float,
    "eta": float,
    "stetson_j": float,
    "added": bool,
}

_RANKED = """
SELECT refsource_id, filter, ra, dec, ref_mag, n_det, n_epochs, chi2nu, amplitude, max_sig,
       mean_mag, eta, stetson_j
FROM galrefstats
WHERE n_det > 0 AND NOT ref_outlier AND n_det >= %(min)s {where}
ORDER BY n_det DESC, chi2nu DESC NULLS LAST, max_sig DESC NULLS LAST, refsource_id
{limit}
"""

_DETECTIONS = """
SELECT v.refsource_id, array_agg(e.mjd ORDER BY e.mjd), array_agg(v.dmag ORDER BY e.mjd)
FROM galvarobjs v
JOIN galimages i ON v.galimage_id = i.id
JOIN galexposures e ON i.galexposure_id = e.id
WHERE v.refsource_id = ANY(%s)
GROUP BY v.refsource_id
"""


def _where(filter, mag_min, mag_max, cone) -> tuple[str, dict]:
    parts, params = [], {}
    if filter is not None:
        parts.append("AND filter = %(filter)s")
        params["filter"] = filter
    if mag_min is not None:
        parts.append("AND coalesce(ref_mag, mean_mag) >= %(mag_min)s")
        params["mag_min"] = float(mag_min)
    if mag_max is not None:
        parts.append("AND coalesce(ref_mag, mean_mag) <= %(mag_max)s")
        params["mag_max"] = float(mag_max)
    if cone is not None:
        parts.append("AND q3c_radial_query(ra, dec, %(ra0)s, %(dec0)s, %(rad)s)")
        params |= {"ra0": float(cone[0]), "dec0": float(cone[1]), "rad": float(cone[2]) / 3600}
    return " ".join(parts), params


def _nan(v) -> float:
    return np.nan if v is None else float(v)


def variable_candidates(
    conn: psycopg.Connection,
    *,
    filter: str | None = None,
    min_repeats: int = 2,
    limit: int | None = 50,
    mag_min: float | None = None,
    mag_max: float | None = None,
    cone: tuple[float, float, float] | None = None,
) -> Table:
    """Variable candidates with their repeat counts, worst first.

    Ranked by the number of variable detections, then by χ²/ν of *all* forced
    measurements of the source about their weighted mean (the light curve, not
    only the detections), then by the largest significance. Reference outliers
    are left out (see :func:`reference_outliers`).

    Parameters
    ----------
    filter : str, optional
        Only this filter.
    min_repeats : int
        At least this many variable detections.
    limit : int or None
        At most this many rows (None: all).
    mag_min, mag_max : float, optional
        Reference magnitude range, mag (the mean magnitude for a new source the
        reference does not show).
    cone : tuple, optional
        ``(ra, dec, radius_arcsec)``, deg and arcsec.

    Returns
    -------
    astropy.table.Table
        :data:`CANDIDATE_COLUMNS`: ``refsource_id, filter, ra, dec, ref_mag, ndet,
        n_epochs`` (forced points counted), ``chi2nu, amplitude, max_significance,
        epochs`` (MJDs of the detections, comma-separated), ``dmag_median``,
        ``mean_mag`` (weighted), ``eta`` (von Neumann) and ``stetson_j`` (about the
        reference magnitude, see :mod:`photdb.varstats`),
        and ``added`` (a new source added to the reference catalogue after the reference
        was made, see :mod:`photdb.survey.newsources`).
    """
    where, params = _where(filter, mag_min, mag_max, cone)
    params["min"] = max(int(min_repeats), 1)
    lim = ""
    if limit is not None:
        lim, params["limit"] = "LIMIT %(limit)s", int(limit)
    rows = conn.execute(_RANKED.format(where=where, limit=lim), params).fetchall()
    names = list(CANDIDATE_COLUMNS)
    if not rows:
        return Table([np.zeros(0, t) for t in CANDIDATE_COLUMNS.values()], names=names)
    dets = {r[0]: r[1:] for r in conn.execute(_DETECTIONS, [[r[0] for r in rows]]).fetchall()}
    out = []
    for rid, band, ra, dec, ref_mag, ndet, n, chi2nu, amp, max_sig, mean, eta, sj in rows:
        epochs, dmags = dets.get(rid, ([], []))
        dm = np.array([_nan(d) for d in dmags], float)
        out.append((rid, band or "", ra, dec, _nan(ref_mag), ndet, n, _nan(chi2nu), _nan(amp),
                    _nan(max_sig), ",".join(f"{m:.2f}" for m in epochs),
                    float(np.nanmedian(dm)) if np.isfinite(dm).any() else np.nan,
                    _nan(mean), _nan(eta), _nan(sj), False))  # fmt: skip
    table = Table(rows=out, names=names, dtype=list(CANDIDATE_COLUMNS.values()))
    added = added_sources(conn, table["refsource_id"])
    table["added"] = np.isin(table["refsource_id"], list(added))
    return table


def count_candidates(
    conn: psycopg.Connection,
    *,
    filter: str | None = None,
    min_repeats: int = 2,
    mag_min: float | None = None,
    mag_max: float | None = None,
    cone: tuple[float, float, float] | None = None,
) -> int:
    """How many rows :func:`variable_candidates` gives without a limit."""
    where, params = _where(filter, mag_min, mag_max, cone)
    params["min"] = max(int(min_repeats), 1)
    stmt = "SELECT count(*) FROM galrefstats WHERE n_det > 0 AND NOT ref_outlier"
    return conn.execute(stmt + " AND n_det >= %(min)s " + where, params).fetchone()[0]


#: Columns of :func:`reference_outliers`, with their numpy types.
OUTLIER_COLUMNS = {
    "refsource_id": np.int64,
    "filter": "U16",
    "ra": float,
    "dec": float,
    "ref_mag": float,
    "ref_magerr": float,
    "mean_mag": float,
    "ref_offset": float,
    "ref_offset_sigma": float,
    "n_epochs": np.int64,
    "n_det": np.int64,
    "chi2nu": float,
    "reference_image": np.int64,
    "n_members": np.int64,
    "remeasured_mag": float,
    "remeasured_offset": float,
}

#: the set's other images' median magnitude of each outlier (the primary left out)
_REMEASURED = """
LEFT JOIN LATERAL (
    SELECT count(*) AS n_members,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY m.mag) AS remeasured_mag
    FROM galrefmembers m
    WHERE m.refsource_id = s.refsource_id AND m.member_image <> m.reference_image
      AND m.mag IS NOT NULL
) m ON true
"""


def reference_outliers(
    conn: psycopg.Connection,
    *,
    filter: str | None = None,
    limit: int | None = 50,
) -> Table:
    """Reference sources whose search epochs agree with each other and all differ from the
    reference (``galrefstats.ref_outlier``), most significant offset first.

    Returns
    -------
    astropy.table.Table
        :data:`OUTLIER_COLUMNS`; ``ref_offset`` is the weighted mean of (search -
        reference), mag, ``ref_offset_sigma`` its significance (reference error
        included), ``mean_mag`` the search epochs' weighted mean: what the reference
        magnitude probably should be. Re-measured from the reference set's other images
        (not the primary; a set of one image has none): ``n_members`` images measured
        it, ``remeasured_mag`` is their median and ``remeasured_offset`` is
        ``mean_mag - remeasured_mag``. When it is as large as ``ref_offset`` every
        reference image shares the offset (the reference nights, or a change before
        the search epochs); when it is ~0 only the primary was off.
    """
    where, params = _where(filter, None, None, None)
    lim = ""
    if limit is not None:
        lim, params["limit"] = "LIMIT %(limit)s", int(limit)
    stmt = (f"SELECT {', '.join(list(OUTLIER_COLUMNS)[:-1])}, mean_mag - remeasured_mag"
            f" FROM galrefstats s {_REMEASURED} WHERE ref_outlier {where}"
            f" ORDER BY abs(ref_offset_sigma) DESC, refsource_id {lim}")  # fmt: skip
    rows = conn.execute(stmt, params).fetchall()
    nulls = {float: np.nan, np.int64: -1, "U16": ""}
    cols = {
        name: np.array([nulls[t] if r[k] is None else r[k] for r in rows], dtype=t)
        for k, (name, t) in enumerate(OUTLIER_COLUMNS.items())
    }
    return Table(cols)


def stats_missing(conn: psycopg.Connection) -> bool:
    """True when variable detections exist but ``galrefstats`` is empty: the database
    processed images before migration 0010 (run ``photdb stats rebuild``)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM galvarobjs) AND NOT EXISTS (SELECT 1 FROM galrefstats)"
    ).fetchone()
    return bool(row[0])
