"""Database layer: embedded server, connections, migrations, bulk loads.

Modules, lowest first (each imports only those before it): ``files`` (the
home's lock, private files and credentials), ``server`` (the embedded
cluster's processes), ``session`` (one guarded session for
one role), ``migrate`` (schema and roles), ``embedded`` (creating and starting
the embedded cluster), ``connection`` (``connect``, ``resolve``,
``database_url``). ``copy`` is independent. Nothing in the algorithm modules
imports this package.
"""

from photdb.db.connection import connect, database_url, resolve
from photdb.db.migrate import init_database

__all__ = ["connect", "database_url", "init_database", "resolve"]
