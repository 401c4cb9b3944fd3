"""Normalise FITS header strings: FILTER to a canonical band, IMAGETYP to a mode.

The maps live in the editable ``filters.toml`` shipped with this package; a user
file with the same layout adds to and overrides them (:func:`load_maps`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = [
    "HeaderMaps",
    "band_family",
    "header_band",
    "load_maps",
    "normalise_band",
    "normalise_mode",
]


@dataclass(frozen=True)
class HeaderMaps:
    """Value maps used to normalise header strings (see ``filters.toml``).

    Attributes
    ----------
    filters : Mapping[str, str]
        FILTER value -> canonical band.
    instrument_filters : Mapping[str, Mapping[str, str]]
        Lower-cased INSTRUME -> its own FILTER map, consulted first.
    modes : Mapping[str, str]
        Lower-cased IMAGETYP/OBSTYPE value -> mode ('light', 'dark', ...).
    """

    filters: Mapping[str, str] = field(default_factory=dict)
    instrument_filters: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    modes: Mapping[str, str] = field(default_factory=dict)


def load_maps(path: str | Path | None = None) -> HeaderMaps:
    """Load the shipped ``filters.toml``, updated with a user file if given.

    Parameters
    ----------
    path : str or Path, optional
        A TOML file with ``[filters]``, ``[instrument_filters.<INSTRUME>]`` and
        ``[modes]`` tables; its entries override the shipped ones.

    Examples
    --------
    >>> load_maps().filters["Sloan r"]
    'r_sdss'
    """
    text = resources.files("photdb").joinpath("filters.toml").read_text("utf-8")
    data = tomllib.loads(text)
    filters = dict(data.get("filters", {}))
    inst = {k.lower(): dict(v) for k, v in data.get("instrument_filters", {}).items()}
    modes = {k.lower(): v for k, v in data.get("modes", {}).items()}
    if path is not None:
        with open(path, "rb") as fh:
            user = tomllib.load(fh)
        filters.update(user.get("filters", {}))
        for k, v in user.get("instrument_filters", {}).items():
            inst.setdefault(k.lower(), {}).update(v)
        modes.update({k.lower(): v for k, v in user.get("modes", {}).items()})
    return HeaderMaps(filters=filters, instrument_filters=inst, modes=modes)


_DEFAULT_MAPS: HeaderMaps | None = None


def _default_maps() -> HeaderMaps:
    global _DEFAULT_MAPS
    if _DEFAULT_MAPS is None:
        _DEFAULT_MAPS = load_maps()
    return _DEFAULT_MAPS


def _lookup(table: Mapping[str, str], key: str) -> str | None:
    if key in table:
        return table[key]
    folded = [v for k, v in table.items() if k.casefold() == key.casefold()]
    return folded[0] if len(set(folded)) == 1 else None


def normalise_band(
    value: str | None, *, instrument: str | None = None, maps: HeaderMaps | None = None
) -> str | None:
    """Map a FILTER value to the canonical band, or None when unknown/empty.

    Examples
    --------
    >>> normalise_band("r DECam SDSS c0002 6415.0 1480.0", instrument="DECam")
    'r_decam'
    >>> normalise_band("Rc"), normalise_band("r'")
    ('R', 'r_sdss')
    """
    maps = maps or _default_maps()
    if value is None or not str(value).strip():
        return None
    text = " ".join(str(value).split())
    tables = [maps.filters]
    if instrument and instrument.strip().lower() in maps.instrument_filters:
        tables.insert(0, maps.instrument_filters[instrument.strip().lower()])
    for key in (text, text.split()[0]):
        for table in tables:
            hit = _lookup(table, key)
            if hit is not None:
                return hit
    return None


#: Header cards that name the filter, in the order they are read.
FILTER_CARDS = ("BAND", "FILTER", "FILTER1", "FILTNAME")


def header_band(header: Mapping[str, object], *, maps: HeaderMaps | None = None) -> str | None:
    """The canonical band of an image header (None when it names no known filter).

    The first of :data:`FILTER_CARDS` that holds text, through :func:`normalise_band`
    with the header's INSTRUME (DECam's ``BAND = 'r'`` is ``r_decam``).

    >>> header_band({"BAND": "r", "INSTRUME": "DECam"}), header_band({"FILTER": "Rc"})
    ('r_decam', 'R')
    """
    raw = next(
        (str(header[k]) for k in FILTER_CARDS if isinstance(header.get(k), str) and header[k]),
        None,
    )
    instrument = header.get("INSTRUME")
    return normalise_band(
        raw, instrument=instrument if isinstance(instrument, str) else None, maps=maps
    )


def band_family(band: str | None) -> str | None:
    """The letters a canonical band goes by in catalogue columns and zero-point tables.

    ``r_decam`` and ``r_sdss`` are ``r``; Johnson-Cousins ``R`` stays ``R``.

    >>> band_family("r_decam"), band_family("VR_decam"), band_family("R"), band_family(None)
    ('r', 'VR', 'R', None)
    """
    if not band:
        return None
    return band.split("_", 1)[0]


def normalise_mode(value: str | None, *, maps: HeaderMaps | None = None) -> str | None:
    """Map IMAGETYP/OBSTYPE/FRAMETYP to 'light', 'dark', 'flat', 'bias', 'darkflat'.

    Unknown values are lower-cased and kept whole (never cut).

    >>> normalise_mode("Flat Field"), normalise_mode("zero"), normalise_mode("DARKFLAT")
    ('flat', 'bias', 'darkflat')
    >>> normalise_mode("Tricolor Image")
    'tricolor image'
    """
    maps = maps or _default_maps()
    if value is None or not str(value).strip():
        return None
    text = " ".join(str(value).split()).lower()
    return maps.modes.get(text, maps.modes.get(text.replace("_", " "), text))
