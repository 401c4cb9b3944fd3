"""Variability statistics of reference sources from running sums, and reference outliers.

A survey of 10^9 measurements cannot rank its light curves by reading them. Per
reference source we keep a few sums over its forced measurements instead
(:class:`RunningSums`), updated as each search image is stored, from which the
statistics users rank by follow exactly (:func:`finalize`): number of epochs and of
variable detections, weighted mean magnitude, χ²/ν, von Neumann η, Stetson J,
amplitude, and the offset of the search epochs from the reference.

Definitions (``d = m - m_ref``: a point's magnitude minus the reference magnitude,
``w = 1/σ²``; points in time order, ties broken by image id):

* ``mean_mag = m_ref + Σw·d / Σw``; ``mean_magerr = sqrt(1/Σw)``;
* ``chi2nu = (Σw·d² - (Σw·d)²/Σw) / (n - 1)`` (χ² about the weighted mean);
* ``eta = Σ(d_{k+1} - d_k)² / (Σd² - (Σd)²/n)`` (von Neumann 1941; both sums over
  ``n - 1`` so the ratio is the usual δ²/s²); ~2 for white noise, small for slow
  variations;
* ``stetson_j = Σ sgn(p_k) sqrt|p_k| / (n - 1)`` with ``p_k = (d_k/σ_k)(d_{k+1}/σ_{k+1})``:
  Stetson's (1996) J over consecutive pairs, **with deviations taken from the
  reference magnitude instead of the light curve's mean**. Centred on the mean, J is
  not a function of running sums (the mean moves as points arrive, and ``sqrt|p|``
  does not separate); centred on the fixed reference it is exact and does not depend
  on the order images are stored in. For a star whose reference is right the two
  agree to the noise of the mean; for a reference outlier (every epoch off the
  reference by the same amount) this J is large, which is why those are flagged apart;
* ``amplitude = max(m) - min(m)`` of the search epochs;
* ``ref_offset = Σw·d/Σw`` and ``ref_offset_sigma = ref_offset / sqrt(1/Σw + σ_ref²)``;
  a *reference outlier* has a significant offset, epochs that agree with each other and
  at least one variable detection (:class:`RefOutlierConfig`).

Consecutive pairs need the neighbours in time of a new point: :func:`add_points`
takes them (``before``/``after``) when a point falls between the first and the
last stored epoch of its source; the caller looks them up. Points are kept in
float64 as given; callers pass the stored (float4) values so that a recomputation
(:func:`sums_from_points`) gives the same numbers. No I/O, no SQL.

A little over 400 lines: the sums, the incremental update and the recomputation
must agree exactly, so they stay side by side with the definitions above.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.stats import chi2 as chi2_dist

__all__ = [
    "SUM_FIELDS",
    "RefOutlierConfig",
    "RunningSums",
    "VarStats",
    "add_points",
    "deviation_base",
    "empty_sums",
    "finalize",
    "needs_neighbours",
    "pair_terms",
    "sums_from_points",
]


@dataclass(frozen=True)
class RefOutlierConfig:
    """When a reference source counts as a *reference outlier*.

    Its search epochs agree with each other and all differ from the reference by
    about the same amount: the reference, not the star, is what differs.

    Attributes
    ----------
    min_epochs : int
        Search epochs needed, default 3 (two cannot show that they agree).
    min_offset_sigma : float
        ``|ref_offset| / sqrt(1/Σw + σ_ref²)`` at least this, default 5.
    min_offset_mag : float
        ``|ref_offset|`` at least this, mag, default 0.02 (below it a reference
        error is harmless next to the 0.01 mag error floor).
    consistency_pvalue : float
        The epochs agree when χ² about their weighted mean has a p-value (χ²
        distribution with ``n - 1`` degrees of freedom) of at least this, default
        1e-3, ...
    max_scatter_fraction : float
        ... or when their weighted rms scatter about that mean is at most this
        fraction of ``|ref_offset|``, default 0.25 (one epoch a few σ off, from a
        cosmic ray or a neighbour, does not hide an offset of 0.3 mag).
    min_detections : int
        Variable detections needed, default 2: reference outliers are looked for
        among the stars the candidate list would otherwise report (its default
        ``min_repeats``). One detection is not enough: a faint star next to bright
        neighbours, measured a little bright on every search epoch, with large errors,
        passed the other tests (seen on a simulated survey). (Near chip edges, where
        nothing is reported by design, search photometry can be off by the same
        amount on every epoch; those are not flagged.)
    """

    min_epochs: int = 3
    min_offset_sigma: float = 5.0
    min_offset_mag: float = 0.02
    consistency_pvalue: float = 1e-3
    max_scatter_fraction: float = 0.25
    min_detections: int = 2


#: Names of the running sums, in :class:`RunningSums` order.
SUM_FIELDS = (
    "n", "n_det", "sw", "swd", "swd2", "sd", "sd2", "sdd2", "sj", "d_min", "d_max",
    "max_sig", "first_t", "first_img", "first_d", "first_e", "last_t", "last_img",
    "last_d", "last_e",
)  # fmt: skip


@dataclass(frozen=True)
class RunningSums:
    """Running sums of many reference sources (numpy arrays, one element per source).

    ``n`` points counted, ``n_det`` variable detections, ``sw`` = Σw, ``swd`` = Σw·d,
    ``swd2`` = Σw·d², ``sd`` = Σd, ``sd2`` = Σd², ``sdd2`` = Σ(d_{k+1} - d_k)², ``sj`` =
    Σ sgn(p)·sqrt|p| over consecutive pairs, ``d_min``/``d_max``, ``max_sig`` (largest
    |significance| of a detection, NaN with none), and the first and last point in
    time: ``*_t`` (MJD), ``*_img`` (image id, breaks ties), ``*_d``, ``*_e`` (σ).
    NaN where a source has no point.
    """

    n: np.ndarray
    n_det: np.ndarray
    sw: np.ndarray
    swd: np.ndarray
    swd2: np.ndarray
    sd: np.ndarray
    sd2: np.ndarray
    sdd2: np.ndarray
    sj: np.ndarray
    d_min: np.ndarray
    d_max: np.ndarray
    max_sig: np.ndarray
    first_t: np.ndarray
    first_img: np.ndarray
    first_d: np.ndarray
    first_e: np.ndarray
    last_t: np.ndarray
    last_img: np.ndarray
    last_d: np.ndarray
    last_e: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """``{name: array}`` in :data:`SUM_FIELDS` order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def empty_sums(size: int) -> RunningSums:
    """Sums of ``size`` sources with no point yet."""
    zero, nan = np.zeros(size), np.full(size, np.nan)
    cols = {name: nan.copy() for name in SUM_FIELDS}
    for name in ("n", "n_det", "first_img", "last_img"):
        cols[name] = np.zeros(size, np.int64)
    for name in ("sw", "swd", "swd2", "sd", "sd2", "sdd2", "sj"):
        cols[name] = zero.copy()
    return RunningSums(**cols)


