"""Photometric calibration of a search catalogue against its reference.

Following the pipeline notebook: the search image's forced photometry is put on
the reference image's system by a zero point plus a 4th-order 2-D Chebyshev
surface in Δmag(x, y) (the notebook saw ~10 % variations across a chip); the
search uncertainties get a 0.01 mag floor and are then expanded by the factor
that brings χ²/ν of the search-vs-reference comparison to 1.

Sign convention throughout: ``dmag = mag_ref - mag_search`` and the correction
is *added* to the search magnitudes. No I/O happens here. (About 430 lines, a
third of them the documented settings of :class:`CalibrationConfig`; the error
model it applies is in :mod:`photdb.uncertainty`.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np
from astropy.table import Column, Table

from photdb.fitting import (
    ChebyshevSurface,
    chebyshev_terms,
    fit_clipped_lstsq,
    robust_sigma,
)
from photdb.uncertainty import (
    ErrorScale,
    MagErrorScale,
    apply_error_floor,
    blend_contamination,
    fit_blend_error,
    fit_magnitude_error_scale,
    rescale_errors,
)

__all__ = [
    "CalibrationConfig",
    "CalibrationResult",
    "ErrorScale",
    "MagErrorScale",
    "affordable_order",
    "apply_error_floor",
    "calibrate_search_catalog",
    "fit_delta_mag_surface",
    "fit_magnitude_error_scale",
    "fit_zero_point",
    "rescale_errors",
    "surface_uncertainty",
]


@dataclass(frozen=True)
class CalibrationConfig:
    """Settings of the photometric calibration stage.

    Attributes
    ----------
    chebyshev_order : int
        Order of the 2-D Chebyshev Δmag(x, y) surface. Default 4 (notebook).
    total_degree : bool
        False (default): full tensor product T_i(x) T_j(y), ``i, j <= order``
        (25 terms at order 4), the convention of numpy's
        ``chebvander2d(x, y, [4, 4])``; it represents separable patterns such as
        vignetting ``f(x) g(y)`` (a smooth 8 % radial pattern is fitted to
        < 0.1 %, against ~1 % with total degree). True: only terms with
        ``i + j <= order`` (15 terms), for sparse catalogues.
    clip_sigma : float
        Rejection threshold in robust sigmas (1.4826 MAD of the error-normalised
        residuals) for the zero point and the surface fit. Default 3.0.
    max_iter : int
        Maximum fit-and-clip iterations. Default 10.
    min_stars : int
        Fewest usable stars of the stages that need a well-sampled image (the flux
        pedestal, the absolute calibration); they are skipped below it. Default 50.
    min_stars_per_term : float
        The surface's order is lowered (4, 3, ... down to 0, a constant) until the
        calibration stars that *survive the clipping* number at least this many per
        fitted term, so a sparse or tiny image still gets a well-determined
        correction; :attr:`CalibrationResult.order` records the order used. Default
        3.0 (order 4 with 25 terms needs 75 stars, order 2 27, a constant 3).
    min_stars_constant : int
        Fewest usable calibration stars for any calibration (a constant; the
        constant then needs ``min_stars_per_term`` of them to survive its clipping,
        a surface at least this many): fewer raise ``ValueError`` naming the count,
        the only way an image fails calibration. Default 10.
    fit_mag_range : tuple of float or None
        ``(bright, faint)`` reference-magnitude limits of the stars used for the
        fits (exclude saturated and faint stars). Default None (no cut).
    max_fit_magerr : float
        Largest search and reference uncertainty, mag, of a star used for the
        fits. Default 0.05.
    error_floor_mag : float
        Uncertainty floor on search magnitudes, mag. Default 0.01 (notebook).
    floor_mode : {"max", "quadrature"}
        How the floor is applied: ``max(err, floor)`` (default, the notebook's
        "uncertainty floor") or ``sqrt(err² + floor²)``.
    allow_shrink : bool
        Allow the χ²/ν factor below 1. Default False (never shrink errors).
    mag_error_scale : bool
        After the χ²/ν factor, scale the errors further by a per-magnitude factor
        (>= 1) measured robustly on all forced stars
        (:func:`~photdb.uncertainty.fit_magnitude_error_scale`). Default True; False is
        the notebook's single factor. In crowded fields faint stars' errors are
        underestimated more than the bright calibration stars' are, which is what
        made the notebook's significances unusable below 15σ.
    mag_error_bin_mag : float
        Smallest magnitude bin of that factor, mag. Default 1.0.
    mag_error_min_stars : int
        Smallest number of stars per magnitude bin. Default 100.
    blend_error : bool
        Add in quadrature ``ε (1 / fracflux - 1)``, ``ε`` fitted per image on the
        stars with ``fracflux <= 0.5`` (:func:`~photdb.uncertainty.fit_blend_error`).
        Default True; needs a ``fracflux`` column (crowdsource's), else skipped.
        Blended stars' forced fluxes carry their neighbours' model errors, which
        their quoted errors ignore; they were nearly all of the 6-15σ false
        variables on simulated bulge fields.
    """

    chebyshev_order: int = 4
    total_degree: bool = False
    clip_sigma: float = 3.0
    max_iter: int = 10
    min_stars: int = 50
    min_stars_per_term: float = 3.0
    min_stars_constant: int = 10
    fit_mag_range: tuple[float, float] | None = None
    max_fit_magerr: float = 0.05
    error_floor_mag: float = 0.01
    floor_mode: Literal["max", "quadrature"] = "max"
    allow_shrink: bool = False
    mag_error_scale: bool = True
    mag_error_bin_mag: float = 1.0
    mag_error_min_stars: int = 100
    blend_error: bool = True


def fit_zero_point(
    mag_inst: np.ndarray,
    mag_ref: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    clip_sigma: float = 3.0,
    max_iter: int = 10,
) -> tuple[float, float, int]:
    """Robust zero point ``zp`` such that ``mag_inst + zp ≈ mag_ref``.

    Differences further than ``clip_sigma`` robust sigmas (1.4826 MAD) from their
    median are rejected iteratively; the zero point is then the median of the
    survivors, or their weighted mean when ``weights`` (e.g. 1/σ²) are given.

    Returns
    -------
    zp : float
        Zero point, mag.
    scatter : float
        Robust standard deviation (1.4826 MAD) of the surviving differences.
    n : int
        Number of surviving stars.
    """
    d = np.asarray(mag_ref, float) - np.asarray(mag_inst, float)
    w = np.ones_like(d) if weights is None else np.asarray(weights, float)
    good = np.isfinite(d) & np.isfinite(w) & (w > 0)
    if not good.any():
        raise ValueError("no finite magnitude pairs for the zero point")
    keep = good.copy()
    for _ in range(max_iter):
        med = np.median(d[keep])
        sig = robust_sigma(d[keep])
        new = good & (np.abs(d - med) <= clip_sigma * max(sig, 1e-6))
        if np.array_equal(new, keep):
            break
        keep = new
    if weights is None:
        zp = float(np.median(d[keep]))
    else:
        zp = float(np.sum(w[keep] * d[keep]) / np.sum(w[keep]))
    return zp, robust_sigma(d[keep]), int(keep.sum())


def affordable_order(n_stars: int, config: CalibrationConfig = CalibrationConfig()) -> int:
    """Highest order <= ``config.chebyshev_order`` with ``config.min_stars_per_term``
    stars per term of the surface (0 at least)."""
    order = config.chebyshev_order
    while order > 0 and n_stars < _stars_needed(order, config):
        order -= 1
    return order


def _stars_needed(order: int, config: CalibrationConfig) -> int:
    """Stars an order-``order`` surface needs after clipping: the per-term rule and two
    more than the terms; a surface (order >= 1) also ``min_stars_constant``."""
    n_terms = int(chebyshev_terms(order, config.total_degree).sum())
    need = max(int(np.ceil(config.min_stars_per_term * n_terms)), n_terms + 2)
    return need if order == 0 else max(need, config.min_stars_constant)


def _fit_affordable_surface(x, y, dmag, err, shape, config):
    """:func:`fit_delta_mag_surface` at the highest order the clipped stars support.

    Starts at :func:`affordable_order` of the usable stars and lowers the order
    while the stars surviving the clipping are fewer than the order needs (a
    constant at the end); the ValueError of the constant is the image's failure.
    """
    order = affordable_order(int(np.isfinite(dmag).sum()), config)
    while True:
        try:
            return fit_delta_mag_surface(
                x, y, dmag, err, shape=shape, config=replace(config, chebyshev_order=order)
            )
        except ValueError as exc:
            if order == 0:
                raise ValueError(
                    f"no photometric calibration possible: {exc} (a constant zero point"
                    f" needs {_stars_needed(0, config)} stars after clipping)"
                ) from None
            order -= 1


def surface_uncertainty(
    surface: ChebyshevSurface,
    x: np.ndarray,
    y: np.ndarray,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    err_fit: np.ndarray,
    chi2nu: float,
    total_degree: bool = False,
) -> np.ndarray:
    """1σ uncertainty of the fitted Δmag surface at ``(x, y)``, mag.

    ``sqrt(v C vᵀ)`` with ``C = (Aᵀ W A)⁻¹ max(χ²/ν, 1)`` the covariance of the
    weighted fit over the stars it used (``x_fit, y_fit, err_fit``) and ``v`` the
    terms at each position: the error every corrected magnitude inherits from
    the correction (a few mmag with a few dozen stars, negligible with thousands).
    """
    tmask = chebyshev_terms(surface.order, total_degree).ravel()
    a = surface.vander(x_fit, y_fit)[:, tmask] / np.asarray(err_fit, float)[:, None]
    cov = np.linalg.pinv(a.T @ a) * max(float(chi2nu), 1.0)
    v = surface.vander(x, y)[:, tmask]
    return np.sqrt(np.clip(np.einsum("ij,jk,ik->i", v, cov, v), 0.0, None))


def fit_delta_mag_surface(
    x: np.ndarray,
    y: np.ndarray,
    dmag: np.ndarray,
    dmag_err: np.ndarray,
    *,
    shape: tuple[int, int],
    config: CalibrationConfig = CalibrationConfig(),
) -> tuple[ChebyshevSurface, np.ndarray]:
    """Weighted, robustly clipped Chebyshev fit of Δmag(x, y).

    Parameters
    ----------
    x, y : numpy.ndarray
        Pixel positions, 0-based (x = column, y = row).
    dmag : numpy.ndarray
        ``mag_ref - mag_search``, mag.
    dmag_err : numpy.ndarray
        Uncertainty of ``dmag``, mag (weights are ``1 / dmag_err²``; the
        caller should already include any floor).
    shape : tuple of int
        ``(ny, nx)`` of the image.
    config : CalibrationConfig
        Order, term set, clipping.

    Returns
    -------
    surface : ChebyshevSurface
    used : numpy.ndarray of bool
        Stars kept in the final fit.

    Notes
    -----
    The first mask keeps stars within ``clip_sigma`` robust sigmas of the
    median Δmag (so variables never enter the first fit). Each iteration then
    fits, computes normalised residuals ``r / err`` for *all* stars, and keeps
    those within ``clip_sigma`` x 1.4826 MAD of their median (stars may return),
    until the mask is stable.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    dmag, err = np.asarray(dmag, float), np.asarray(dmag_err, float)
    good = np.isfinite(x) & np.isfinite(y) & np.isfinite(dmag) & np.isfinite(err) & (err > 0)
    order = config.chebyshev_order
    need = _stars_needed(order, config)
    if good.sum() < need:
        raise ValueError(f"{int(good.sum())} usable stars < {need} for order {order}")
    tmask = chebyshev_terms(order, config.total_degree)
    proto = ChebyshevSurface(np.zeros((order + 1, order + 1)), tuple(shape))
    vander = proto.vander(x[good], y[good])[:, tmask.ravel()]
    d, e = dmag[good], err[good]
    norm = (d - np.median(d)) / e
    keep = np.abs(norm - np.median(norm)) <= config.clip_sigma * max(robust_sigma(norm), 1e-12)
    sol, keep = fit_clipped_lstsq(
        vander, d, e, keep, clip_sigma=config.clip_sigma, max_iter=config.max_iter,
        min_rows=need, what=f"the order-{order} surface fit",
    )  # fmt: skip
    coeffs = np.zeros((order + 1, order + 1))
    coeffs[tmask] = sol
    used = np.zeros(dmag.shape, dtype=bool)
    used[np.flatnonzero(good)[keep]] = True
    return ChebyshevSurface(coeffs, (int(shape[0]), int(shape[1]))), used


@dataclass(frozen=True)
class CalibrationResult:
    """JSON-friendly summary of :func:`calibrate_search_catalog`.

    Attributes
    ----------
    zp : float
        Zero point added to instrumental magnitudes, mag.
    zp_scatter : float
        Robust scatter of ``mag_ref - (mag_inst)`` about ``zp``, mag.
    cheb_coeffs : list of list of float
        Chebyshev coefficients of the Δmag surface (see :class:`ChebyshevSurface`).
    shape : tuple of int
        ``(ny, nx)`` defining the surface domain.
    chi2nu_before : float
        χ²/ν of the comparison with floored, unscaled errors.
    error_factor : float
        Factor applied to the floored search errors.
    n_fit : int
        Stars used in the surface fit after clipping.
    residual_rms_mag : float
        RMS of ``mag_ref - mag`` over the fit stars after correction, mag.
    error_floor_mag : float
        Floor used, mag.
    mag_error_scale : dict
        The per-magnitude factor applied after ``error_factor``
        (:meth:`~photdb.uncertainty.MagErrorScale.to_dict`; empty lists: none).
    blend_error_mag : float
        ``ε`` of the blending term, mag per unit ``1 / fracflux - 1`` (0: none).
    order : int
        Order of the Δmag surface used (lower than configured when the clipped
        calibration stars could not support it; 0: a constant).
    surface_err_mag : float
        Median 1σ uncertainty of the correction over the fit stars, mag (added in
        quadrature to every ``magerr``, see :func:`surface_uncertainty`).
    """

    zp: float
    zp_scatter: float
    cheb_coeffs: list[list[float]]
    shape: tuple[int, int]
    chi2nu_before: float
    error_factor: float
    n_fit: int
    residual_rms_mag: float
    error_floor_mag: float
    mag_error_scale: dict
    blend_error_mag: float = 0.0
    order: int = 4
    surface_err_mag: float = 0.0

    def to_dict(self) -> dict:
        """Plain dict (``json.dumps``-able)."""
        return asdict(self)

    def surface(self) -> ChebyshevSurface:
        """Rebuild the correction surface."""
        return ChebyshevSurface(np.array(self.cheb_coeffs, float), tuple(self.shape))


def _col(table: Table, name: str) -> np.ndarray:
    col = table[name]
    return np.array(getattr(col, "value", col), dtype=float)


def calibrate_search_catalog(
    table: Table,
    ref_table: Table,
    *,
    shape: tuple[int, int],
    config: CalibrationConfig = CalibrationConfig(),
    scale_ref: Table | None = None,
) -> tuple[Table, CalibrationResult]:
    """Calibrate a forced-photometry search catalogue onto its reference.

    Parameters
    ----------
    table : astropy.table.Table
        Search catalogue with ``x``, ``y`` (pix), ``mag_inst``, ``magerr_inst``,
        ``flux``, ``dflux``.
    ref_table : astropy.table.Table
        Reference ``mag``, ``magerr``, matched row by row to ``table``.
    shape : tuple of int
        ``(ny, nx)`` of the search image.
    config : CalibrationConfig
        Stage settings.
    scale_ref : astropy.table.Table, optional
        Reference ``mag``, ``magerr`` of *every* row for the per-magnitude error
        factor, when ``ref_table`` blanks the stars kept out of the fits (blended
        stars are the ones whose errors need it most). Default ``ref_table``.

    Returns
    -------
    out : astropy.table.Table
        Copy of ``table`` plus ``mag`` (corrected), ``magerr_raw`` (the input
        uncertainty), ``magerr`` (floored, multiplied by the χ²/ν factor and the
        per-magnitude factor, the blending term added in quadrature),
        ``dmag_corr`` (zp + surface applied, mag), ``dmag_corr_err`` (its
        uncertainty, included in ``magerr``) and ``calib_used`` (star in the
        final fit). Rows with ``flux <= 0`` get NaN magnitudes and errors.
    result : CalibrationResult

    Notes
    -----
    Steps: zero point from the fit stars (:func:`fit_zero_point`); Δmag surface
    of the residuals with weights from ``σ_comp² = σ_search,floored² + σ_ref²``
    (:func:`fit_delta_mag_surface`); correction applied to all rows; χ²/ν factor
    from the clipped fit stars with ``1 + n_terms`` fitted parameters
    (:func:`rescale_errors`); the surface's order is lowered (down to a constant)
    while the clipped stars cannot support it, and its own uncertainty
    (:func:`surface_uncertainty`) is added in quadrature at the end; then, with
    ``mag_error_scale``, the per-magnitude factor over the unblended rows
    (:func:`fit_magnitude_error_scale`), and with
    ``blend_error`` the blending term (:func:`fit_blend_error`).
    """
    if len(table) != len(ref_table):
        raise ValueError("table and ref_table must be matched row by row")
    cfg = config
    x, y = _col(table, "x"), _col(table, "y")
    flux = _col(table, "flux")
    positive = np.isfinite(flux) & (flux > 0)
    mag_inst = np.where(positive, _col(table, "mag_inst"), np.nan)
    err_inst = np.where(positive, _col(table, "magerr_inst"), np.nan)
    mref, eref = _col(ref_table, "mag"), _col(ref_table, "magerr")

    sel = positive & np.isfinite(mag_inst) & np.isfinite(mref) & np.isfinite(err_inst)
    sel &= np.isfinite(eref) & (err_inst <= cfg.max_fit_magerr) & (eref <= cfg.max_fit_magerr)
    if cfg.fit_mag_range is not None:
        sel &= (mref >= cfg.fit_mag_range[0]) & (mref <= cfg.fit_mag_range[1])
    if sel.sum() < cfg.min_stars_constant:
        raise ValueError(
            f"no photometric calibration possible: {int(sel.sum())} calibration stars"
            f" (errors <= {cfg.max_fit_magerr} mag) < {cfg.min_stars_constant}"
        )

    zp, zp_scatter, _ = fit_zero_point(
        mag_inst[sel], mref[sel], clip_sigma=cfg.clip_sigma, max_iter=cfg.max_iter
    )
    floored = apply_error_floor(err_inst, floor=cfg.error_floor_mag, mode=cfg.floor_mode)
    comp_err = np.hypot(floored, eref)
    idx = np.flatnonzero(sel)
    surface, used_sub = _fit_affordable_surface(
        x[idx], y[idx], mref[idx] - (mag_inst[idx] + zp), comp_err[idx], shape, cfg
    )
    order = surface.order
    used = np.zeros(len(table), dtype=bool)
    used[idx[used_sub]] = True

    corr = np.where(positive, zp + surface(x, y), np.nan)
    mag = mag_inst + corr
    n_terms = int(chebyshev_terms(order, cfg.total_degree).sum())
    resid = mref[used] - mag[used]
    chi2nu_fit = float(np.sum((resid / comp_err[used]) ** 2) / max(used.sum() - n_terms, 1))
    surf_err = surface_uncertainty(
        surface, x, y, x[used], y[used], comp_err[used], chi2nu_fit, cfg.total_degree
    )
    scale = rescale_errors(
        resid,
        err_inst[used],
        ref_err=eref[used],
        floor=cfg.error_floor_mag,
        floor_mode=cfg.floor_mode,
        dof_params=n_terms + 1,
        allow_shrink=cfg.allow_shrink,
    )
    magerr = floored * scale.factor
    mscale = MagErrorScale((), (), ())
    sref = ref_table if scale_ref is None else scale_ref
    m_all, e_all = _col(sref, "mag"), _col(sref, "magerr")
    blended = np.zeros(len(table))
    if cfg.blend_error and "fracflux" in table.colnames:
        blended = blend_contamination(_col(table, "fracflux"))
    if cfg.mag_error_scale:  # measured on the unblended stars
        clear = blended < 1.0
        mscale = fit_magnitude_error_scale(
            m_all[clear], (m_all - mag)[clear], magerr[clear], e_all[clear],
            bin_width_mag=cfg.mag_error_bin_mag, min_stars=cfg.mag_error_min_stars,
        )  # fmt: skip
        magerr = magerr * mscale(m_all)
    eps = 0.0
    if cfg.blend_error and blended.any():
        eps = fit_blend_error(m_all - mag, magerr, e_all, blended)
        magerr = np.hypot(magerr, eps * blended)
    magerr = np.hypot(magerr, surf_err)  # the correction's own uncertainty
    out = table.copy()
    out["mag"] = Column(mag, unit="mag", description="calibrated to the reference")
    out["magerr_raw"] = Column(err_inst, unit="mag", description="input uncertainty")
    out["magerr"] = Column(magerr, unit="mag", description="floored, rescaled")
    out["dmag_corr"] = Column(corr, unit="mag", description="zero point + surface added")
    out["dmag_corr_err"] = Column(surf_err, unit="mag", description="its 1 sigma, in magerr")
    out["calib_used"] = Column(used, description="used in the final surface fit")
    result = CalibrationResult(
        zp=zp,
        zp_scatter=zp_scatter,
        cheb_coeffs=surface.to_list(),
        shape=(int(shape[0]), int(shape[1])),
        chi2nu_before=scale.chi2nu_before,
        error_factor=scale.factor,
        n_fit=int(used.sum()),
        residual_rms_mag=float(np.sqrt(np.mean(resid**2))),
        error_floor_mag=cfg.error_floor_mag,
        mag_error_scale=mscale.to_dict(),
        blend_error_mag=eps,
        order=order,
        surface_err_mag=float(np.median(surf_err[used])),
    )
    return out, result
