"""The small-telescope photometry archive: FITS headers, objects and light curves.

Modules
-------
bands        FILTER / IMAGETYP normalisation (the editable ``filters.toml``)
headers      a FITS header -> an ``observations`` row and its JSON (pure)
fitsfiles    find FITS files; read, verify and parse one file (no database)
ingest       files -> galexposures / observations / galimages / metadata_obs_json
catalogues   object lists (CSV, ECSV, VOTable, FITS) -> ``objects``
lightcurves  light-curve tables -> ``lightcurves`` / ``metadata_lc_json``
diffphot     ensemble differential photometry (pure)
"""
