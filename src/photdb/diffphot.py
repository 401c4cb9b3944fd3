"""Ensemble differential photometry of one target against comparison stars (pure).

Input is a long table of instrumental magnitudes, one row per (frame, star).
Per frame the ensemble zero point is the inverse-variance weighted mean of
``m_inst - m_ref`` over the comparison stars, where ``m_ref`` is the star's
catalogue magnitude when given, else its median instrumental magnitude.
Comparison stars that vary are removed one at a time: each is compared with
the ensemble of the others, and the worst one goes while its robust reduced
chi-square exceeds ``reject_factor`` times the median over the comparison stars
(and the absolute ``min_chi2``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from photdb.fitting import robust_sigma

__all__ = ["DiffPhotConfig", "DiffPhotResult", "differential_photometry"]

_MEDIAN_CHI2_1DOF = 0.4549  # median of a chi-square with one degree of freedom


@dataclass(frozen=True)
class DiffPhotConfig:
    """Settings of :func:`differential_photometry`.

    Attributes
    ----------
    reject_factor : float
        A comparison star is variable when its robust reduced chi-square
        against the others is this many times the median one (default 3).
    min_chi2 : float
        ... and above this absolute value (default 2).
    min_comp : int
        Never reject below this many comparison stars (default 2).
    min_coverage : float
        Comparison stars measured in fewer than this fraction of frames are
        dropped before anything else (default 0.8).
    max_reject : int
        At most this many stars rejected (default 10).
    """

    reject_factor: float = 3.0
    min_chi2: float = 2.0
    min_comp: int = 2
    min_coverage: float = 0.8
    max_reject: int = 10


@dataclass(frozen=True)
class DiffPhotResult:
    """The target's light curve and the ensemble that made it.

    Attributes
    ----------
    lightcurve : Table
        Per frame: ``frame``, ``mag_diff``, ``mag_diff_err`` (target minus the
        ensemble), ``magnitude``, ``mag_err`` (calibrated, NaN without
        catalogue magnitudes), ``num_comp``, ``aver_comp`` (weighted mean
        reference magnitude of the comparison stars) and ``comp_stars``
        (comma-separated names).
    comp_stars : tuple of str
        Names of the comparison stars used.
    rejected : dict
        Name -> reason for every candidate not used.
    comp_scatter : dict
        Name -> robust scatter [mag] of each used comparison star against
        the ensemble of the others.
    """

    lightcurve: Table
    comp_stars: tuple[str, ...]
    rejected: dict[str, str] = field(default_factory=dict)
    comp_scatter: dict[str, float] = field(default_factory=dict)
    comp_chi2: dict[str, float] = field(default_factory=dict)


def _pivot(
    phot: Table,
    frame_col: str,
    star_col: str,
    stars: Sequence[Hashable],
    mag_col: str,
    err_col: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    frames = np.unique(np.asarray(phot[frame_col]))
    fidx = {f: i for i, f in enumerate(frames.tolist())}
    sidx = {s: j for j, s in enumerate(stars)}
    mags = np.full((len(frames), len(stars)), np.nan)
    errs = np.full_like(mags, np.nan)
    for f, s, m, e in zip(
        np.asarray(phot[frame_col]).tolist(),
        np.asarray(phot[star_col]).tolist(),
        np.ma.filled(np.ma.asarray(phot[mag_col], float), np.nan),
        np.ma.filled(np.ma.asarray(phot[err_col], float), np.nan),
        strict=True,
    ):
        j = sidx.get(s)
        if j is not None and np.isfinite(m) and np.isfinite(e) and e > 0:
            mags[fidx[f], j], errs[fidx[f], j] = m, e
    return frames, mags, errs


def _ensemble(
    mags: np.ndarray, errs: np.ndarray, refs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame zero point, its error, number of stars and mean reference magnitude."""
    good = np.isfinite(mags)
    w = np.where(good, 1.0 / np.where(good, errs, 1.0) ** 2, 0.0)
    wsum = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        zp = np.nansum(w * (np.where(good, mags, 0.0) - refs), axis=1) / wsum
        zp_err = 1.0 / np.sqrt(wsum)
        aver = (w * refs).sum(axis=1) / wsum
    return zp, zp_err, good.sum(axis=1), aver


def _leave_one_out(mags, errs, refs) -> tuple[np.ndarray, np.ndarray]:
    """Robust scatter and reduced chi-square of each star against the others."""
    scatter = np.full(mags.shape[1], np.nan)
    chi2 = np.full(mags.shape[1], np.nan)
    for j in range(mags.shape[1]):
        others = np.arange(mags.shape[1]) != j
        zp, zp_err, _, _ = _ensemble(mags[:, others], errs[:, others], refs[others])
        resid = mags[:, j] - refs[j] - zp
        ok = np.isfinite(resid)
        if ok.sum() < 3:
            continue
        r = resid[ok] - np.median(resid[ok])
        scatter[j] = robust_sigma(r)
        z2 = r**2 / (errs[ok, j] ** 2 + zp_err[ok] ** 2)
        chi2[j] = np.median(z2) / _MEDIAN_CHI2_1DOF
    return scatter, chi2


