"""ClickHouse, in process through chdb (``pip install 'agent-orchestrated-etl[clickhouse]'``): a destination.

spec.py (the spec model), client.py (how to talk to chdb: one connection,
typed parameters, the Arrow insert, error codes), types.py (how it stores each
Arrow type), destination.py (the protocol's ledger variant, published by one
table swap). chdb itself is imported only where a connection is made.
"""

from agent_orchestrated_etl.connectors.clickhouse.destination import ClickHouseDestination
from agent_orchestrated_etl.connectors.clickhouse.spec import ClickHouseDestinationSpec

__all__ = ["ClickHouseDestination", "ClickHouseDestinationSpec"]
