"""ClickHouse as a destination: the staged-destination protocol's ledger variant, published by one table swap.

ClickHouse runs one statement at a time (no multi-statement transactions), so
the publish cannot share a transaction with the loads ledger. Instead the
commit builds the target's next version in a table no reader uses (``…_pub``:
the target's parts, attached by hard link, plus the staged rows; for a merge,
less the staged keys), names the run in that table's comment, and swaps it
with the target in one ``EXCHANGE TABLES``, which is atomic in an Atomic (or
chdb's default) database. Readers see the old table or the new one, never a
part of a load. The ledger row written after the swap is the commit point;
a commit resumed after a crash between the two finds the run's name in the
target's comment (``landed``) and only writes the ledger row, so no row is published twice.
docs/clickhouse.md says what is atomic and what is not.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.connectors.base import DestinationCapabilities
from agent_orchestrated_etl.connectors.clickhouse.client import ChdbClient
from agent_orchestrated_etl.connectors.clickhouse.spec import ClickHouseDestinationSpec
from agent_orchestrated_etl.connectors.clickhouse.types import EARLIEST, LATEST, arrow_type
from agent_orchestrated_etl.connectors.sql import schema as schemas
from agent_orchestrated_etl.connectors.sql.protocol import LedgerDestination, Published, Session
from agent_orchestrated_etl.connectors.sql.types import ddl_type

#: The start of the comment that names the run whose publish made the table's current version.
MARKER = "agent-etl publish "


class ClickHouseDestination(LedgerDestination):
    """Loads into a MergeTree table of a chdb data directory (``path``), exactly once per run."""

    spec_model = ClickHouseDestinationSpec
    capabilities = DestinationCapabilities(transactional=False, write_modes=frozenset({"append", "replace", "merge"}))
    client: ChdbClient  # the protocol's property, narrowed to what make_client gives

    def make_client(self) -> ChdbClient:
        database, _, _ = self.target.rpartition(".")
        return ChdbClient(path=self.spec.path, schema=database or "default", where=self.where)

    def describe(self) -> str:
        return f"clickhouse {self.spec.path}:{self.target}"

    def unstorable(self, batch: pa.RecordBatch) -> list[str | None] | None:
        """Rows with a date or timestamp outside 1900-2299, which ClickHouse would clamp to its range."""
        reasons: list[str | None] = [None] * batch.num_rows
        for field, column in zip(batch.schema, batch.columns, strict=True):
            if not (pa.types.is_date(field.type) or pa.types.is_timestamp(field.type)):
                continue
            low, high = pa.scalar(EARLIEST, pa.date32()), pa.scalar(LATEST, pa.date32())
            days = pc.cast(column, pa.date32()) if pa.types.is_timestamp(field.type) else column
            outside = pc.or_(pc.less(days, low), pc.greater(days, high))
            for i in pc.indices_nonzero(pc.fill_null(outside, False)).to_pylist():
                reasons[i] = (
                    reasons[i] or f"column {field.name}: {column[i]} is outside ClickHouse's {EARLIEST} to {LATEST}"
                )
        return reasons if any(reasons) else None

    # -- the marker -----------------------------------------------------------------
    def landed(self, session: Session, run_id: str) -> Published | None:
        """The run's publish, if the target's comment names it: the swap landed, its ledger row did not."""
        marked = self.published(session)
        if marked is None or marked["run_id"] != run_id:
            return None
        return Published(int(marked["rows"]), state=marked["state"])

    def read_state(self, key: str) -> Any | None:
        # A crashed run whose swap landed has its state in the target's marker: finish its commit before answering,
        # so the next run does not read the window that run already published.
        with self.guard(), self.client.session() as session:
            marked = self.published(session)
        if marked is not None:
            self.committed(marked["run_id"])
        return super().read_state(key)

    def published(self, session: Session) -> dict[str, Any] | None:
        """The marker of the run that published the target's current version (run_id, rows, state), or None."""
        comment = self.client.comment(session, self.target_name) or ""
        if not comment.startswith(MARKER):
            return None
        return dict(json.loads(comment.removeprefix(MARKER)))

    def _marker(self, run_id: str, rows: int, state: dict[str, Any] | None) -> str:
        """The table comment naming the run that publishes this version, as a ClickHouse string literal."""
        text = MARKER + json.dumps({"run_id": run_id, "rows": rows, "state": state}, sort_keys=True)
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    # -- the publish --------------------------------------------------------------
    def publish_once(
        self, session: Session, run_id: str, staged: list[str], *, resumed: bool, state: dict[str, Any] | None
    ) -> Published:
        # A resumed commit whose swap landed never gets here: the protocol asks ``landed`` first.
        client, target = self.client, self.target_name
        pub = f"{self.own_prefix(run_id)}pub"
        rows = sum(self.count(session, name) for name in staged)
        marker = self._marker(run_id, rows, state)
        current = client.described(session, target)
        if not staged and (self.spec.write != "replace" or current is None):
            return Published(0)  # an empty input creates no target, and appending nothing changes none
        incoming = self._incoming(session, staged)
        self.drop(session, [pub])
        changes: list[str] = []
        if current is None:
            key = self.spec.primary_key if self.spec.write == "merge" else ()
            session.execute(client.create_table(pub, list(incoming.values()), key=key) + f" COMMENT {marker}")
            columns = list(incoming)
        else:
            columns, changes = self._next_version(session, pub, marker, current, incoming)
        if self.spec.write == "merge" and staged:
            self._merge(session, pub, staged, columns)
        else:
            for name in staged:
                present = [c for c in columns if c in self._staged_columns(session, name)]
                listed = ", ".join(client.quote(c) for c in present)
                session.execute(
                    f"INSERT INTO {client.qualified(pub)} ({listed}) SELECT {listed} FROM {client.qualified(name)}"
                )
        if current is None:
            session.execute(f"RENAME TABLE {client.qualified(pub)} TO {client.qualified(target)}")
        else:
            session.execute(f"EXCHANGE TABLES {client.qualified(pub)} AND {client.qualified(target)}")
            self.drop(session, [pub])  # the version before
        return Published(rows, changes)

    def _incoming(self, session: Session, staged: list[str]) -> dict[str, tuple[str, str]]:
        """Each staged column's (name, ClickHouse column definition), over every staged table, in order."""
        found: dict[str, tuple[str, str]] = {}
        for name in staged:
            for column, definition in self._staged_columns(session, name).items():
                found.setdefault(column, (column, definition))
        return found

    def _staged_columns(self, session: Session, table: str) -> dict[str, str]:
        described = self.client.described(session, table) or []
        return {n: f"{t} COMMENT '{c}'" if c else t for n, t, c in described if n != self.spec.hard_delete}

    def _next_version(
        self, session: Session, pub: str, marker: str, current: list[tuple[str, str, str]], incoming: dict[str, Any]
    ) -> tuple[list[str], list[str]]:
        """Create ``pub`` as the target's next version under the schema policy: the columns to fill, the changes."""
        client, target = self.client, self.target_name
        target_types = {n: arrow_type(t, c) for n, t, c in current}
        diff = schemas.diff(target_types, pa.schema([pa.field(n, _arrow(d)) for n, (_, d) in incoming.items()]))
        schemas.check(diff, mode=self.spec.schema_, where=self.where)
        session.execute(f"CREATE TABLE {client.qualified(pub)} AS {client.qualified(target)} COMMENT {marker}")
        if self.spec.write != "replace":
            # Hard links to the target's parts (of every partition, where a target of the user's has them):
            # the next version starts as the current one without copying a row.
            session.execute(f"ALTER TABLE {client.qualified(pub)} ATTACH PARTITION ALL FROM {client.qualified(target)}")
        columns = [n for n, _, _ in current if n in incoming]
        if self.spec.schema_ != "discard":
            for f in diff.added:
                session.execute(
                    f"ALTER TABLE {client.qualified(pub)} ADD COLUMN {client.quote(f.name)} {incoming[f.name][1]}"
                )
                columns.append(f.name)
        for name, _old, new in diff.widened:
            column = ddl_type(client.types, new, column=name, where=self.where)
            session.execute(
                f"ALTER TABLE {client.qualified(pub)} MODIFY COLUMN {client.quote(name)} {column}"
                " SETTINGS mutations_sync = 2"
            )
        summary = diff.summary(
            self.spec.schema_, lambda dtype: ddl_type(client.types, dtype, column="", where=self.where)
        )
        return columns, summary

    def _merge(self, session: Session, pub: str, staged: list[str], columns: list[str]) -> None:
        """Remove every staged key from ``pub``, then add each key's last staged row unless it is a hard delete."""
        client, marker = self.client, self.spec.hard_delete
        keys = ", ".join(client.quote(k) for k in self.spec.primary_key)
        definitions = {n: d for name in staged for n, d in self._staged_columns(session, name).items()}
        wanted = columns + ([marker] if marker else [])
        parts = []
        for i, name in enumerate(staged):
            have = set(self._staged_columns(session, name)) | ({marker} if marker else set())
            listed = [
                client.quote(c)
                if c in have
                else f"CAST(NULL AS {definitions[c].split(' COMMENT ')[0]}) AS {client.quote(c)}"
                for c in wanted
            ]
            parts.append(
                f"SELECT {', '.join(listed)}, {i} AS _aetl_task, _block_number AS _aetl_block,"
                f" _block_offset AS _aetl_offset FROM {client.qualified(name)}"
            )
        union = " UNION ALL ".join(parts)
        session.execute(f"DELETE FROM {client.qualified(pub)} WHERE ({keys}) IN (SELECT {keys} FROM ({union}))")
        # Within one run the last staged row of a key wins: by task, then by arrival within the task.
        latest = (
            f"SELECT * FROM ({union}) ORDER BY _aetl_task DESC, _aetl_block DESC, _aetl_offset DESC LIMIT 1 BY {keys}"
        )
        kept = f" WHERE NOT ifNull({client.quote(marker)}, false)" if marker else ""
        filled = ", ".join(client.quote(c) for c in columns)
        session.execute(f"INSERT INTO {client.qualified(pub)} ({filled}) SELECT {filled} FROM ({latest}){kept}")

    def publish_quarantine_once(self, session: Session, run_id: str, staged: list[str], *, resumed: bool) -> int:
        quarantine = f"{self.target_name}__quarantine"
        if resumed and self.client.columns(session, quarantine) is not None:
            # An interrupted insert may have added some of the run's rows: take them out and add them all.
            session.execute(f"DELETE FROM {self.client.qualified(quarantine)} WHERE run_id = ?", (run_id,))
        return self.publish_quarantine(session, staged)


def _arrow(definition: str) -> pa.DataType:
    """The Arrow type of a staged column definition (``type`` or ``type COMMENT '...'``)."""
    column_type, _, comment = definition.partition(" COMMENT ")
    return arrow_type(column_type, comment.strip("'")) or pa.null()
