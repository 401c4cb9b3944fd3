"""photdb's web service: human pages and Virtual Observatory interfaces (``photdb serve``).

The top layer beside :mod:`photdb.cli`: it may import the library (:mod:`photdb.api`,
the survey and archive readers, the database layer), and nothing imports it but the CLI.
See :mod:`photdb.web.app`.
"""
