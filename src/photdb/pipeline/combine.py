"""Reference catalogues from several images of one filter: combined or stacked.

The notebook's main flaw is that an artefact on its single reference image shows
up as the same "variable" on every search image. Two remedies, both composed from
the reference and search reductions of this package:

* :func:`reduce_reference_set`: the primary is reduced in full, the others are
  forced at its positions and calibrated to it, and the magnitudes are combined
  per source by an outlier-rejected median;
* :func:`build_stacked_reference`: the images are aligned, scaled and combined
  with per-pixel outlier rejection into one stacked image.

No I/O, no SQL.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from scipy.ndimage import binary_dilation, map_coordinates, uniform_filter

import photdb
from photdb.astrometry import refine_wcs
from photdb.calibration import calibrate_search_catalog
from photdb.fitting import MAG_PER_FLUX_FRACTION, flux_to_mag
from photdb.image import Image, MaskBits
from photdb.pipeline.config import PipelineConfig, SelectionConfig
from photdb.pipeline.io import STACK_CARD
from photdb.pipeline.prepare import (
    PreparedImage,
    Timer,
    column,
    fit_reference,
    prepared,
    zero_point,
)
from photdb.pipeline.reference import reduce_reference, reference_table
from photdb.pipeline.results import ReferenceResult, SearchResult
from photdb.pipeline.search import reduce_search
from photdb.stack import pixel_mapping, resample_image, stack_images
from photdb.variability import combine_references


def _limit_mags(result: SearchResult, sel: SelectionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Corrected mags of a forced reference; non-detections as 1σ limits (see SelectionConfig)."""
    cat = result.catalog
    mag, err = column(cat, "mag"), column(cat, "magerr")
    if not sel.ref_nondetection:
        return mag, err
    flux, dflux = column(cat, "flux"), column(cat, "dflux")
    low = ~(flux >= dflux) & np.isfinite(dflux) & (dflux > 0)
    corr = result.calibration.zp + result.calibration.surface()(column(cat, "x"), column(cat, "y"))
    mag = np.where(low, flux_to_mag(dflux, zero_point=corr)[0], mag)
    err = np.where(low, MAG_PER_FLUX_FRACTION, err)
    return mag, err


def reduce_reference_set(
    primary: Image | PreparedImage,
    others: Sequence[Image | PreparedImage],
    *,
    config: PipelineConfig = PipelineConfig(),
    band: str | None = None,
    astrometric_reference: Table | None = None,
) -> ReferenceResult:
    """A reference catalogue from several reference images of one filter.

    The primary gets the full crowdsource reduction (:func:`reduce_reference`); every
    other reference is reduced as a search image against it (:func:`reduce_search`:
    refined WCS, forced photometry at the primary's positions, zero point + Chebyshev
    correction to the primary).  Per source the magnitudes are combined with
    :func:`photdb.variability.combine_references` (median; with >= 3 measurements a
    value further than ``variability.ref_clip_sigma`` of its own floored error from
    the median is rejected), so an artefact on any one reference image does not
    define the reference magnitude.  A forced measurement below its own 1σ (a source
    absent from that reference) counts as a faint limit, see
    :attr:`SelectionConfig.ref_nondetection`.

    Returns
    -------
    ReferenceResult
        ``catalog["n_ref"]`` is the number of references used per source;
        ``catalog["mag_primary"]`` keeps the primary's own value;
        ``catalog["mag_refs"]``, ``["magerr_refs"]`` (n × images) every image's, primary first;
        ``stats.references`` holds each other reference's search stats.
    """
    ref = reduce_reference(
        primary, config=config, band=band, astrometric_reference=astrometric_reference
    )
    if not others:
        return ref
    cat = ref.catalog
    n = len(cat)
    mags = np.full((1 + len(others), n), np.nan)
    errs = np.full_like(mags, np.nan)
    mags[0], errs[0] = column(cat, "mag"), column(cat, "magerr")
    per_ref = []
    t0 = time.perf_counter()
    for i, other in enumerate(others, start=1):
        res = reduce_search(other, cat, config=config)
        rows = np.asarray(res.catalog["ref_row"])
        mags[i, rows], errs[i, rows] = _limit_mags(res, config.selection)
        per_ref.append(res.stats)
    with np.errstate(invalid="ignore"):
        mag, magerr, n_used = combine_references(
            mags, errs, method="median", config=config.variability
        )
    out = cat.copy()
    out["mag_primary"] = out["mag"]
    out["mag"], out["magerr"] = mag, magerr
    out["mag"].unit = out["magerr"].unit = "mag"
    out["n_ref"] = n_used.astype(np.int64)
    # each image's own value, primary first (kept so an outlier can be re-measured)
    out["mag_refs"], out["magerr_refs"] = mags.T, errs.T
    stats = replace(
        ref.stats,
        n_references=1 + len(others),
        references=tuple(per_ref),
        timings_s=dict(ref.stats.timings_s)
        | {"other_references": round(time.perf_counter() - t0, 4)},
    )
    return ReferenceResult(out, ref.wcs, stats)