def pair_terms(d1, e1, d2, e2) -> tuple[np.ndarray, np.ndarray]:
    """The η and J terms of consecutive pairs: ``(d2 - d1)²`` and ``sgn(p) sqrt|p|``."""
    d1, e1, d2, e2 = (np.asarray(a, float) for a in (d1, e1, d2, e2))
    p = (d1 / e1) * (d2 / e2)
    return (d2 - d1) ** 2, np.sign(p) * np.sqrt(np.abs(p))


def _later(t1, i1, t2, i2) -> np.ndarray:
    """(t1, i1) after (t2, i2) in time, ties broken by image id."""
    return (t1 > t2) | ((t1 == t2) & (i1 > i2))


def add_points(
    sums: RunningSums,
    t: np.ndarray,
    img: np.ndarray,
    d: np.ndarray,
    e: np.ndarray,
    *,
    counted: np.ndarray,
    detected: np.ndarray,
    significance: np.ndarray,
    before: tuple[np.ndarray, np.ndarray] | None = None,
    after: tuple[np.ndarray, np.ndarray] | None = None,
) -> RunningSums:
    """Add at most one point per source (one image) to its running sums.

    Parameters
    ----------
    sums : RunningSums
        Current sums, one element per source.
    t, img : numpy.ndarray
        MJD and image id of each new point.
    d, e : numpy.ndarray
        ``mag - ref_mag`` and σ of each point.
    counted : numpy.ndarray of bool
        Points that enter the statistics (finite ``d``, ``e > 0``); others change
        only the detection count.
    detected, significance : numpy.ndarray
        The point is a variable detection, and its significance (for ``max_sig``).
    before, after : tuple of numpy.ndarray, optional
        ``(d, e)`` of the stored neighbours in time of points that fall between the
        source's first and last epoch (see :func:`needs_neighbours`); NaN elsewhere.

    Returns
    -------
    RunningSums
        New sums (the input is not changed).

    Raises
    ------
    ValueError
        A point falls inside the stored span and its neighbours were not given.
    """
    s = {k: np.array(v, copy=True) for k, v in sums.as_dict().items()}
    t, img = np.asarray(t, float), np.asarray(img, np.int64)
    d, e = np.asarray(d, float), np.asarray(e, float)
    c = np.asarray(counted, bool) & np.isfinite(d) & np.isfinite(e) & (e > 0)
    det = np.asarray(detected, bool)
    s["n_det"] = s["n_det"] + det
    sig = np.where(det, np.abs(np.asarray(significance, float)), np.nan)
    s["max_sig"] = np.fmax(s["max_sig"], sig)
    first = c & (s["n"] == 0)
    later = c & (s["n"] > 0) & _later(t, img, s["last_t"], s["last_img"])
    earlier = c & (s["n"] > 0) & _later(s["first_t"], s["first_img"], t, img)
    inside = c & (s["n"] > 0) & ~later & ~earlier
    w = np.where(c, 1.0 / np.where(c, e, 1.0) ** 2, 0.0)
    dz = np.where(c, d, 0.0)
    s["n"] = s["n"] + c
    s["sw"] = s["sw"] + w
    s["swd"] = s["swd"] + w * dz
    s["swd2"] = s["swd2"] + w * dz * dz
    s["sd"] = s["sd"] + dz
    s["sd2"] = s["sd2"] + dz * dz
    s["d_min"] = np.where(c, np.fmin(s["d_min"], d), s["d_min"])
    s["d_max"] = np.where(c, np.fmax(s["d_max"], d), s["d_max"])
    with np.errstate(invalid="ignore", divide="ignore"):
        eta_l, j_l = pair_terms(s["last_d"], s["last_e"], d, e)
        eta_e, j_e = pair_terms(d, e, s["first_d"], s["first_e"])
        deta = np.where(later, eta_l, 0.0) + np.where(earlier, eta_e, 0.0)
        dj = np.where(later, j_l, 0.0) + np.where(earlier, j_e, 0.0)
        if inside.any():
            if before is None or after is None:
                raise ValueError("points inside the stored time span need their neighbours")
            (bd, be), (ad, ae) = before, after
            eta_old, j_old = pair_terms(bd, be, ad, ae)
            eta_1, j_1 = pair_terms(bd, be, d, e)
            eta_2, j_2 = pair_terms(d, e, ad, ae)
            ok = np.isfinite(eta_old + eta_1 + eta_2 + j_old + j_1 + j_2)
            if not np.all(ok[inside]):
                raise ValueError("points inside the stored time span need their neighbours")
            deta = deta + np.where(inside, eta_1 + eta_2 - eta_old, 0.0)
            dj = dj + np.where(inside, j_1 + j_2 - j_old, 0.0)
    s["sdd2"] = s["sdd2"] + deta
    s["sj"] = s["sj"] + dj
    to_last = first | later
    to_first = first | earlier
    for key, new in (("t", t), ("img", img), ("d", d), ("e", e)):
        s[f"last_{key}"] = np.where(to_last, new, s[f"last_{key}"])
        s[f"first_{key}"] = np.where(to_first, new, s[f"first_{key}"])
    return RunningSums(**s)


