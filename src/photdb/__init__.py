"""photdb: time-domain photometry on PostgreSQL.

Two halves share one database: a crowded-field variability pipeline (reference
catalogues with crowdsource, forced photometry, a Chebyshev Δmag(x, y)
correction, variable detections) and a small-telescope photometry archive
(FITS headers, objects, light curves, pgSphere cone searches).

The functions below return astropy objects and connect themselves (read-only,
from the environment, ``.env`` or the embedded cluster) unless given ``conn=``.
They are imported on first use, so ``import photdb`` stays light:

* :func:`fetch_lightcurve` -- a light curve (Table with a ``time`` Time column, UTC;
  object name, position and units in its meta) of an object, a position or a
  pipeline reference source;
* :func:`cone` -- objects or pipeline measurements around a position (``coord``
  SkyCoord column);
* :func:`variable_candidates`, :func:`repeat_counts` -- the pipeline's candidates;
  :func:`reference_outliers` -- stars whose reference, not the star, is off;
* :func:`images` -- exposures and images with their audit columns and status;
* :func:`export_lightcurve` -- AAVSO, CSV, ECSV, VOTable or Parquet bytes;
* :func:`plot_lightcurve` -- the light-curve plot (PNG, SVG, PDF).

>>> import photdb
>>> lc = photdb.fetch_lightcurve("SS Cyg")                          # doctest: +SKIP
>>> photdb.plot_lightcurve(lc, "ss_cyg.png")                  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "fetch_lightcurve": "photdb.api",
    "cone": "photdb.api",
    "variable_candidates": "photdb.api",
    "repeat_counts": "photdb.api",
    "reference_outliers": "photdb.api",
    "images": "photdb.api",
    "load_differential_photometry": "photdb.api",
    "export_lightcurve": "photdb.export",
    "plot_lightcurve": "photdb.plot",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'photdb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
