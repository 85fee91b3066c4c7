"""ClickHouse, in process through chdb (``pip install 'agent-orchestrated-etl[clickhouse]'``): a destination."""

from agent_orchestrated_etl.connectors.clickhouse.destination import ClickHouseDestination

__all__ = ["ClickHouseDestination"]