def differential_photometry(
    phot: Table,
    target: Hashable,
    comps: Sequence[Hashable],
    *,
    frame_col: str = "frame",
    star_col: str = "star_id",
    mag_col: str = "mag_inst",
    err_col: str = "mag_inst_err",
    catalog_mags: Mapping[Hashable, float] | None = None,
    names: Mapping[Hashable, str] | None = None,
    config: DiffPhotConfig = DiffPhotConfig(),
) -> DiffPhotResult:
    """Differential light curve of ``target`` against an ensemble of ``comps``.

    Parameters
    ----------
    phot : Table
        Long table: one row per frame and star.
    target : hashable
        The target's value in ``star_col``.
    comps : sequence
        Candidate comparison stars (``star_col`` values); the target is
        never used as one.
    catalog_mags : mapping, optional
        Star -> catalogue magnitude in the band of the frames; when given for
        every comparison star, ``magnitude`` is calibrated.
    names : mapping, optional
        Star -> name recorded in ``comp_stars`` (default ``str(star)``).

    Examples
    --------
    >>> t = Table({"frame": [0, 0, 0, 1, 1, 1], "star_id": [1, 2, 3] * 2,
    ...            "mag_inst": [-5.0, -6.0, -7.0, -5.5, -6.1, -7.1],
    ...            "mag_inst_err": [0.01] * 6})
    >>> r = differential_photometry(t, 1, [2, 3])
    >>> [round(float(v), 3) for v in r.lightcurve["mag_diff"]]
    [1.5, 1.1]
    """
    name_of = (lambda s: str(names.get(s, s))) if names else str  # noqa: E731
    candidates = [c for c in dict.fromkeys(comps) if c != target]
    rejected = {name_of(target): "the target"} if target in comps else {}
    frames, mags, errs = _pivot(phot, frame_col, star_col, [target, *candidates], mag_col, err_col)
    tmag, terr = mags[:, 0], errs[:, 0]
    mags, errs = mags[:, 1:], errs[:, 1:]
    coverage = np.isfinite(mags).mean(axis=0)
    keep = coverage >= config.min_coverage
    for c, cov in zip(candidates, coverage, strict=True):
        if cov < config.min_coverage:
            rejected[name_of(c)] = f"measured in {100 * cov:.0f}% of frames"
    calibrated = catalog_mags is not None and all(c in catalog_mags for c in candidates)
    refs = np.array(
        [
            catalog_mags[c] if calibrated else np.nanmedian(mags[:, j])  # type: ignore[index]
            for j, c in enumerate(candidates)
        ],
        dtype=float,
    )
    idx = list(np.flatnonzero(keep))
    while len(idx) > config.min_comp and len(candidates) - len(idx) < config.max_reject:
        scatter, chi2 = _leave_one_out(mags[:, idx], errs[:, idx], refs[idx])
        worst = int(np.nanargmax(chi2))
        limit = max(config.reject_factor * np.nanmedian(chi2), config.min_chi2)
        if not chi2[worst] > limit:
            break
        star = candidates[idx[worst]]
        rejected[name_of(star)] = (
            f"variable: chi2 {chi2[worst]:.1f} > {limit:.1f}, scatter {scatter[worst]:.3f} mag"
        )
        del idx[worst]
    if len(idx) < 1:
        raise ValueError("no comparison star left")
    scatter, chi2 = _leave_one_out(mags[:, idx], errs[:, idx], refs[idx])
    used = [candidates[j] for j in idx]
    zp, zp_err, ncomp, aver = _ensemble(mags[:, idx], errs[:, idx], refs[idx])
    mag_err = np.sqrt(terr**2 + zp_err**2)
    calibrated_mag = tmag - zp if calibrated else np.full_like(tmag, np.nan)
    used_names = np.array([name_of(c) for c in used], dtype=object)
    present = np.isfinite(mags[:, idx])
    comp_text = [",".join(used_names[row]) for row in present]
    lc = Table(
        {
            "frame": frames,
            "mag_diff": tmag - (zp + aver),
            "mag_diff_err": mag_err,
            "magnitude": calibrated_mag,
            "mag_err": mag_err if calibrated else np.full_like(tmag, np.nan),
            "num_comp": ncomp.astype(int),
            "aver_comp": aver,
            "comp_stars": comp_text,
        }
    )
    lc = lc[np.isfinite(tmag) & (ncomp > 0)]
    return DiffPhotResult(
        lightcurve=lc,
        comp_stars=tuple(name_of(c) for c in used),
        rejected=rejected,
        comp_scatter={name_of(c): float(s) for c, s in zip(used, scatter, strict=True)},
        comp_chi2={name_of(c): float(x) for c, x in zip(used, chi2, strict=True)},
    )
