"""SQLite as a destination: ADBC's ingest into staging tables, published by the protocol (``sql/protocol.py``)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from agent_orchestrated_etl.connectors.base import DestinationCapabilities
from agent_orchestrated_etl.connectors.sql.destination import SQLDestination
from agent_orchestrated_etl.connectors.sqlite.client import SQLiteClient
from agent_orchestrated_etl.connectors.sqlite.spec import SQLiteDestinationSpec


class SQLiteDestination(SQLDestination):
    spec_model = SQLiteDestinationSpec
    client_class = SQLiteClient
    label = "sqlite"
    seq_expr = "rowid"
    true = "1"
    # One writer at a time: SQLite locks the whole file for a write.
    capabilities = DestinationCapabilities(
        transactional=True, write_modes=frozenset({"append", "replace", "merge"}), parallel_staging=False
    )

    def value_limit(self) -> tuple[int, str]:
        return min(super().value_limit(), (1_000_000_000, "SQLite's SQLITE_MAX_LENGTH"))

    def staged_columns(self, inspector: Any, name: str) -> dict[str, dict[str, Any]]:
        # The declared type names carry the Arrow types (TEXT_DECIMAL, TIMESTAMPTZ); reflection would fold them.
        columns = super().staged_columns(inspector, name)
        with self.client.session() as session:
            for _, column, declared, *_ in session.rows(f"PRAGMA table_info({self.q(name)})"):
                if column in columns:
                    columns[column]["ddl"] = declared
        return columns

    def target_type(self, column: dict[str, Any]) -> pa.DataType | None:
        # An INTEGER column holds 64-bit values: int64 data fits the column that int64 data created.
        if type(column["type"]).__name__.upper() == "INTEGER":
            return pa.int64()
        return super().target_type(column)

    def upsert_sql(self, target: str, columns: list[str], source: str) -> str:
        listed = ", ".join(self.q(c) for c in columns)
        keys = ", ".join(self.q(k) for k in self.spec.primary_key)
        updates = [c for c in columns if c not in self.spec.primary_key]
        action = (
            f"DO UPDATE SET {', '.join(f'{self.q(c)} = excluded.{self.q(c)}' for c in updates)}"
            if updates
            else "DO NOTHING"
        )
        # `WHERE true` lets SQLite's parser tell the upsert clause from a join constraint.
        return (
            f"INSERT INTO {target} ({listed}) SELECT {listed} FROM ({source}) WHERE true ON CONFLICT ({keys}) {action}"
        )

    def add_key_sql(self, target: dict[str, dict[str, Any]]) -> str:
        # SQLite cannot add a primary key to a table; ON CONFLICT matches a unique index as well.
        return f"CREATE UNIQUE INDEX {self.q(self._name + '__merge_key')} ON {self.q(self.spec.table)} ({', '.join(self.q(k) for k in self.spec.primary_key)})"

    def widen_sql(self, column: str, new_type: str) -> str:
        # SQLite keeps any value in any column: a wider value needs no DDL.
        return "SELECT 1"
