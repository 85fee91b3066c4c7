"""MySQL and MariaDB as a destination: LOAD DATA into staging tables, published by the protocol (``sql/protocol.py``)
with their DDL just before the transaction, which it would commit."""

from __future__ import annotations

from typing import Any

from agent_orchestrated_etl.connectors.mysql.client import MySQLClient
from agent_orchestrated_etl.connectors.mysql.spec import MySQLDestinationSpec
from agent_orchestrated_etl.connectors.sql.destination import SQLDestination


class MySQLDestination(SQLDestination):
    spec_model = MySQLDestinationSpec
    client_class = MySQLClient
    label = "mysql"
    seq_ddl = "BIGINT AUTO_INCREMENT PRIMARY KEY"

    def value_limit(self) -> tuple[int, str]:
        # LOAD DATA takes bigger values, but a statement or a row sent to a client is bounded by max_allowed_packet.
        if getattr(self, "_packet", None) is None:
            with self.guard(), self.client.session() as session:
                self._packet = int(session.scalar("SELECT @@max_allowed_packet"))
        return min(super().value_limit(), (self._packet, "the server's max_allowed_packet"))

    def widen_sql(self, column: str, new_type: str) -> str:
        return f"ALTER TABLE {self.q(self.spec.table)} MODIFY COLUMN {self.q(column)} {new_type}"

    def upsert_sql(self, target: str, columns: list[str], source: str) -> str:
        listed = ", ".join(self.q(c) for c in columns)
        updates = [c for c in columns if c not in self.spec.primary_key] or list(self.spec.primary_key)
        assignments = ", ".join(f"{self.q(c)} = VALUES({self.q(c)})" for c in updates)
        return (
            f"INSERT INTO {target} ({listed}) SELECT {listed} FROM ({source}) s ON DUPLICATE KEY UPDATE {assignments}"
        )

    def null_as(self, sql_type: str) -> str:
        return "NULL"  # MySQL's CAST knows only a few type names

    def add_key_sql(self, target: dict[str, dict[str, Any]]) -> str:
        # The key columns take the types and NOT NULL a created merge target gives them (no TEXT key without a length).
        columns = [
            f"MODIFY COLUMN {self.q(k)} {self.key_type(self._compiled(target[k]))} NOT NULL"
            for k in self.spec.primary_key
            if k in target
        ]
        keys = ", ".join(self.q(k) for k in self.spec.primary_key)
        return f"ALTER TABLE {self.q(self.spec.table)} {', '.join([*columns, f'ADD PRIMARY KEY ({keys})'])}"

    def key_type(self, sql_type: str) -> str:
        # TEXT and BLOB columns cannot be keys without a prefix length.
        upper = sql_type.upper()
        return "VARCHAR(255)" if "TEXT" in upper else "VARBINARY(255)" if "BLOB" in upper else sql_type
