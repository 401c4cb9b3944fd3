"""A reference image reduced in full: the catalogue every search image is forced at.

Mask, variance from gain and read noise, Bijaoui sky (20 x 10 tiles + smooth
surface), crowdsource PSF photometry of every source, an approximate zero point
(header MAGZERO/MAGZPT or :data:`~photdb.pipeline.config.NOMINAL_ZP`); optionally the
WCS tied to an absolute astrometric catalogue and the photometry flattened on its
``mag_<band>`` column. No I/O, no SQL.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from photdb.absolute import flatten_reference
from photdb.astrometry import refine_wcs
from photdb.bands import band_family, header_band
from photdb.image import Image
from photdb.pipeline.config import PipelineConfig
from photdb.pipeline.prepare import (
    PreparedImage,
    Timer,
    column,
    fit_quality,
    image_stats,
    is_stack,
    prepared,
    zero_point,
)
from photdb.pipeline.results import ReferenceResult, ReferenceStats
from photdb.propermotion import attach_proper_motions, catalog_at_epoch, epoch_of_header

__all__ = ["reduce_reference", "reference_table"]

_UNITS = {"x": "pix", "y": "pix", "ra": "deg", "dec": "deg", "flux": "adu", "dflux": "adu",
          "mag": "mag", "magerr": "mag", "mag_inst": "mag", "magerr_inst": "mag",
          "fwhm_pix": "pix", "sky": "adu"}  # fmt: skip


def reference_table(det: Table, wcs: WCS, zp: float) -> Table:
    """Detections -> reference catalogue columns (positions by ``wcs``, mag = mag_inst + zp)."""
    x, y = column(det, "x"), column(det, "y")
    ra, dec = wcs.all_pix2world(x, y, 0)
    t = Table()
    t["x"], t["y"] = x, y
    t["ra"], t["dec"] = ra, dec
    t["flux"], t["dflux"] = column(det, "flux"), column(det, "dflux")
    t["mag"] = column(det, "mag_inst") + zp
    t["magerr"] = column(det, "magerr_inst")
    t["mag_inst"] = column(det, "mag_inst")
    t["magerr_inst"] = column(det, "magerr_inst")
    for name in ("qf", "rchi2", "fracflux", "fwhm_pix", "sky"):
        t[name] = column(det, name)
    t["flags"] = np.asarray(det["flags"], dtype=np.int64)
    t["n_ref"] = np.ones(len(t), dtype=np.int64)
    for k, u in _UNITS.items():
        t[k].unit = u
    return t


def reduce_reference(
    image: Image | PreparedImage,
    *,
    config: PipelineConfig = PipelineConfig(),
    band: str | None = None,
    astrometric_reference: Table | None = None,
) -> ReferenceResult:
    """Full crowdsource reduction of a reference image.

    Parameters
    ----------
    image : photdb.image.Image or PreparedImage
        The reference image (ADU, sky not subtracted).
    config : PipelineConfig
    band : str, optional
        Canonical filter band (the database's ``galexposures.filter``) for the nominal
        zero point and the catalogue column; default the header's.
    astrometric_reference : astropy.table.Table, optional
        Absolute positions (``ra``, ``dec`` in degrees, optional ``mag``) the image's
        WCS is refined against before the catalogue's sky positions are computed
        (see ``PipelineConfig.astrometric_catalog``), Gaia DR3's columns accepted:
        rows with ``pmra``/``pmdec`` are first moved from their ``ref_epoch`` to the
        image's (header ``MJD-OBS``/``DATE-OBS`` + half ``EXPTIME``;
        :func:`photdb.propermotion.catalog_at_epoch`). When it also has a
        ``mag_<band>`` column for this image's band, the catalogue is put on that
        photometric system, flat across the chip (:func:`photdb.absolute.flatten_reference`).
        The catalogue gets the proper motions of its counterparts (``pmra``,
        ``pmdec``, ``pm_epoch_mjd``: :func:`photdb.propermotion.attach_proper_motions`),
        with which a search image forces each star where it is at its own epoch.

    Returns
    -------
    ReferenceResult
        ``stats.timings_s`` has ``mask, sky, detect, [astrometry,] catalog
        [, photometric]``; ``stats.photometric_calibration`` the external fit, or
        why it was skipped (too few catalogue matches: the header or nominal zero point
        then stays, as without a catalogue).
    """
    timer = Timer()
    prep = prepared(image, config, timer)
    image, det = prep.image, prep.detections
    wcs, astrom, epoch = image.wcs, {}, None
    if astrometric_reference is not None:
        with timer("astrometry"):  # proper motions (if any) to the image's epoch
            epoch = epoch_of_header(image.header)
            astrometric_reference = catalog_at_epoch(astrometric_reference, epoch)
            wcs, astrom = _tie_to_catalog(det, wcs, astrometric_reference, config)
    with timer("catalog"):
        zp, zp_source = zero_point(image, config, band)
        cat = reference_table(det, wcs, zp)
        if astrometric_reference is not None and epoch is not None:
            cat = attach_proper_motions(cat, astrometric_reference, epoch)
    phot: dict[str, Any] | None = None
    col = photometric_column(astrometric_reference, band, image.header)
    if col is not None and config.selection.reference_photometry:
        with timer("photometric"):
            try:
                cat, phot = flatten_reference(
                    cat, astrometric_reference, col, shape=prep.data.shape,
                    config=config.calibration, use=fit_quality(config.selection, cat),
                )  # fmt: skip
                zp, zp_source = zp + phot["zp"], f"catalogue {col}"
            except ValueError as exc:  # too sparse: keep the header/nominal zero point
                phot = {"column": col, "skipped": str(exc)}
    stats = ReferenceStats(
        **image_stats(prep, config), **astrom, zp=zp, zp_source=zp_source,
        stacked=is_stack(image), photometric_calibration=phot, timings_s=timer.as_dict(),
    )  # fmt: skip
    return ReferenceResult(cat, wcs, stats)


def photometric_column(catalog: Table | None, band: str | None, header: fits.Header) -> str | None:
    """The catalogue's ``mag_<band>`` column for this image, or None.

    Tried in turn: the canonical band (``mag_r_decam``), then its family (``mag_r``),
    for the database's band and the header's.
    """
    if catalog is None:
        return None
    for b in (band, header_band(header)):
        for name in (b, band_family(b)):
            if name and f"mag_{name}" in catalog.colnames:
                return f"mag_{name}"
    return None


def _tie_to_catalog(
    det: Table, wcs: WCS, catalog: Table, config: PipelineConfig
) -> tuple[WCS, dict[str, Any]]:
    """Refine a reference image's WCS against an absolute astrometric catalogue."""
    ref_mag = np.asarray(catalog["mag"], float) if "mag" in catalog.colnames else None
    sol = refine_wcs(
        wcs,
        column(det, "x"),
        column(det, "y"),
        np.asarray(catalog["ra"], float),
        np.asarray(catalog["dec"], float),
        mag=column(det, "mag_inst") if ref_mag is not None else None,
        ref_mag=ref_mag,
        config=config.astrometry,
    )
    return sol.wcs, {
        "astrom_rms_arcsec": float(sol.rms_arcsec),
        "astrom_n_matched": int(sol.n_matched),
        "astrom_offset_arcsec": tuple(float(v) for v in sol.offset_arcsec),
    }
