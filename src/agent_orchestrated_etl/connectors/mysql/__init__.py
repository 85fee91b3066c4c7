"""MySQL and MariaDB as a source (connectorx, streamed) and a destination (LOAD DATA LOCAL INFILE).

spec.py (the spec models), source.py, destination.py, client.py (how to talk to it),
types.py (how it stores each Arrow type); drivers are imported only where a connection is made.
"""

from agent_orchestrated_etl.connectors.mysql.destination import MySQLDestination
from agent_orchestrated_etl.connectors.mysql.source import MySQLSource
from agent_orchestrated_etl.connectors.mysql.spec import MySQLDestinationSpec, MySQLSourceSpec

__all__ = ["MySQLDestination", "MySQLDestinationSpec", "MySQLSource", "MySQLSourceSpec"]
