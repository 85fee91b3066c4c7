"""The ``type: clickhouse`` destination's spec: a chdb data directory and a table in it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from agent_orchestrated_etl.connectors.base import DestinationSpecBase
from agent_orchestrated_etl.connectors.sql.common import TargetTableFields


class ClickHouseDestinationSpec(DestinationSpecBase, TargetTableFields):
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

    def rebased(self, base: Path) -> ClickHouseDestinationSpec:
        if not os.path.isabs(os.path.expanduser(self.path)):
            return self.model_copy(update={"path": str(base / self.path)})
        return self
