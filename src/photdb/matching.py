"""Matching catalogues: unique nearest neighbours on a plane or on the sky, bulk offsets.

No I/O. Used by :func:`photdb.astrometry.refine_wcs`.
"""

from __future__ import annotations

import numpy as np
from astropy.coordinates import SkyCoord
from scipy.spatial import cKDTree

__all__ = ["find_offset", "match_catalogs", "match_sky"]


def match_catalogs(
    x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, *, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique nearest-neighbour matching of two planar catalogues.

    Each source of catalogue 1 takes its nearest neighbour in catalogue 2
    within ``radius``; when several claim the same catalogue-2 source only the
    closest keeps it. The result is therefore one-to-one.

    Parameters
    ----------
    x1, y1, x2, y2 : numpy.ndarray
        Planar coordinates (pixels, or tangent-plane arcsec), same unit as radius.
    radius : float
        Maximum match distance.

    Returns
    -------
    idx1, idx2 : numpy.ndarray of int
        Matched indices, sorted by ``idx1``.
    dist : numpy.ndarray
        Separation of each pair.

    Examples
    --------
    >>> i1, i2, d = match_catalogs([0.0, 5.0], [0.0, 5.0], [5.1, 0.2], [5.0, 0.0], radius=1)
    >>> i1.tolist(), i2.tolist()
    ([0, 1], [1, 0])
    """
    p1 = np.column_stack([np.asarray(x1, float), np.asarray(y1, float)])
    p2 = np.column_stack([np.asarray(x2, float), np.asarray(y2, float)])
    empty = np.zeros(0, dtype=np.intp)
    if len(p1) == 0 or len(p2) == 0:
        return empty, empty.copy(), np.zeros(0)
    dist, idx2 = cKDTree(p2).query(p1, k=1, distance_upper_bound=radius)
    ok = np.isfinite(dist)
    idx1 = np.flatnonzero(ok)
    idx2, dist = idx2[ok], dist[ok]
    keep = _closest_claims(idx2, dist)  # closest claimant wins
    return idx1[keep], idx2[keep], dist[keep]


def _closest_claims(idx2: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Positions (sorted) of the pairs that keep their catalogue-2 source: the closest
    claimant of each."""
    order = np.lexsort((dist, idx2))
    first = np.ones(order.size, dtype=bool)
    first[1:] = idx2[order][1:] != idx2[order][:-1]
    return np.sort(order[first])


def match_sky(
    ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray, *, radius_arcsec: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique nearest-neighbour matching of two sky catalogues (degrees).

    Same rules as :func:`match_catalogs`, with astropy's
    :meth:`~astropy.coordinates.SkyCoord.match_to_catalog_sky` for the nearest
    neighbours (valid all-sky, at the poles and across RA = 0). Returns
    ``(idx1, idx2, sep_arcsec)``.
    """
    empty = np.zeros(0, dtype=np.intp)
    if len(ra1) == 0 or len(ra2) == 0:
        return empty, empty.copy(), np.zeros(0)
    c1 = SkyCoord(np.asarray(ra1, float), np.asarray(dec1, float), unit="deg")
    c2 = SkyCoord(np.asarray(ra2, float), np.asarray(dec2, float), unit="deg")
    idx2, sep, _ = c1.match_to_catalog_sky(c2)
    sep = sep.arcsec
    idx1 = np.flatnonzero(sep <= radius_arcsec)
    idx2, sep = np.asarray(idx2)[idx1], sep[idx1]
    keep = _closest_claims(idx2, sep)
    return idx1[keep], idx2[keep], sep[keep]


def find_offset(
    x: np.ndarray, y: np.ndarray, xr: np.ndarray, yr: np.ndarray, *, radius: float, bin_size: float
) -> tuple[float, float, int]:
    """Bulk shift between two planar catalogues by voting over pairwise offsets.

    Every pair (detection, reference) closer than ``radius`` votes for its offset
    ``(xr - x, yr - y)`` in a 2-D histogram; the peak (smoothed over 3 x 3 bins)
    is then refined by the median of the offsets within one bin of it. Random
    pairs spread uniformly over the search disc, true pairs pile up in one bin,
    so this works where nearest-neighbour matching at the wrong shift fails.

    Returns
    -------
    dx, dy : float
        Shift to add to ``(x, y)`` to land on ``(xr, yr)``.
    n_votes : int
        Number of pairs within one bin of the peak.
    """
    t1 = cKDTree(np.column_stack([x, y]))
    t2 = cKDTree(np.column_stack([xr, yr]))
    pairs = t1.sparse_distance_matrix(t2, radius, output_type="ndarray")
    if pairs.size == 0:
        raise RuntimeError("no pairs within the offset search radius")
    dx = xr[pairs["j"]] - x[pairs["i"]]
    dy = yr[pairs["j"]] - y[pairs["i"]]
    nbin = int(np.ceil(radius / bin_size))
    edges = np.arange(-nbin, nbin + 1) * bin_size
    hist, _, _ = np.histogram2d(dx, dy, bins=[edges, edges])
    padded = np.pad(hist, 1)
    smooth = sum(
        padded[1 + i : padded.shape[0] - 1 + i, 1 + j : padded.shape[1] - 1 + j]
        for i in (-1, 0, 1)
        for j in (-1, 0, 1)
    )
    ix, iy = np.unravel_index(np.argmax(smooth), smooth.shape)
    cx, cy = edges[ix] + bin_size / 2, edges[iy] + bin_size / 2
    for half in (1.5 * bin_size, bin_size):
        near = (np.abs(dx - cx) < half) & (np.abs(dy - cy) < half)
        if not near.any():
            break
        cx, cy = float(np.median(dx[near])), float(np.median(dy[near]))
    return cx, cy, int(near.sum())
