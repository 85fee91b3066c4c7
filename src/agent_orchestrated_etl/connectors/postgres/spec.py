"""The spec models of PostgreSQL as a source and as a destination."""

from __future__ import annotations

from typing import Literal

from agent_orchestrated_etl.connectors.base import ConnectorSpec, DestinationSpecBase
from agent_orchestrated_etl.connectors.sql.common import SQLDestinationFields, SQLSourceFields


class PostgresSourceSpec(ConnectorSpec, SQLSourceFields):
    type: Literal["postgres"]


class PostgresDestinationSpec(DestinationSpecBase, SQLDestinationFields):
    type: Literal["postgres"]