def _resample_bits(mask: np.ndarray, wcs: WCS, target: WCS, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-pixel resampling of an integer mask onto the target grid."""
    sx, sy, _ = pixel_mapping(wcs, target_wcs=target, shape=shape)
    ny, nx = mask.shape
    inside = (sx > -0.5) & (sx < nx - 0.5) & (sy > -0.5) & (sy < ny - 0.5)
    vals = map_coordinates(mask.astype(float), [sy, sx], order=0, mode="nearest")
    return np.where(inside, vals, 0).astype(np.int32)


def build_stacked_reference(
    images: Sequence[Image | PreparedImage], *, config: PipelineConfig = PipelineConfig()
) -> Image:
    """An aligned, calibrated, outlier-rejected stack of reference images.

    Each image is masked, sky-subtracted (Bijaoui) and run through crowdsource
    detection; images 2.. get a WCS refined against the first image's detections
    (so all share the first's frame) and are scaled onto the first's photometric
    system by a zero point plus the Chebyshev Δmag(x, y) surface fitted on matched
    stars (so per-epoch response errors do not mix in the stack); then
    :func:`photdb.stack.stack_images` resamples onto the first image's grid and
    combines with per-pixel outlier rejection (``config.stack``).

    Returns
    -------
    photdb.image.Image
        ``data`` the stack (sky ~ 0, flux scale of the first image), ``variance``
        the stack variance (used as given by :func:`reduce_reference`), ``mask``
        EDGE where fewer than two images contribute (an artefact there could not be
        rejected), SATURATED where any contributing input was
        saturated; ``wcs`` and ``header`` of the first image plus ``PDBSTACK``,
        ``NCOMBINE`` and per-input scale cards; ``saturate`` infinite.
    """
    if len(images) == 0:
        raise ValueError("need at least one image")
    timer = Timer()
    preps = [prepared(img, config, timer) for img in images]
    dets = [p.detections for p in preps]
    images = [p.image for p in preps]
    shape = preps[0].data.shape
    target = images[0].wcs
    zp0, _ = zero_point(images[0], config, None)
    ref_cat = reference_table(dets[0], target, zp0)
    ref_cat["mag"] = ref_cat["mag_inst"]  # stack on the first image's instrumental scale
    data, var, wcs_list, masks, zps = [], [], [], [], []
    for i, p in enumerate(preps):
        if i == 0:
            data.append(p.data)
            var.append(p.variance)
            wcs_list.append(target)
            zps.append(0.0)
        else:
            d, w, s, zp = _calibrate_to_first(p, dets[i], ref_cat, config, timer)
            data.append(d)
            var.append(p.variance * s**2)
            wcs_list.append(w)
            zps.append(zp)
        masks.append((p.mask & config.photometry.bad_bits) != 0)
    with timer("stack"):
        stack, svar, n_used = stack_images(
            data, wcs_list, target_wcs=target, shape=shape, variances=var, masks=masks,
            config=config.stack,
        )  # fmt: skip
        stack, svar = _median_where_rejected(
            stack, svar, n_used, data, wcs_list, masks, target, preps[0].fwhm_pix, config
        )
        mask = np.zeros(shape, dtype=np.int32)
        for p, w in zip(preps, wcs_list, strict=True):
            mask |= _resample_bits(p.mask & MaskBits.SATURATED, w, target, shape)
        # pixels seen by a single image (others masked there) cannot be vetted
        empty = n_used < min(2, len(images))
        mask[empty] |= MaskBits.EDGE
        stack = np.where(empty, 0.0, stack).astype(np.float32)
        svar = np.where(empty | ~np.isfinite(svar), 0.0, svar).astype(np.float32)
    header = images[0].header.copy()
    header[STACK_CARD] = (True, "photdb stacked reference")
    header["NCOMBINE"] = (len(images), "images combined")
    for i, zp in enumerate(zps):
        header[f"PDBZP{i}"] = (round(zp, 5), f"mag offset of input {i} to input 0")
    header["PDBPROV"] = (config.provenance_id(), "photdb pipeline provenance id")
    header["PDBVERS"] = (photdb.__version__, "photdb version")
    img0 = images[0]
    return Image(stack, mask, svar, target, header, img0.gain, img0.readnoise, np.inf)


def _median_where_rejected(
    stack, svar, n_used, data, wcs_list, masks, target, fwhm_pix, config
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel median around clusters of rejected pixels (artefacts and their wings).

    :func:`photdb.stack.stack_images` rejects an artefact's bright core but keeps
    its faint wings (each below the per-pixel threshold), which leaves a faint
    "source" in the stack.  Where at least ``min_images_clip`` images overlap and
    >= 3 pixels of a 5 x 5 box had a value rejected, the region grown by 2 FWHM
    takes the median of the resampled images instead (variance x pi/2).
    """
    shape = stack.shape
    cube = np.array(
        [
            resample_image(d, w, target_wcs=target, shape=shape, mask=m, config=config.stack)[0]
            for d, w, m in zip(data, wcs_list, masks, strict=True)
        ]
    )
    n_valid = np.isfinite(cube).sum(axis=0)
    enough = n_valid >= max(3, config.stack.min_images_clip)
    rejected = enough & (n_valid > n_used)
    cluster = uniform_filter(rejected.astype(float), 5) * 25 >= 3 - 1e-6
    if not cluster.any():
        return stack, svar
    grow = int(np.ceil(2 * (fwhm_pix if np.isfinite(fwhm_pix) else 4.0)))
    region = binary_dilation(cluster, iterations=grow) & enough
    stack = stack.copy()
    svar = svar.copy()
    stack[region] = np.nanmedian(cube[:, region], axis=0)
    svar[region] *= np.pi / 2
    return stack, svar


def _calibrate_to_first(
    prep: PreparedImage, det: Table, ref_cat: Table, config: PipelineConfig, timer: Timer
) -> tuple[np.ndarray, WCS, np.ndarray, float]:
    """Refined WCS and Δmag(x, y) scaling of one image onto the first (for stacking)."""
    with timer("astrometry"):
        sol = refine_wcs(
            prep.image.wcs, column(det, "x"), column(det, "y"),
            column(ref_cat, "ra"), column(ref_cat, "dec"),
            mag=column(det, "mag_inst"), ref_mag=column(ref_cat, "mag"), config=config.astrometry,
        )  # fmt: skip
    with timer("calibration"):
        i1, i2 = sol.matched_det, sol.matched_ref
        _, res = calibrate_search_catalog(
            det[i1],
            fit_reference(ref_cat[i2], det[i1], config.selection),
            shape=prep.data.shape,
            config=config.calibration,
        )
        ny, nx = prep.data.shape
        yy, xx = np.mgrid[0:ny, 0:nx]
        dmag = res.zp + res.surface()(xx, yy)
        scale = (10.0 ** (-0.4 * dmag)).astype(np.float32)
    return prep.data * scale, sol.wcs, scale, float(res.zp)
