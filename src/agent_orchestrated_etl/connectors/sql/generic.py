"""Any database SQLAlchemy can reach (``type: sql``), through a server-side cursor.

For databases without a connector of their own. It is the slow road: the
driver hands over Python rows, converted to Arrow one batch at a time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from agent_orchestrated_etl.connectors.base import ConnectorSpec
from agent_orchestrated_etl.connectors.sql.common import SQLSourceFields, check_one_of
from agent_orchestrated_etl.connectors.sql.source import SQLSource


class GenericSQLSourceSpec(ConnectorSpec, SQLSourceFields):
    type: Literal["sql"]

    @model_validator(mode="after")
    def _one_of(self) -> GenericSQLSourceSpec:
        check_one_of(self)
        return self


class GenericSQLSource(SQLSource):
    spec_model = GenericSQLSourceSpec
    label = "sql"
