"""The ``type: clickhouse`` destination's spec: a chdb data directory and a table in it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from agent_orchestrated_etl.connectors.base import DestinationSpecBase
from agent_orchestrated_etl.connectors.sql.common import TABLE_PREFIX, table_name


class ClickHouseDestinationSpec(DestinationSpecBase):
    type: Literal["clickhouse"]
    path: str = Field(description="chdb's data directory (created if missing); one directory per process.")
    table: str | None = Field(
        None,
        description="Target table, `name` (in database default) or `database.name`;"
        " created from the data's Arrow schema. Left out when the input reads several tables.",
    )
    table_prefix: str | None = Field(
        None, description="When the input reads several tables: each lands in prefix + its name (`raw_`, or `raw.`)."
    )

    @field_validator("table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        return None if value is None else table_name(value)

    @field_validator("table_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None and not TABLE_PREFIX.match(value):
            raise ValueError(f"table_prefix {value!r} must be letters, digits and _, with an optional `database.`")
        return value

    def rebased(self, base: Path) -> ClickHouseDestinationSpec:
        if not os.path.isabs(os.path.expanduser(self.path)):
            return self.model_copy(update={"path": str(base / self.path)})
        return self
