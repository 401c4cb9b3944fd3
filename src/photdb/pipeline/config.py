"""Settings of the whole crowded-field pipeline: one frozen dataclass per stage.

:class:`PipelineConfig` gathers the stage configurations (mask, sky, photometry,
astrometry, calibration, variability, stack) plus the few settings that only the
composition in :mod:`photdb.pipeline` needs (:class:`SelectionConfig`, nominal zero
points).  Every default is the notebook's value where it gives one.  The settings
are hashed, with the package version, into :meth:`PipelineConfig.provenance_id`,
which is stored with every output.

Examples
--------
>>> cfg = PipelineConfig()
>>> cfg.calibration.chebyshev_order, cfg.variability.nsigma, cfg.sky.tiles
(4, 15.0, (20, 10))
>>> len(cfg.provenance_id())
16
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import typing
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any

import photdb
from photdb.astrometry import AstrometryConfig
from photdb.background import SkyConfig
from photdb.calibration import CalibrationConfig
from photdb.detection import DetectionConfig
from photdb.errors import ConfigError
from photdb.image import MaskConfig
from photdb.newsources import NewSourceConfig
from photdb.photometry import PhotometryConfig
from photdb.stack import StackConfig
from photdb.variability import VariabilityConfig

__all__ = ["NOMINAL_ZP", "PipelineConfig", "SelectionConfig", "load_config"]

#: Approximate zero points, mag for 1 ADU *in a* ``nominal_exptime_s`` = 90 s DECam-like
#: exposure (photometric sky): per-second ADU zero points u 23.9, g 26.0, r 26.2,
#: i 25.9, z 25.5, Y 24.4 (the values photdb.sim uses as "nominal"; rough DECam-like
#: numbers, not a measured calibration) plus 2.5 log10(90) = 4.886.  Used only when
#: the header has no MAGZERO/MAGZPT; they set the absolute scale of a reference
#: catalogue to ~0.1-0.3 mag (clouds, gain), as the notebook accepts ("the zeropoint
#: of the reference image should give you absolute calibration to within 10% or
#: 20%").  Search images are calibrated to their reference, so these numbers never
#: affect relative photometry or variability.
NOMINAL_ZP: dict[str, float] = {
    "u": 28.786,
    "g": 30.886,
    "r": 31.086,
    "i": 30.786,
    "z": 30.386,
    "Y": 29.286,
}


@dataclass(frozen=True)
class SelectionConfig:
    """Settings of the composition steps that are not a stage of their own.

    Attributes
    ----------
    forced_edge_pix : float, default 0.0
        Reference positions are forced on a search image when they land at least this
        far (pix) inside the first/last pixel centre.
    variability_edge_pix : float, default 20.0
        Sources closer than this (pix) to the edge of the search chip, or of the
        reference image's footprint, are measured and saved but never reported as
        variable: near an edge, stars outside the other image's footprint are missing
        from the forced model and their light leaks into the forced fluxes (with the
        simulator's 3" dithers this gave 0.5-3 mag false brightenings at the edges).
        About 4 FWHM of the worst seeing plus the largest dither is a safe value.
    fit_min_qf : float, default 0.9
        Stars used for the zero point and the Chebyshev surface must have crowdsource
        ``qf`` (unmasked PSF fraction) at least this on both the search image and the
        reference (dimensionless).
    fit_min_fracflux : float, default 0.5
        ... and ``fracflux`` (fraction of the flux in the PSF footprint that is the
        star's own) at least this on both: heavily blended stars are left out of the
        fits (they are still corrected and tested for variability).
    fit_require_unflagged : bool, default True
        ... and no mask bit at the star's pixel on either image.
    ref_nondetection : bool, default True
        When several references are combined, a forced measurement with
        ``flux < dflux`` (including flux <= 0) counts as magnitude
        ``-2.5 log10(dflux) + corr`` with error 1.0857 mag (a 1-sigma limit) instead of
        being dropped, so a fake source present only on the primary reference is
        out-voted by the others.
    fit_pedestal : bool, default True
        Fit and remove an additive flux offset of the forced photometry against the
        reference (``f = k f_ref + c``; a residual sky error times the PSF's
        effective area) before the Δmag surface fit.  Without it, the seeing-dependent
        sky error of a crowded field biases faint stars by 0.05-0.3 mag at 19-21 mag
        in 1.4" seeing and inflates the χ²/ν factor several-fold.
    pedestal_order : int, default 2
        Order of that additive offset as a 2-D Chebyshev surface c(x, y) in ADU, fitted
        jointly with a multiplicative surface of the calibration's order
        (``f = g(x, y) f_ref + c(x, y)``, :func:`photdb.pedestal.fit_flux_pedestal`): the
        sky error changes across a crowded chip, and a single constant left faint-star
        structure that the Chebyshev Δmag fit then imprinted on the bright stars.
        0 is one constant.
    reference_photometry : bool, default True
        When the astrometric catalogue also has a ``mag_<band>`` column (e.g. DECaPS or
        Pan-STARRS photometry in the survey's band), fit a zero point and a Chebyshev
        surface of the reference catalogue against it: references become flat and
        absolute instead of carrying their own flat-field error (the notebook's
        reference zero point is "within 10% or 20%").
    gain_fallback : float or None, default None
        e-/ADU used by :func:`photdb.pipeline.read_chip` when the header has no gain;
        None estimates an *effective* gain from the image itself (sky level / sky
        variance of the Bijaoui fit), which makes the variance match the observed
        noise even for non-CCD data such as photographic plates.
    """

    forced_edge_pix: float = 0.0
    variability_edge_pix: float = 20.0
    fit_min_qf: float = 0.9
    fit_min_fracflux: float = 0.5
    fit_require_unflagged: bool = True
    ref_nondetection: bool = True
    fit_pedestal: bool = True
    pedestal_order: int = 2
    reference_photometry: bool = True
    gain_fallback: float | None = None


def _plain(value: Any) -> Any:
    """Dataclasses, tuples and mappings to JSON-able dicts and lists."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict | MappingProxyType):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _coerce(value: Any, hint: Any) -> Any:
    """TOML lists back to tuples where the field is a tuple."""
    origin = typing.get_origin(hint)
    if isinstance(value, list) and (origin is tuple or tuple in typing.get_args(hint)):
        return tuple(value)
    return value


def _override(obj: Any, values: dict[str, Any], section: str) -> Any:
    """Copy of a stage dataclass with ``values`` replaced; unknown keys raise."""
    hints = typing.get_type_hints(type(obj))
    unknown = set(values) - set(hints)
    if unknown:
        raise ValueError(f"[{section}]: unknown setting(s) {', '.join(sorted(unknown))}")
    return dataclasses.replace(obj, **{k: _coerce(v, hints[k]) for k, v in values.items()})


@dataclass(frozen=True)
class PipelineConfig:
    """All settings of the crowded-field pipeline.

    Attributes
    ----------
    mask : MaskConfig
        Saturation/bleed, bad columns, cosmic rays, edge (:func:`photdb.image.build_mask`).
    sky : SkyConfig
        Bijaoui sky in 20 x 10 tiles + smooth surface (:func:`photdb.background.estimate_sky`).
    photometry : PhotometryConfig
        crowdsource fitting and forced photometry.  Default as PhotometryConfig but
        ``forced_local_sky=False``: forced fits keep the Bijaoui sky, whose residual
        constant error the pedestal fit (:class:`SelectionConfig`) removes; the
        100-pix median residual sky of ``fit_im_force`` depends on seeing in crowded
        fields and biased 20th-mag stars by ~0.1 mag in 1.4" seeing.
    detection : DetectionConfig
        How a search image finds its calibration stars: ``detector = "fast"`` (sep +
        a PSF fitted on them) or ``"crowdsource"`` (the full fit, as for references).
    astrometry : AstrometryConfig
        WCS refinement against the reference catalogue.
    calibration : CalibrationConfig
        Zero point, 4th-order Chebyshev Δmag(x, y), 0.01 mag floor, χ²/ν factor.
    variability : VariabilityConfig
        15σ cut, repeats, reference combination.
    stack : StackConfig
        Stacked references.
    selection : SelectionConfig
        Which stars enter the fits, forced-position edge, gain fallback.
    newsources : NewSourceConfig
        The search for new sources (transients) in the forced fit's residual, and
        when the survey adds them to the reference catalogue.
    nominal_zp : dict of str to float
        Approximate zero point per band (mag for 1 ADU total in a ``nominal_exptime_s``
        exposure), used when the header has no MAGZERO/MAGZPT; see :data:`NOMINAL_ZP`.
    nominal_exptime_s : float, default 90.0
        Exposure time the ``nominal_zp`` values refer to (s); a header EXPTIME scales
        them by ``2.5 log10(EXPTIME / nominal_exptime_s)``.
    astrometric_catalog : str or None, default None
        A catalogue file (ECSV, FITS, VOTable or CSV with ``ra``, ``dec`` in degrees and
        optionally ``mag``), e.g. Gaia stars of the field. When given, every reference
        image's WCS is refined against it, so reference positions are absolute and
        agree across filters (the cross-filter match needs that); without it the
        reference positions inherit the header WCS error. Columns ``mag_<band>`` (and
        ``mag_<band>_err``), when present, also calibrate the references
        photometrically (``selection.reference_photometry``). Gaia DR3's columns as
        the archive delivers them are accepted (``phot_g_mean_mag`` as ``mag``); rows
        with ``pmra``, ``pmdec`` are moved from ``ref_epoch`` to each image's epoch
        (:mod:`photdb.propermotion`).
    """

    mask: MaskConfig = field(default_factory=MaskConfig)
    sky: SkyConfig = field(default_factory=SkyConfig)
    photometry: PhotometryConfig = field(
        default_factory=lambda: PhotometryConfig(forced_local_sky=False)
    )
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    astrometry: AstrometryConfig = field(default_factory=AstrometryConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    variability: VariabilityConfig = field(default_factory=VariabilityConfig)
    stack: StackConfig = field(default_factory=StackConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    newsources: NewSourceConfig = field(default_factory=NewSourceConfig)
    nominal_zp: dict[str, float] = field(default_factory=lambda: dict(NOMINAL_ZP))
    nominal_exptime_s: float = 90.0
    astrometric_catalog: str | None = None

    def __hash__(self) -> int:  # dict field: hash the provenance instead
        return hash(self.provenance_id())

    def to_dict(self) -> dict[str, Any]:
        """Every setting as a JSON-able dict (tuples become lists)."""
        return _plain(self)

    def provenance_id(self) -> str:
        """16 hex characters: sha256 of the result-changing settings and the version.

        Every setting changes results except ``selection.gain_fallback`` when the
        header has a gain; it is hashed anyway (simple and safe).
        """
        payload = json.dumps(
            {"settings": self.to_dict(), "version": photdb.__version__},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PipelineConfig:
        """Build from a (partial) nested dict such as :meth:`to_dict` output."""
        base = cls()
        kwargs: dict[str, Any] = {}
        for key, val in values.items():
            if key == "nominal_zp":
                kwargs[key] = {**base.nominal_zp, **{str(k): float(v) for k, v in val.items()}}
            elif key == "nominal_exptime_s":
                kwargs[key] = float(val)
            elif key == "astrometric_catalog":
                kwargs[key] = None if val in (None, "") else str(val)
            elif key in {f.name for f in dataclasses.fields(cls)}:
                if not isinstance(val, dict):
                    raise ValueError(f"[{key}] must be a table of settings")
                kwargs[key] = _override(getattr(base, key), val, key)
            else:
                raise ValueError(f"unknown pipeline section {key!r}")
        return dataclasses.replace(base, **kwargs)

    @classmethod
    def from_toml(cls, path: str | PathLike[str]) -> PipelineConfig:
        """Defaults overridden per stage from a TOML file.

        Examples
        --------
        A file with ``[calibration]`` / ``chebyshev_order = 3`` and ``[sky]`` /
        ``tiles = [10, 5]`` changes just those two settings.  A top-level
        ``nominal_exptime_s`` and a ``[nominal_zp]`` table (``r = 31.0``) are accepted too.
        """
        with open(path, "rb") as fh:
            values = tomllib.load(fh)
        return cls.from_dict(values)


def load_config(
    path: str | PathLike[str] | None = None,
    *,
    astrometric_catalog: str | PathLike[str] | None = None,
    nsigma: float | None = None,
) -> PipelineConfig:
    """The pipeline settings a run uses: defaults, a TOML file, then explicit overrides.

    Parameters
    ----------
    path : path-like, optional
        A TOML file of per-stage settings (:meth:`PipelineConfig.from_toml`).
    astrometric_catalog : path-like, optional
        Overrides ``astrometric_catalog`` (stored as an absolute path).
    nsigma : float, optional
        Overrides ``variability.nsigma`` (the detection cut).

    Raises
    ------
    photdb.errors.ConfigError
        One line naming the file and the problem.

    Examples
    --------
    >>> load_config(nsigma=6.0).variability.nsigma
    6.0
    """
    try:
        cfg = PipelineConfig() if path is None else PipelineConfig.from_toml(path)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{path}: cannot read pipeline settings ({exc})") from None
    if astrometric_catalog is not None:
        catalog = Path(astrometric_catalog)
        if not catalog.is_file():
            raise ConfigError(f"{catalog}: no such astrometric catalogue")
        cfg = dataclasses.replace(cfg, astrometric_catalog=str(catalog.absolute()))
    if nsigma is not None:
        cfg = dataclasses.replace(
            cfg, variability=dataclasses.replace(cfg.variability, nsigma=float(nsigma))
        )
    return cfg
