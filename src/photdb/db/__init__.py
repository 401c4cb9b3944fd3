"""Database layer: embedded server, connections, migrations, bulk loads and queries.

Nothing in the algorithm modules imports this package.
"""

from photdb.db.connection import connect, database_url, resolve
from photdb.db.migrate import init_database

__all__ = ["connect", "database_url", "init_database", "resolve"]
