"""DuckDB: a file as a source and as a destination.

spec.py (the spec models), client.py (how to talk to a file: the shared
connection, the Arrow appender, memory settings), types.py (how it stores each
Arrow type), destination.py (the staged destination, and pushdown), source.py.
duckdb itself is imported only where a connection is made.
"""

from agent_orchestrated_etl.connectors.duckdb.client import postgres_extension
from agent_orchestrated_etl.connectors.duckdb.destination import DuckDBDestination
from agent_orchestrated_etl.connectors.duckdb.source import DuckDBSource
from agent_orchestrated_etl.connectors.duckdb.spec import DuckDBDestinationSpec, DuckDBSourceSpec

__all__ = ["DuckDBDestination", "DuckDBDestinationSpec", "DuckDBSource", "DuckDBSourceSpec", "postgres_extension"]
