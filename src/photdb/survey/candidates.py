"""Variable candidates of the pipeline, ranked: the stored detections plus variability indices.

The SQL lives in :mod:`photdb.survey.queries`; the ranking statistics in
:func:`photdb.variability.rank_variables`.
"""

from __future__ import annotations

import numpy as np
import psycopg
from astropy.table import Table

from photdb.survey import queries
from photdb.variability import rank_variables

__all__ = ["CANDIDATE_COLUMNS", "variable_candidates"]

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
}


def variable_candidates(
    conn: psycopg.Connection,
    *,
    filter: str | None = None,
    min_repeats: int = 2,
    limit: int | None = 50,
) -> Table:
    """Variable candidates with their repeat counts, worst first.

    Ranked by the number of variable detections, then by χ²/ν of *all* forced
    measurements of the source about their weighted mean (the light curve, not
    only the 15σ points), then by the largest significance.

    Returns
    -------
    astropy.table.Table
        :data:`CANDIDATE_COLUMNS`: ``refsource_id, filter, ra, dec, ref_mag, ndet,
        n_epochs`` (forced points), ``chi2nu, amplitude, max_significance, epochs``
        (MJDs of the detections, comma-separated) and ``dmag_median``.
    """
    rows = queries.candidate_detections(conn, filter=filter, min_repeats=min_repeats)
    names = list(CANDIDATE_COLUMNS)
    if not rows:
        return Table([np.zeros(0, t) for t in CANDIDATE_COLUMNS.values()], names=names)
    ids = [r[0] for r in rows]
    info = queries.reference_info(conn, ids)
    forced = queries.forced_points(conn, ids)
    stats = {}
    if len(forced):
        ranked = rank_variables(forced[:, 0].astype(np.int64), forced[:, 1], forced[:, 2])
        stats = {
            int(i): (int(n), c, a)
            for i, n, c, a in zip(ranked["id"], ranked["n"], ranked["chi2nu"], ranked["amplitude"],
                                  strict=True)
        }  # fmt: skip
    out = []
    for rid, ndet, max_sig, epochs, dmags in rows:
        ra, dec, mag, _magerr, band = info.get(rid, (np.nan, np.nan, np.nan, np.nan, ""))
        n, chi2nu, amp = stats.get(rid, (0, np.nan, np.nan))
        dm = np.array([np.nan if d is None else d for d in dmags], float)
        out.append((rid, band or "", ra, dec, np.nan if mag is None else mag, ndet, n,
                    chi2nu, amp, np.nan if max_sig is None else max_sig,
                    ",".join(f"{m:.2f}" for m in epochs),
                    float(np.nanmedian(dm)) if np.isfinite(dm).any() else np.nan))  # fmt: skip
    out.sort(key=lambda r: (-r[5], -np.nan_to_num(r[7], nan=-1.0), -r[9], r[0]))
    if limit is not None:
        out = out[: int(limit)]
    return Table(rows=out, names=names)
