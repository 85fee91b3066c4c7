"""PostgreSQL as a destination: ADBC's bulk ingest (binary COPY FROM STDIN) into staging tables, published
with MERGE, TRUNCATE and INSERT inside one transaction by the protocol (``sql/protocol.py``)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.connectors.postgres.client import PostgresClient
from agent_orchestrated_etl.connectors.postgres.spec import PostgresDestinationSpec
from agent_orchestrated_etl.connectors.sql.destination import SQLDestination


class PostgresDestination(SQLDestination):
    spec_model = PostgresDestinationSpec
    client_class = PostgresClient
    label = "postgres"
    seq_ddl = "BIGINT GENERATED ALWAYS AS IDENTITY"

    def unstorable(self, batch: pa.RecordBatch) -> list[str | None] | None:
        # PostgreSQL text (and json) cannot hold a NUL byte: COPY would refuse the whole batch.
        reasons: list[str | None] | None = None
        for column, field in zip(batch.columns, batch.schema, strict=True):
            values = column.storage if isinstance(column, pa.ExtensionArray) else column
            if pa.types.is_dictionary(values.type):
                values = values.dictionary_decode()
            if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
                continue
            nul = pc.fill_null(pc.match_substring(values, "\x00"), False)
            if pc.any(nul).as_py():
                reasons = reasons or [None] * batch.num_rows
                for i in pc.indices_nonzero(nul).to_pylist():
                    reasons[i] = (
                        reasons[i]
                        or f"column {field.name} holds a NUL byte (\\x00), which PostgreSQL text cannot store"
                    )
        return reasons

    def clear_sql(self, target: str) -> str:
        return f"TRUNCATE TABLE {target}"

    def value_limit(self) -> tuple[int, str]:
        return min(super().value_limit(), ((1 << 30) - 1, "PostgreSQL's 1 GB field size"))

    def upsert_sql(self, target: str, columns: list[str], source: str) -> str:
        on = " AND ".join(f"t.{self.q(k)} = s.{self.q(k)}" for k in self.spec.primary_key)
        updates = [c for c in columns if c not in self.spec.primary_key]
        matched = (
            f"UPDATE SET {', '.join(f'{self.q(c)} = s.{self.q(c)}' for c in updates)}" if updates else "DO NOTHING"
        )
        listed = ", ".join(self.q(c) for c in columns)
        values = ", ".join(f"s.{self.q(c)}" for c in columns)
        return f"MERGE INTO {target} AS t USING ({source}) AS s ON {on} WHEN MATCHED THEN {matched} WHEN NOT MATCHED THEN INSERT ({listed}) VALUES ({values})"
