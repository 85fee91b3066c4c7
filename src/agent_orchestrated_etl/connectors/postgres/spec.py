"""The spec models of PostgreSQL as a source and as a destination."""

from __future__ import annotations

from typing import Literal

from agent_orchestrated_etl.connectors.base import DestinationSpecBase
from agent_orchestrated_etl.connectors.sql.common import SQLDestinationFields, SQLURLSourceSpec


class PostgresSourceSpec(SQLURLSourceSpec):
    type: Literal["postgres"]


class PostgresDestinationSpec(DestinationSpecBase, SQLDestinationFields):
    type: Literal["postgres"]
