"""SQLite as a source and a destination, through ADBC so rows move as Arrow batches.

spec.py (the spec models), source.py, destination.py, client.py (how to talk to it),
types.py (how it stores each Arrow type); drivers are imported only where a connection is made.
"""

from agent_orchestrated_etl.connectors.sqlite.destination import SQLiteDestination
from agent_orchestrated_etl.connectors.sqlite.source import SQLiteSource
from agent_orchestrated_etl.connectors.sqlite.spec import SQLiteDestinationSpec, SQLiteSourceSpec

__all__ = ["SQLiteDestination", "SQLiteDestinationSpec", "SQLiteSource", "SQLiteSourceSpec"]
