"""Variable-object detection, repeat counts, light-curve indices, reference combination.

The notebook's cut: a forced-photometry source on a calibrated search image is a
variable candidate when its magnitude differs from the reference by more than
15σ; candidates detected on several search images are the interesting ones
(one-offs are mostly artefacts). An artefact on the *reference* repeats on every
search image, so :func:`combine_references` offers a robust combination of
several references. No I/O happens here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from astropy.table import Table

from photdb.fitting import robust_sigma

__all__ = [
    "VariabilityConfig",
    "VariabilityIndices",
    "combine_references",
    "count_detections",
    "detect_variables",
    "rank_variables",
    "repeat_counts",
    "select_repeated",
    "variability_indices",
]


@dataclass(frozen=True)
class VariabilityConfig:
    """Settings of the variability stage.

    Attributes
    ----------
    nsigma : float
        Significance threshold of ``|Δmag| / σ_comb``. Default 15.0 (notebook).
    min_repeats : int
        Detections on at least this many search images make a "repeated"
        variable. Default 2.
    match_radius_arcsec : float
        Cross-filter (RA/Dec) association radius, arcsec. Default 0.5 (the
        notebook's light-curve cone searches used 0.3-0.5 arcsec).
    ref_clip_sigma : float
        Rejection threshold, in units of each measurement's own (floored)
        error, when combining several references. Default 3.0.
    ref_error_floor_mag : float
        Floor on reference errors used for that rejection, mag. Default 0.01.
    """

    nsigma: float = 15.0
    min_repeats: int = 2
    match_radius_arcsec: float = 0.5
    ref_clip_sigma: float = 3.0
    ref_error_floor_mag: float = 0.01


def detect_variables(
    mag: np.ndarray,
    magerr: np.ndarray,
    ref_mag: np.ndarray,
    ref_magerr: np.ndarray,
    *,
    config: VariabilityConfig = VariabilityConfig(),
) -> tuple[np.ndarray, np.ndarray]:
    """Flag sources whose search magnitude differs significantly from the reference.

    ``significance = (mag - ref_mag) / sqrt(magerr² + ref_magerr²)``, signed
    (positive: fainter on the search image). ``magerr`` should be the calibrated
    search error (floored and χ²/ν-rescaled), ``ref_magerr`` the reference error
    as stored. A source is variable when ``|significance| >= config.nsigma``;
    non-finite inputs give NaN significance and False.

    Returns
    -------
    is_variable : numpy.ndarray of bool
    significance : numpy.ndarray of float
    """
    dm = np.asarray(mag, float) - np.asarray(ref_mag, float)
    sig2 = np.asarray(magerr, float) ** 2 + np.asarray(ref_magerr, float) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        significance = np.where(sig2 > 0, dm / np.sqrt(sig2), np.nan)
    significance = np.where(np.isfinite(significance), significance, np.nan)
    is_var = np.abs(np.nan_to_num(significance, nan=0.0)) >= config.nsigma
    return is_var, significance


def count_detections(refsource_ids: np.ndarray) -> Table:
    """Number of variable detections per reference source.

    Returns a Table with ``refsource_id`` and ``num``, sorted by ``num``
    descending, then id.
    """
    ids, num = np.unique(np.asarray(refsource_ids), return_counts=True)
    order = np.lexsort((ids, -num))
    return Table({"refsource_id": ids[order], "num": num[order]})


def repeat_counts(refsource_ids: np.ndarray) -> Table:
    """Histogram of repeated detections, as in the notebook's first query.

    Parameters
    ----------
    refsource_ids : array-like
        One entry per variable detection (``galvarobjs.refsource_id``).

    Returns
    -------
    astropy.table.Table
        ``num`` (detections per object) and ``count`` (objects with that many),
        ``num`` descending.
    """
    _, per_source = np.unique(np.asarray(refsource_ids), return_counts=True)
    num, count = np.unique(per_source, return_counts=True)
    return Table({"num": num[::-1], "count": count[::-1]})


def select_repeated(
    refsource_ids: np.ndarray, *, config: VariabilityConfig = VariabilityConfig()
) -> np.ndarray:
    """Reference-source ids detected at least ``config.min_repeats`` times."""
    t = count_detections(refsource_ids)
    return np.asarray(t["refsource_id"][t["num"] >= config.min_repeats])


@dataclass(frozen=True)
class VariabilityIndices:
    """Summary statistics of one light curve.

    Attributes
    ----------
    n : int
        Finite points.
    mean_mag, mean_magerr : float
        Inverse-variance weighted mean and its uncertainty, mag.
    chi2nu : float
        χ² about the weighted mean divided by ``n - 1``.
    mad_std : float
        1.4826 x median absolute deviation from the median, mag.
    stetson_j : float
        Stetson (1996) J over consecutive pairs of the (time-ordered) points:
        mean of ``sgn(P)·sqrt(|P|)`` with ``P_k = δ_k δ_{k+1}`` and
        ``δ = sqrt(n/(n-1)) (m - mean)/σ``; ~0 for white noise, large and
        positive for variations slower than the sampling.
    amplitude : float
        ``max - min``, mag.
    robust_amplitude : float
        95th minus 5th percentile, mag.
    """

    n: int
    mean_mag: float
    mean_magerr: float
    chi2nu: float
    mad_std: float
    stetson_j: float
    amplitude: float
    robust_amplitude: float


def variability_indices(mag: np.ndarray, magerr: np.ndarray) -> VariabilityIndices:
    """Variability indices of a light curve (see :class:`VariabilityIndices`).

    Points must be in time order (for Stetson J).

    Non-finite points and non-positive errors are ignored; statistics that need
    more points than available are NaN.
    """
    m, e = np.asarray(mag, float), np.asarray(magerr, float)
    ok = np.isfinite(m) & np.isfinite(e) & (e > 0)
    m, e = m[ok], e[ok]
    n = int(m.size)
    nan = float("nan")
    if n == 0:
        return VariabilityIndices(0, nan, nan, nan, nan, nan, nan, nan)
    w = 1.0 / e**2
    mean = float(np.sum(w * m) / np.sum(w))
    if n < 2:
        return VariabilityIndices(1, mean, float(e[0]), nan, 0.0, nan, 0.0, 0.0)
    chi2nu = float(np.sum(w * (m - mean) ** 2) / (n - 1))
    delta = np.sqrt(n / (n - 1)) * (m - mean) / e
    p = delta[:-1] * delta[1:]
    p5, p95 = np.percentile(m, [5, 95])
    return VariabilityIndices(
        n=n,
        mean_mag=mean,
        mean_magerr=float(np.sqrt(1.0 / np.sum(w))),
        chi2nu=chi2nu,
        mad_std=robust_sigma(m),
        stetson_j=float(np.mean(np.sign(p) * np.sqrt(np.abs(p)))),
        amplitude=float(m.max() - m.min()),
        robust_amplitude=float(p95 - p5),
    )


def rank_variables(ids: np.ndarray, mag: np.ndarray, magerr: np.ndarray) -> Table:
    """Vectorised light-curve indices for many objects, worst variables first.

    Parameters
    ----------
    ids : array-like
        Object id of each measurement (e.g. ``refsource_id``); each object's
        measurements in time order (for Stetson J).
    mag, magerr : array-like
        Measurements, mag.

    Returns
    -------
    astropy.table.Table
        ``id``, ``n``, ``mean_mag``, ``mean_magerr``, ``chi2nu``, ``stetson_j``,
        ``amplitude`` per object (same definitions as
        :func:`variability_indices`), sorted by ``chi2nu`` descending; objects
        with one point have NaN ``chi2nu`` and ``stetson_j`` and sort last.
    """
    ids, m, e = np.asarray(ids), np.asarray(mag, float), np.asarray(magerr, float)
    # stable sort: each object's points keep their (time) order
    ok = np.isfinite(m) & np.isfinite(e) & (e > 0)
    ids, m, e = ids[ok], m[ok], e[ok]
    order = np.argsort(ids, kind="stable")
    ids, m, e = ids[order], m[order], e[order]
    uid, start, n = np.unique(ids, return_index=True, return_counts=True)
    w = 1.0 / e**2
    sw = np.add.reduceat(w, start)
    mean = np.add.reduceat(w * m, start) / sw
    resid = m - np.repeat(mean, n)
    chi2 = np.add.reduceat(w * resid**2, start)
    nn = np.repeat(n, n).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.sqrt(nn / (nn - 1.0)) * resid / e
        p = delta[:-1] * delta[1:]
        same = ids[:-1] == ids[1:]  # consecutive points of the same object
        term = np.append(np.where(same, np.sign(p) * np.sqrt(np.abs(p)), 0.0), 0.0)
        j = np.add.reduceat(term, start) / (n - 1)
        chi2nu = chi2 / (n - 1)
    multi = n > 1
    chi2nu = np.where(multi, chi2nu, np.nan)
    j = np.where(multi, j, np.nan)
    amp = np.maximum.reduceat(m, start) - np.minimum.reduceat(m, start)
    rank = np.argsort(np.where(multi, -chi2nu, np.inf), kind="stable")
    return Table(
        {
            "id": uid[rank],
            "n": n[rank],
            "mean_mag": mean[rank],
            "mean_magerr": np.sqrt(1.0 / sw[rank]),
            "chi2nu": chi2nu[rank],
            "stetson_j": j[rank],
            "amplitude": amp[rank],
        }
    )


def combine_references(
    mags: np.ndarray,
    magerrs: np.ndarray,
    *,
    method: Literal["median", "mean"] = "median",
    config: VariabilityConfig = VariabilityConfig(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robustly combine several reference measurements of each source.

    Parameters
    ----------
    mags, magerrs : numpy.ndarray
        ``(n_ref, n_src)`` magnitudes and errors, each reference already
        calibrated to the first; NaN where a reference has no measurement.
    method : {"median", "mean"}
        Estimator of the surviving measurements: their median (default) or
        inverse-variance weighted mean.
    config : VariabilityConfig
        ``ref_clip_sigma`` and ``ref_error_floor_mag``.

    Returns
    -------
    mag, magerr : numpy.ndarray
        Combined magnitude and its uncertainty: ``sqrt(1/Σw)`` over survivors
        (floored errors), times ``sqrt(pi/2)`` for the median of more than two;
        NaN with no data.
    n_used : numpy.ndarray of int
        Measurements surviving the rejection.

    Notes
    -----
    With three or more finite measurements, each one deviating from the
    median of all by more than ``ref_clip_sigma`` times its own floored error
    is rejected. With two, nothing can be told apart and both are kept; with
    one, it is returned as is. So with >= 3 references a single artefact never
    moves the result.
    """
    m = np.atleast_2d(np.asarray(mags, float))
    e = np.atleast_2d(np.asarray(magerrs, float))
    if m.shape != e.shape:
        raise ValueError("mags and magerrs must have the same shape")
    ok = np.isfinite(m) & np.isfinite(e) & (e > 0)
    nvalid = ok.sum(axis=0)
    ef = np.fmax(e, config.ref_error_floor_mag)
    mm = np.where(ok, m, np.nan)
    nsrc = m.shape[1]
    out = np.full(nsrc, np.nan)
    oute = np.full(nsrc, np.nan)
    has = nvalid > 0
    med = np.nanmedian(mm[:, has], axis=0)  # only columns with data: no all-NaN warning
    keep = ok.copy()
    clip = has & (nvalid >= 3)
    dev = np.abs(mm[:, clip] - med[clip[has]]) / ef[:, clip]
    keep[:, clip] &= dev <= config.ref_clip_sigma
    w = np.where(keep, 1.0 / ef**2, 0.0)
    sw = w.sum(axis=0)
    n_used = keep.sum(axis=0)
    good = n_used > 0
    if method == "mean":
        out[good] = (np.where(keep, m, 0.0) * w).sum(axis=0)[good] / sw[good]
        oute[good] = np.sqrt(1.0 / sw[good])
    elif method == "median":
        out[good] = np.nanmedian(np.where(keep, m, np.nan)[:, good], axis=0)
        factor = np.where(n_used[good] > 2, np.sqrt(np.pi / 2.0), 1.0)
        oute[good] = factor * np.sqrt(1.0 / sw[good])
    else:
        raise ValueError(f"unknown method {method!r}")
    return out, oute, n_used.astype(int)
