"""The run workspace: the one sandboxed DuckDB engine of a run, where transforms execute.

Transforms run in it as queries over Arrow readers of a task's source batches;
the inputs of multi-input transforms are staged in its file, so a resumed run
finds them again. It spills to ``<run dir>/spill`` past its memory limit (a share
of AGENT_ETL_MEMORY_LIMIT), so a run's memory stays bounded however big the data.

The connection is sandboxed before any user SQL runs: no file or network access
(read_csv, COPY ... TO, ATTACH, INSTALL/LOAD all fail), and the configuration is
locked so user SQL cannot lift that.

With AGENT_ETL_ENCRYPTION_KEY set, the file and its spills are encrypted (AES-GCM, DuckDB's own
format): the file is attached with a key derived from it (encryption.duckdb_key) and
``temp_file_encryption`` is on. DuckDB encrypts only with OpenSSL, which its httpfs extension
brings, so that extension is loaded from its PyPI wheel before access is closed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from agent_orchestrated_etl import encryption
from agent_orchestrated_etl.exceptions import DataError
from agent_orchestrated_etl.transform.sql import ident

#: The catalog name of an encrypted workspace file, attached to an in-memory engine.
_CATALOG = "ws"

#: The workspace gets this share of the agent's memory budget; destinations and batches in flight use the rest.
DUCKDB_MEMORY_SHARE = 0.25


def duckdb_memory_limit(memory_limit_bytes: int) -> str:
    return f"{max(64, int(memory_limit_bytes * DUCKDB_MEMORY_SHARE) // (1 << 20))}MB"


def sandboxed_connection(
    database: str = ":memory:",
    *,
    memory_limit_bytes: int,
    spill_dir: Path | None = None,
    threads: int | None = None,
    encryption_key: bytes | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that cannot touch files (but its own), the network or extensions.

    With ``encryption_key``, ``database`` is attached encrypted as catalog ``ws`` (each new
    cursor must ``USE ws``) and spills are encrypted too."""
    config: dict[str, Any] = {
        "memory_limit": duckdb_memory_limit(memory_limit_bytes),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    if spill_dir is not None:
        spill_dir.mkdir(parents=True, exist_ok=True)
        config["temp_directory"] = str(spill_dir)
    if threads is not None:
        config["threads"] = threads
    if encryption_key is None:
        conn = duckdb.connect(database, config=config)
    else:
        conn = duckdb.connect(":memory:", config=config)
        _load_openssl(conn)
        conn.execute("SET temp_file_encryption = true")
        # ATTACH takes no parameters; the path is quoted, the key is hex.
        conn.execute(f"ATTACH {_literal(database)} AS {_CATALOG} (ENCRYPTION_KEY '{encryption_key.hex()}')")
        conn.execute(f"USE {_CATALOG}")
    # Spilling to temp_directory stays possible: it is set before access is closed.
    conn.execute("SET enable_external_access = false")
    conn.execute("SET lock_configuration = true")
    return conn


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _load_openssl(conn: duckdb.DuckDBPyConnection) -> None:
    """LOAD httpfs from the duckdb-extension-httpfs wheel's file: with autoinstall off nothing downloads,
    and duckdb_extensions' import_extension would INSTALL a copy into ~/.duckdb."""
    import duckdb_extension_httpfs

    version = duckdb.__version__  # the wheel's folder is "v" + the version, e.g. v1.5.5
    ext = Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{version}" / "httpfs.duckdb_extension"
    conn.execute(f"LOAD {_literal(str(ext))}")


def _private_directory(directory: Path) -> None:
    """Make ``directory`` and each missing parent 0700: a workspace holds the run's data, and with the
    store elsewhere (PostgreSQL) it may be what creates AGENT_ETL_HOME. ``mkdir(parents=True)`` would
    give the parents the umask's mode."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for each in reversed(missing):
        each.mkdir(mode=0o700, exist_ok=True)


class Workspace:
    def __init__(self, directory: Path, *, memory_limit_bytes: int) -> None:
        _private_directory(directory)
        self.path = directory / "workspace.duckdb"
        self._encrypted = encryption.duckdb_key()
        try:
            self._conn = sandboxed_connection(
                str(self.path),
                memory_limit_bytes=memory_limit_bytes,
                spill_dir=directory / "spill",
                encryption_key=self._encrypted,
            )
        except (duckdb.InvalidInputException, duckdb.CatalogException) as exc:
            if "encrypt" not in str(exc):
                raise
            raise DataError(
                "the run workspace was encrypted with another AGENT_ETL_ENCRYPTION_KEY than the one set now",
                where=str(self.path),
                hint="resume with the AGENT_ETL_ENCRYPTION_KEY the run started with, or start a new run",
            ) from None
        self._local = threading.local()
        self._lock = threading.Lock()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the workspace, for one query that streams while others run."""
        with self._lock:
            cursor = self._conn.cursor()
        if self._encrypted is not None:
            cursor.execute(f"USE {_CATALOG}")  # a new cursor starts in the (empty) in-memory catalog
        return cursor

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self.cursor()
        return cursor

    def append(self, table: str, batch: pa.RecordBatch) -> None:
        cursor = self._cursor()
        cursor.register("_agent_etl_batch", batch)
        try:
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {ident(table)} AS SELECT * FROM _agent_etl_batch LIMIT 0")
            cursor.execute(f"INSERT INTO {ident(table)} BY NAME SELECT * FROM _agent_etl_batch")
        finally:
            cursor.unregister("_agent_etl_batch")

    def tables(self) -> set[str]:
        return {r[0] for r in self._cursor().execute("SELECT table_name FROM duckdb_tables()").fetchall()}

    def union_partitions(self, view: str, parts: list[str]) -> list[str]:
        """Expose a source staged in several partitions as one view; returns the staged parts found."""
        present = [p for p in parts if p in self.tables()]
        if present:
            union = " UNION ALL BY NAME ".join(f"SELECT * FROM {ident(p)}" for p in present)
            self._cursor().execute(f"CREATE OR REPLACE VIEW {ident(view)} AS {union}")
        return present

    def schema(self, relation: str) -> pa.Schema:
        return self._cursor().execute(f"SELECT * FROM {ident(relation)} LIMIT 0").to_arrow_table().schema

    def stream_if_exists(self, table: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        if table in self.tables():
            try:
                yield from self._cursor().execute(f"SELECT * FROM {ident(table)}").to_arrow_reader(batch_rows)
            except duckdb.Error as exc:
                raise DataError(str(exc).splitlines()[0], where=f"workspace table {table}") from exc

    def drop(self, *tables: str) -> None:
        for table in tables:
            self._cursor().execute(f"DROP TABLE IF EXISTS {ident(table)}")

    def drop_views(self, *views: str) -> None:
        for view in views:
            self._cursor().execute(f"DROP VIEW IF EXISTS {ident(view)}")

    def close(self) -> None:
        self._conn.close()
