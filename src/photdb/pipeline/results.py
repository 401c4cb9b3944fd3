"""Typed results of the pipeline for one image: catalogues, WCS and statistics.

What the pipeline hands to the survey layer, which stores it: frozen dataclasses
with named, typed fields instead of loose dicts. ``to_dict()`` gives the JSON kept
in ``galimages.details`` (fields that do not apply, ``None``, are left out).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from astropy.table import Table
from astropy.wcs import WCS

from photdb.astrometry import AstrometrySolution
from photdb.calibration import CalibrationResult
from photdb.newsources import Trail

__all__ = ["ImageStats", "ReferenceResult", "ReferenceStats", "SearchResult", "SearchStats"]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True)
class ImageStats:
    """What every reduction measures about its image.

    Attributes
    ----------
    shape : tuple of int
        ``(ny, nx)``, pix.
    seeing_fwhm_arcsec : float
        Median Moffat FWHM of bright isolated stars (else crowdsource's), arcsec.
    sky_level, sky_rms : float
        Global Bijaoui sky and its noise, ADU.
    n_detected : int
        Sources crowdsource detected on this image (a search image with the fast
        calibration detector: sep's detections above its threshold).
    n_masked_pix : int
        Pixels with any mask bit.
    provenance_id, version : str
        Settings hash (:meth:`PipelineConfig.provenance_id`) and photdb version.
    timings_s : mapping of str to float
        Wall seconds per stage.
    """

    shape: tuple[int, int]
    seeing_fwhm_arcsec: float
    sky_level: float
    sky_rms: float
    n_detected: int
    n_masked_pix: int
    provenance_id: str
    version: str
    timings_s: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; fields that are None are left out."""
        return _plain(self)


@dataclass(frozen=True, kw_only=True)
class ReferenceStats(ImageStats):
    """Statistics of a reference reduction.

    Attributes
    ----------
    zp : float
        Zero point of the catalogue's ``mag``, mag.
    zp_source : str
        Where it came from: a header card, ``nominal_zp[<band>]``, ``catalogue
        mag_<band>`` (flattened on an external catalogue) or ``none``.
    n_references : int
        Reference images combined (1, or the size of a reference set).
    stacked : bool
        The image is a stacked reference.
    astrom_rms_arcsec, astrom_n_matched, astrom_offset_arcsec : optional
        The WCS tie to the astrometric catalogue, when one was given.
    photometric_calibration : mapping, optional
        The external photometric fit (:func:`photdb.absolute.flatten_reference`), or
        why it was skipped.
    references : tuple of SearchStats
        Each other member of a reference set, reduced as a search image.
    """

    zp: float
    zp_source: str
    n_references: int = 1
    stacked: bool = False
    astrom_rms_arcsec: float | None = None
    astrom_n_matched: int | None = None
    astrom_offset_arcsec: tuple[float, float] | None = None
    photometric_calibration: Mapping[str, Any] | None = None
    references: tuple[SearchStats, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SearchStats(ImageStats):
    """Statistics of a search reduction (forced photometry calibrated to a reference).

    Attributes
    ----------
    n_forced, n_positive, n_variables, n_near_edge : int
        Reference positions forced; with flux > 0; flagged variable; too near an
        edge to be flagged.
    astrom_rms_arcsec, astrom_rms_pix : float
        RMS of the refined WCS against the reference catalogue.
    astrom_n_matched : int
    astrom_offset_arcsec : tuple of float
        Bulk shift of the header WCS found.
    zp_approx, zp_approx_scatter : float
        Zero point from the detections (before the forced fit), mag.
    pedestal_adu : float
        Mean additive flux pedestal removed, ADU (0: none).
    pedestal_coeffs : list, optional
        Its Chebyshev coefficients.
    zp, chi2nu_before, error_factor : float
        The calibration (see :class:`~photdb.calibration.CalibrationResult`).
    calib_n_fit : int
    calib_residual_rms_mag : float
    calib_order : int
        Order of the Δmag surface used (0: a constant; lower than configured on
        sparse images).
    calib_surface_err_mag : float
        Median uncertainty of the correction, mag (in every ``magerr``).
    n_new_candidates : int
        New-source candidates found in the forced fit's residual.
    trails : tuple of photdb.newsources.Trail
        Satellite trails found (and masked) in the residual.
    """

    n_forced: int
    n_positive: int
    n_variables: int
    n_near_edge: int
    astrom_rms_arcsec: float
    astrom_rms_pix: float
    astrom_n_matched: int
    astrom_offset_arcsec: tuple[float, float]
    zp_approx: float
    zp_approx_scatter: float
    pedestal_adu: float
    pedestal_coeffs: list[list[float]] | None
    zp: float
    chi2nu_before: float
    error_factor: float
    calib_n_fit: int
    calib_residual_rms_mag: float
    calib_order: int = 4
    calib_surface_err_mag: float = 0.0
    n_new_candidates: int = 0
    trails: tuple[Trail, ...] = ()


@dataclass(frozen=True, eq=False)
class ReferenceResult:
    """A reference catalogue and how it was made.

    Attributes
    ----------
    catalog : astropy.table.Table
        One row per source: ``x, y`` (pix), ``ra, dec`` (deg), ``flux, dflux`` (ADU),
        ``mag, magerr`` (calibrated with the zero point; combined over references by
        :func:`~photdb.pipeline.reduce_reference_set`), ``mag_inst``, ``qf, rchi2,
        fracflux``, ``flags`` (mask bits at the source pixel), ``n_ref`` (references
        combined), plus ``fwhm_pix``, ``sky``, ``magerr_inst``.
    wcs : astropy.wcs.WCS
        WCS of the (primary) reference image, tied to the astrometric catalogue when
        one was given.
    stats : ReferenceStats
    """

    catalog: Table
    wcs: WCS
    stats: ReferenceStats


@dataclass(frozen=True, eq=False)
class SearchResult:
    """Forced photometry of a search image, calibrated to its reference.

    Attributes
    ----------
    catalog : astropy.table.Table
        One row per reference source forced on this image: ``ref_row`` (row index
        into the reference catalogue given), ``x, y, ra, dec``, ``flux, dflux``,
        ``mag`` (corrected; NaN if flux <= 0), ``magerr`` (floor, then χ²/ν factor),
        ``magerr_raw``, ``mag_inst``, ``qf, rchi2, fracflux, flags``,
        ``significance`` ((mag - ref mag) / combined error), ``is_variable``,
        ``ref_mag, ref_magerr``, ``dmag_corr`` (zp + surface added), ``calib_used``,
        ``added`` (an added new source, compared with the reference in flux: its
        reference catalogue row carries ``ref_flux, ref_dflux``).
    wcs : astropy.wcs.WCS
        The refined WCS.
    calibration : photdb.calibration.CalibrationResult
    astrometry : photdb.astrometry.AstrometrySolution
    stats : SearchStats
    new_sources : astropy.table.Table
        Candidate new sources in the forced fit's residual that match no reference
        source (:func:`photdb.newsources.find_new_sources`): ``x, y, ra, dec, flux,
        dflux, mag, magerr`` (calibrated like the catalogue), ``snr, sharpness``.
    """

    catalog: Table
    wcs: WCS
    calibration: CalibrationResult
    astrometry: AstrometrySolution
    stats: SearchStats
    new_sources: Table = field(default_factory=Table)