def needs_neighbours(sums: RunningSums, t: np.ndarray, img: np.ndarray, counted) -> np.ndarray:
    """Points that fall strictly inside their source's stored time span (out of order)."""
    t, img = np.asarray(t, float), np.asarray(img, np.int64)
    have = np.asarray(counted, bool) & (sums.n > 0)
    return (have & _later(t, img, sums.first_t, sums.first_img)
            & _later(sums.last_t, sums.last_img, t, img))  # fmt: skip


def sums_from_points(
    ids: np.ndarray,
    t: np.ndarray,
    img: np.ndarray,
    d: np.ndarray,
    e: np.ndarray,
    detected: np.ndarray,
    significance: np.ndarray,
) -> tuple[np.ndarray, RunningSums]:
    """Running sums recomputed from every point of many sources (the rebuild).

    Points may come in any order; those that are not counted (non-finite ``d`` or
    ``e``, ``e <= 0``) only add to the detection count.

    Returns
    -------
    ids : numpy.ndarray
        Sorted unique source ids.
    sums : RunningSums
        Their sums, in that order.
    """
    ids, t, img = np.asarray(ids, np.int64), np.asarray(t, float), np.asarray(img, np.int64)
    d, e = np.asarray(d, float), np.asarray(e, float)
    det = np.asarray(detected, bool)
    sig = np.asarray(significance, float)
    uid, inv = np.unique(ids, return_inverse=True)
    out = empty_sums(uid.size).as_dict()
    out["n_det"] = np.bincount(inv, weights=det, minlength=uid.size).astype(np.int64)
    sigd = np.where(det, np.abs(sig), np.nan)
    np.fmax.at(out["max_sig"], inv, sigd)
    c = np.isfinite(d) & np.isfinite(e) & (e > 0)
    inv, t, img, d, e = inv[c], t[c], img[c], d[c], e[c]
    order = np.lexsort((img, t, inv))
    inv, t, img, d, e = inv[order], t[order], img[order], d[order], e[order]
    w = 1.0 / e**2
    m = uid.size

    def total(x):
        return np.bincount(inv, weights=x, minlength=m)

    out["n"] = np.bincount(inv, minlength=m).astype(np.int64)
    out["sw"], out["swd"], out["swd2"] = total(w), total(w * d), total(w * d * d)
    out["sd"], out["sd2"] = total(d), total(d * d)
    same = inv[:-1] == inv[1:]
    deta, dj = pair_terms(d[:-1], e[:-1], d[1:], e[1:])
    out["sdd2"] = np.bincount(inv[:-1][same], weights=deta[same], minlength=m)
    out["sj"] = np.bincount(inv[:-1][same], weights=dj[same], minlength=m)
    np.fmin.at(out["d_min"], inv, d)
    np.fmax.at(out["d_max"], inv, d)
    if inv.size:
        start = np.flatnonzero(np.r_[True, ~same])
        end = np.r_[start[1:] - 1, inv.size - 1]
        for key, arr in (("t", t), ("img", img), ("d", d), ("e", e)):
            out[f"first_{key}"][inv[start]] = arr[start]
            out[f"last_{key}"][inv[end]] = arr[end]
    return uid, RunningSums(**out)


