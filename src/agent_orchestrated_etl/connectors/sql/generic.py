"""Any database SQLAlchemy can reach (``type: sql``), through a server-side cursor.

For databases without a connector of their own. It is the slow road: the
driver hands over Python rows, converted to Arrow one batch at a time.
"""

from __future__ import annotations

from typing import Literal

from agent_orchestrated_etl.connectors.sql.common import SQLURLSourceSpec
from agent_orchestrated_etl.connectors.sql.source import SQLSource


class GenericSQLSourceSpec(SQLURLSourceSpec):
    type: Literal["sql"]


class GenericSQLSource(SQLSource[GenericSQLSourceSpec]):
    spec_model = GenericSQLSourceSpec
    label = "sql"
