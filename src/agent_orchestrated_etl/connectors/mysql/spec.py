"""The spec models of MySQL and MariaDB as a source and as a destination."""

from __future__ import annotations

from typing import Literal

from agent_orchestrated_etl.connectors.base import DestinationSpecBase
from agent_orchestrated_etl.connectors.sql.common import SQLDestinationFields, SQLURLSourceSpec


class MySQLSourceSpec(SQLURLSourceSpec):
    type: Literal["mysql"]


class MySQLDestinationSpec(DestinationSpecBase, SQLDestinationFields):
    type: Literal["mysql"]