def deviation_base(ref_mag: np.ndarray) -> np.ndarray:
    """What a point's deviation ``d = mag - base`` is measured from, per source.

    The reference magnitude; 0 where the reference has none (a new source added
    after the reference, invisible on it). The sums of such a source are sums of
    magnitudes: its weighted mean, χ²/ν, η and amplitude do not depend on the base,
    while Stetson J (about the reference) and the reference offset are undefined
    (NaN) and it is never a reference outlier.
    """
    ref_mag = np.asarray(ref_mag, float)
    return np.where(np.isfinite(ref_mag), ref_mag, 0.0)


@dataclass(frozen=True)
class VarStats:
    """Statistics of many reference sources (arrays), see the module docstring.

    ``ref_outlier`` is True where the search epochs agree with each other and all
    differ from the reference (:class:`RefOutlierConfig`). NaN where undefined
    (``chi2nu``, ``stetson_j`` need two points, ``eta`` two and some scatter).
    """

    n_epochs: np.ndarray
    n_det: np.ndarray
    mean_mag: np.ndarray
    mean_magerr: np.ndarray
    chi2nu: np.ndarray
    eta: np.ndarray
    stetson_j: np.ndarray
    amplitude: np.ndarray
    max_sig: np.ndarray
    ref_offset: np.ndarray
    ref_offset_sigma: np.ndarray
    ref_outlier: np.ndarray


