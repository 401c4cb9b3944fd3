"""Astrometric catalogues with proper motions, moved to an image's epoch.

A catalogue arrives either as Gaia DR3 delivers it (``source_id``, ``ra``, ``dec``,
``pmra``, ``pmdec``, ``ref_epoch`` (Julian year, 2016.0 for DR3),
``phot_g_mean_mag``, the ``*_error`` columns, ...; ECSV, CSV, FITS or VOTable as
the archive writes them, with or without units) or in photdb's older form
(``ra``, ``dec`` in degrees and optional ``mag``: positions valid at any epoch).
:func:`normalise_catalog` makes both look alike (a ``mag`` column from
``phot_g_mean_mag`` when there is none); :func:`catalog_at_epoch` moves the rows
with a proper motion to an image's epoch with astropy's
:meth:`~astropy.coordinates.SkyCoord.apply_space_motion` (rows without one keep
their position). No I/O.

Examples
--------
>>> from astropy.table import Table
>>> from astropy.time import Time
>>> t = Table({"ra": [271.5, 271.5], "dec": [-28.9, -28.9], "pmra": [0.0, float("nan")],
...            "pmdec": [-5.0, float("nan")], "ref_epoch": [2016.0, 2016.0]})
>>> moved = catalog_at_epoch(t, Time(2021.0, format="jyear"))
>>> round(float((moved["dec"][0] - t["dec"][0]) * 3.6e6), 1), float(moved["dec"][1])
(-25.0, -28.9)
"""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time
from erfa import ErfaWarning

__all__ = [
    "attach_proper_motions",
    "catalog_at_epoch",
    "epoch_of_header",
    "has_proper_motions",
    "normalise_catalog",
    "positions_at_epoch",
]

#: Gaia DR3's reference epoch, Julian year (used when a catalogue has pm but no ref_epoch).
GAIA_DR3_EPOCH = 2016.0


def _values(table: Table, name: str, unit: u.UnitBase) -> np.ndarray:
    """Column as floats in ``unit`` (its own unit when it has one, else ``unit``);
    masked entries are NaN."""
    col = table[name]
    data = np.ma.filled(np.ma.asarray(col, dtype=float), np.nan)
    if getattr(col, "unit", None) is not None and col.unit != u.dimensionless_unscaled:
        data = (data * u.Unit(col.unit)).to_value(unit)
    return np.asarray(data, float)


def has_proper_motions(table: Table) -> bool:
    """True when the catalogue has ``pmra`` and ``pmdec`` columns."""
    return {"pmra", "pmdec"} <= set(table.colnames)


def normalise_catalog(table: Table) -> Table:
    """``ra``, ``dec`` in degrees as plain floats, and ``mag`` from ``phot_g_mean_mag``
    when the catalogue has no ``mag`` (Gaia DR3's own columns); other columns kept.

    Raises
    ------
    ValueError
        No ``ra``/``dec`` columns, or a ``pmra`` without a ``pmdec`` (or back).
    """
    missing = {"ra", "dec"} - set(table.colnames)
    if missing:
        raise ValueError(f"astrometric catalogue lacks {', '.join(sorted(missing))}")
    if ("pmra" in table.colnames) != ("pmdec" in table.colnames):
        raise ValueError("astrometric catalogue has only one of pmra and pmdec")
    out = Table(table, copy=True, masked=False)
    for name in ("ra", "dec"):
        out[name] = _values(table, name, u.deg)
        out[name].unit = u.deg
    if "mag" not in out.colnames and "phot_g_mean_mag" in out.colnames:
        out["mag"] = _values(table, "phot_g_mean_mag", u.mag)
        out["mag"].unit = u.mag
    return out


def epoch_of_header(header) -> Time | None:
    """Mid-exposure time of an image from its FITS header (``MJD-OBS`` or ``DATE-OBS``
    plus half ``EXPTIME``), or None when the header has neither."""
    try:
        if header.get("MJD-OBS") is not None:
            start = Time(float(header["MJD-OBS"]), format="mjd", scale="utc")
        elif header.get("DATE-OBS"):
            start = Time(str(header["DATE-OBS"]).rstrip("Zz"), format="isot", scale="utc")
        else:
            return None
    except (TypeError, ValueError):
        return None
    exptime = header.get("EXPTIME")
    if isinstance(exptime, int | float) and np.isfinite(exptime) and exptime > 0:
        start = start + 0.5 * float(exptime) * u.s
    return start


