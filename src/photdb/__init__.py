"""photdb: time-domain photometry on PostgreSQL.

Two halves share one database: a crowded-field variability pipeline (reference
catalogues with crowdsource, forced photometry, a Chebyshev Δmag(x, y)
correction, variable detections) and a small-telescope photometry archive
(FITS headers, objects, light curves, pgSphere cone searches).
"""

__version__ = "0.1.0"