def finalize(
    sums: RunningSums,
    ref_mag: np.ndarray,
    ref_magerr: np.ndarray,
    *,
    config: RefOutlierConfig = RefOutlierConfig(),
) -> VarStats:
    """The statistics of :class:`VarStats` from running sums and the reference."""
    n = np.asarray(sums.n, np.int64)
    ref_mag, ref_err = np.asarray(ref_mag, float), np.asarray(ref_magerr, float)
    no_ref = ~np.isfinite(ref_mag)  # sums of magnitudes, not of deviations (deviation_base)
    with np.errstate(invalid="ignore", divide="ignore"):
        sw = np.where(n > 0, sums.sw, np.nan)
        offset = sums.swd / sw
        nu = np.where(n > 1, n - 1.0, np.nan)
        chi2 = np.fmax(sums.swd2 - sums.swd**2 / sw, 0.0)
        chi2nu = chi2 / nu
        scatter = sums.sd2 - sums.sd**2 / np.where(n > 0, n, np.nan)
        eta = np.where(scatter > 0, sums.sdd2 / scatter, np.nan)
        eta = np.where(n > 1, eta, np.nan)
        stetson_j = sums.sj / nu
        offset_sigma = offset / np.sqrt(1.0 / sw + np.nan_to_num(ref_err, nan=0.0) ** 2)
        stetson_j = np.where(no_ref, np.nan, stetson_j)
        offset_sigma = np.where(no_ref, np.nan, offset_sigma)
        pvalue = np.where(n > 1, chi2_dist.sf(chi2, np.where(n > 1, n - 1, 1)), np.nan)
        scatter_rms = np.sqrt(chi2 / sw * n / nu)
    agree = (np.nan_to_num(pvalue, nan=0.0) >= config.consistency_pvalue) | (
        np.nan_to_num(scatter_rms, nan=np.inf)
        <= config.max_scatter_fraction * np.abs(np.nan_to_num(offset))
    )
    outlier = (
        (n >= config.min_epochs)
        & (np.asarray(sums.n_det) >= config.min_detections)
        & (np.abs(np.nan_to_num(offset_sigma)) >= config.min_offset_sigma)
        & (np.abs(np.nan_to_num(offset)) >= config.min_offset_mag)
        & agree
        & ~no_ref
    )
    return VarStats(
        n_epochs=n,
        n_det=np.asarray(sums.n_det, np.int64),
        mean_mag=deviation_base(ref_mag) + offset,
        mean_magerr=np.sqrt(1.0 / sw),
        chi2nu=chi2nu,
        eta=eta,
        stetson_j=stetson_j,
        amplitude=np.where(n > 0, sums.d_max - sums.d_min, np.nan),
        max_sig=np.asarray(sums.max_sig, float),
        ref_offset=np.where(no_ref, np.nan, offset),
        ref_offset_sigma=offset_sigma,
        ref_outlier=outlier,
    )
