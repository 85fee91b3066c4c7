"""PostgreSQL as a source and a destination, through ADBC's binary COPY in both directions.

spec.py (the spec models), source.py, destination.py, client.py (how to talk to it),
types.py (how it stores each Arrow type); drivers are imported only where a connection is made.
"""

from agent_orchestrated_etl.connectors.postgres.client import libpq_url
from agent_orchestrated_etl.connectors.postgres.destination import PostgresDestination
from agent_orchestrated_etl.connectors.postgres.source import PostgresSource
from agent_orchestrated_etl.connectors.postgres.spec import PostgresDestinationSpec, PostgresSourceSpec

__all__ = ["PostgresDestination", "PostgresDestinationSpec", "PostgresSource", "PostgresSourceSpec", "libpq_url"]