def catalog_at_epoch(table: Table, epoch: Time | None) -> Table:
    """Catalogue positions moved to ``epoch`` by their proper motions.

    Parameters
    ----------
    table : astropy.table.Table
        ``ra``, ``dec`` (deg) and, for the rows to move, ``pmra`` (μα*, i.e. with
        cos δ, as Gaia) and ``pmdec`` in mas/yr (or their own units) valid at
        ``ref_epoch`` (Julian year; default 2016.0, Gaia DR3's).
    epoch : astropy.time.Time or None
        The image's epoch; None returns the catalogue unchanged (normalised).

    Returns
    -------
    astropy.table.Table
        A copy with ``ra``, ``dec`` at ``epoch`` (rows without a finite proper
        motion unchanged), ``ref_epoch`` set to it for the rows moved, and the
        catalogue's own positions in ``ra_catalog``, ``dec_catalog``.
        Parallax and radial velocity are ignored (a distant bulge star's parallax of
        ~0.1 mas is far below the budget).
    """
    out = normalise_catalog(table)
    if epoch is None or not has_proper_motions(out):
        return out
    pmra, pmdec = _values(out, "pmra", u.mas / u.yr), _values(out, "pmdec", u.mas / u.yr)
    if "ref_epoch" in out.colnames:
        ref = _values(out, "ref_epoch", u.yr)
    else:
        ref = np.full(len(out), GAIA_DR3_EPOCH)
    move = np.isfinite(pmra) & np.isfinite(pmdec) & np.isfinite(ref)
    out["ra_catalog"], out["dec_catalog"] = out["ra"].copy(), out["dec"].copy()
    if not move.any():
        return out
    coord = SkyCoord(
        ra=np.asarray(out["ra"])[move] * u.deg, dec=np.asarray(out["dec"])[move] * u.deg,
        pm_ra_cosdec=pmra[move] * u.mas / u.yr, pm_dec=pmdec[move] * u.mas / u.yr,
        obstime=Time(ref[move], format="jyear", scale="tcb"), frame="icrs",
    )  # fmt: skip
    with warnings.catch_warnings():  # no distance: ERFA assumes a distant star, as we do
        warnings.simplefilter("ignore", ErfaWarning)
        moved = coord.apply_space_motion(new_obstime=epoch)
    out["ra"][move] = moved.ra.deg
    out["dec"][move] = moved.dec.deg
    out["ref_epoch"] = np.where(move, epoch.tcb.jyear, ref)  # moving again is a no-op
    out["ref_epoch"].unit = u.yr
    return out


def attach_proper_motions(
    reference: Table, catalog: Table, epoch: Time, *, radius_arcsec: float = 0.3
) -> Table:
    """A reference catalogue with the proper motions of its astrometric counterparts.

    Parameters
    ----------
    reference : astropy.table.Table
        ``ra``, ``dec`` (deg) measured at ``epoch``.
    catalog : astropy.table.Table
        Astrometric catalogue (see :func:`catalog_at_epoch`); one without proper
        motions leaves the reference as it is.
    epoch : astropy.time.Time
        The reference's epoch.
    radius_arcsec : float
        Match radius (nearest catalogue star, at ``epoch``). Default 0.3.

    Returns
    -------
    astropy.table.Table
        A copy with ``pmra``, ``pmdec`` (mas/yr; NaN: no counterpart, the source
        stays where it was measured) and ``pm_epoch_mjd`` (``epoch``), which
        :func:`positions_at_epoch` uses.
    """
    out = reference.copy(copy_data=False)
    n = len(out)
    pmra, pmdec = np.full(n, np.nan), np.full(n, np.nan)
    cat = catalog_at_epoch(catalog, epoch)
    if has_proper_motions(cat) and n and len(cat):
        c_ref = SkyCoord(np.asarray(out["ra"], float), np.asarray(out["dec"], float), unit="deg")
        c_cat = SkyCoord(np.asarray(cat["ra"]), np.asarray(cat["dec"]), unit="deg")
        idx, sep, _ = c_ref.match_to_catalog_sky(c_cat)
        ok = sep.arcsec <= radius_arcsec
        pmra[ok] = _values(cat, "pmra", u.mas / u.yr)[idx[ok]]
        pmdec[ok] = _values(cat, "pmdec", u.mas / u.yr)[idx[ok]]
    out["pmra"], out["pmdec"] = pmra, pmdec
    out["pmra"].unit = out["pmdec"].unit = u.mas / u.yr
    out["pm_epoch_mjd"] = np.full(n, float(epoch.utc.mjd))
    return out


def positions_at_epoch(reference: Table, epoch: Time | None) -> tuple[np.ndarray, np.ndarray]:
    """``ra, dec`` (deg) of a reference catalogue at ``epoch``: moved by the proper
    motions :func:`attach_proper_motions` gave it, unchanged without them (or
    without an epoch)."""
    ra, dec = np.asarray(reference["ra"], float), np.asarray(reference["dec"], float)
    if epoch is None or not {"pmra", "pmdec", "pm_epoch_mjd"} <= set(reference.colnames):
        return ra, dec
    t = Table({"ra": ra, "dec": dec, "pmra": np.asarray(reference["pmra"], float),
               "pmdec": np.asarray(reference["pmdec"], float)})  # fmt: skip
    t["ref_epoch"] = Time(np.asarray(reference["pm_epoch_mjd"], float), format="mjd").jyear
    moved = catalog_at_epoch(t, epoch)
    return np.asarray(moved["ra"], float), np.asarray(moved["dec"], float)
