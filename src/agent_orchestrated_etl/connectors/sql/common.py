"""Spec fields, URLs, engines and identifiers that every SQL connector shares.

A URL may hold a password (usually through ``${env:...}``); it is only ever
shown through ``redact``, and driver messages pass through ``scrub`` before
they reach an exception, a log or a run record.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent_orchestrated_etl.connectors.base import ConnectorSpec
from agent_orchestrated_etl.connectors.incremental import IncrementalSpec
from agent_orchestrated_etl.connectors.sql.protocol import STAGING_PREFIX
from agent_orchestrated_etl.exceptions import (
    AgentETLError,
    AuthError,
    ConfigurationError,
    ConnectionFailedError,
    DataError,
    MissingDependencyError,
    ResourceExhaustedError,
    SourceNotFoundError,
    TransactionConflictError,
)

# schema.table or table, each part a plain identifier; anything else belongs in `query:`.
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
TABLE_PREFIX = re.compile(r"^([A-Za-z_][A-Za-z0-9_$]*\.)?[A-Za-z0-9_$]*$")
PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")

# SQLAlchemy's driver for each URL scheme a user is likely to write.
_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "sqlite": "sqlite",
}
_EXTRAS = {"postgresql": ("psycopg", "postgres"), "mysql": ("pymysql", "mysql")}


def table_name(value: str) -> str:
    if not TABLE_NAME.match(value) or value.rsplit(".", 1)[-1].startswith(STAGING_PREFIX):
        raise ValueError(
            f"table {value!r} must be `name` or `schema.name` of letters, digits and _; use query: for anything else"
        )
    return value


class PartitionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str = Field(description="A numeric, date or timestamp column to split on; bounds are found by the source.")
    parts: int = Field(ge=1, le=1024, description="How many ranges (and parallel, separately checkpointed tasks).")


class TableOptions(BaseModel):
    """What one table of a multi-table source reads differently from the source's defaults."""

    model_config = ConfigDict(extra="forbid")

    partition: PartitionSpec | None = Field(None, description="Split this table's read into ranges of one column.")
    incremental: IncrementalSpec | None = Field(
        None, description="Read only this table's rows past its committed high-water mark."
    )


class TablesFields(BaseModel):
    """``tables:`` and ``schema:``: one source that reads several tables, each into a destination table of its own name.

    The run expands such a source into one ordinary source per table
    (``planning/expansion.py``); the connectors themselves only ever read one table.
    """

    model_config = ConfigDict(populate_by_name=True)

    tables: list[str] | None = Field(
        None,
        min_length=1,
        description="Read these tables (`name` or `schema.name`), each into a destination table of its own name.",
    )
    schema_: str | None = Field(
        None, alias="schema", description="Or read every base table of this schema (views are left out)."
    )
    exclude: list[str] = Field(default_factory=list, description="With schema: tables not to read.")
    table_options: dict[str, TableOptions] = Field(
        default_factory=dict,
        description="Per table (by name, without schema): its partition and incremental, replacing the source's (`{}` reads it whole).",
    )

    @field_validator("tables")
    @classmethod
    def _tables(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        names = [table_name(t) for t in value]
        bare = [t.rsplit(".", 1)[-1] for t in names]
        if clash := sorted({t for t in bare if bare.count(t) > 1}):
            raise ValueError(
                f"two tables would land in one destination table {clash[0]!r}; read one of them through a source of its own"
            )
        return names

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: str | None) -> str | None:
        if value is not None and not PLAIN_NAME.match(value):
            raise ValueError(f"schema {value!r} must be a plain name of letters, digits and _")
        return value

    @field_validator("exclude")
    @classmethod
    def _exclude(cls, value: list[str]) -> list[str]:
        for name in value:
            if not PLAIN_NAME.match(name):
                raise ValueError(f"exclude: {name!r} must be a table name of the schema, without the schema")
        return value

    @property
    def reads_tables(self) -> bool:
        """True when the source reads several tables (``tables:`` or ``schema:``)."""
        return self.tables is not None or self.schema_ is not None

    @model_validator(mode="after")
    def _table_options(self) -> TablesFields:
        if self.exclude and self.schema_ is None:
            raise ValueError("exclude only applies with schema:; list the tables you want under tables: instead")
        if self.table_options and not self.reads_tables:
            raise ValueError(
                "table_options only applies with tables: or schema:; put partition and incremental on the source itself"
            )
        if self.tables is not None:
            listed = {t.rsplit(".", 1)[-1] for t in self.tables}
            if unknown := sorted(set(self.table_options) - listed):
                raise ValueError(f"table_options names {unknown[0]!r}, which is not under tables: {sorted(listed)}")
        return self


class SQLSourceSpec(ConnectorSpec, TablesFields):
    """The fields of every SQL source spec: what to read. Each connector's spec adds where the database is."""

    table: str | None = Field(None, description="Read this table (`name` or `schema.name`).")
    query: str | None = Field(None, description="Or read the result of this query.")
    partition: PartitionSpec | None = Field(
        None,
        description="Split the read into ranges of one column, read in parallel (with tables: or schema:, of every table).",
    )
    incremental: IncrementalSpec | None = Field(
        None, description="Read only rows past the committed high-water mark (with tables: or schema:, of every table)."
    )

    @property
    @abstractmethod
    def connection_url(self) -> str:
        """The URL that names the database: in connections, in messages (redacted) and for error mapping."""

    @field_validator("table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        return None if value is None else table_name(value)

    @model_validator(mode="after")
    def _table_or_query(self) -> SQLSourceSpec:
        given = [
            key
            for key, value in (
                ("table", self.table),
                ("query", self.query),
                ("tables", self.tables),
                ("schema", self.schema_),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of table, query, tables or schema{f' (not {given[0]} and {given[1]})' if given else ''}"
            )
        return self


class SQLURLSourceSpec(SQLSourceSpec):
    """A SQL source spec whose database is named by a SQLAlchemy-style ``url:``."""

    url: str = Field(
        description="SQLAlchemy-style URL; put the password in ${env:NAME}. TLS options (sslmode=...) pass through."
    )

    @property
    def connection_url(self) -> str:
        return self.url


class TargetTableFields(BaseModel):
    """``table:`` or ``table_prefix:``, where a destination of a database writes (mixed into each spec model)."""

    table: str | None = Field(
        None,
        description="Target table, `name` or `schema.name`; created from the data's Arrow schema. Left out when the input reads several tables.",
    )
    table_prefix: str | None = Field(
        None,
        description="When the input reads several tables: each lands in prefix + its name (`raw_`, or `raw.` for schema raw).",
    )

    @field_validator("table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        return None if value is None else table_name(value)

    @field_validator("table_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None and not TABLE_PREFIX.match(value):
            raise ValueError(f"table_prefix {value!r} must be letters, digits and _, optionally after `schema.`")
        return value


class SQLDestinationFields(TargetTableFields):
    """The fields of every SQL destination spec reached by a URL."""

    url: str = Field(
        description="SQLAlchemy-style URL; put the password in ${env:NAME}. TLS options (sslmode=...) pass through."
    )


def scheme(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for messages and records."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


def scrub(message: str, url: str) -> str:
    """A driver's message without the URL's password, should the driver have echoed it."""
    match = re.search(r"//[^:/@]+:([^@]*)@", url)
    if match and match.group(1):
        message = message.replace(match.group(1), "***")
    return message.replace(url, redact(url))


def sqlalchemy_url(url: str) -> str:
    head, sep, rest = url.partition("://")
    if not sep:
        raise ConfigurationError(
            f"not a database URL: {redact(url)}", hint="write it as postgresql://user@host:5432/db"
        )
    return f"{_DRIVERS.get(head.lower(), head)}://{rest}"


@lru_cache(maxsize=32)
def engine(url: str) -> Any:
    """One pooled SQLAlchemy engine per URL for the process; sizes and timeouts from the settings."""
    import sqlalchemy as sa

    from agent_orchestrated_etl.config import Settings

    kind = scheme(url)
    if kind in ("postgres", "postgresql", "mysql", "mariadb"):
        module, extra = _EXTRAS["postgresql" if kind.startswith("postgres") else "mysql"]
        try:
            __import__(module)
        except ImportError:
            raise MissingDependencyError(f"a {kind} connection", extra) from None
    settings = Settings()
    options: dict[str, Any] = {"pool_pre_ping": True}
    connect_args: dict[str, Any] = {}
    if kind != "sqlite":
        options |= {"pool_size": settings.connection_pool_size, "pool_timeout": settings.connection_timeout}
        connect_args["connect_timeout"] = int(settings.connection_timeout)
    if kind in ("mysql", "mariadb"):
        connect_args["local_infile"] = True  # the bulk path: LOAD DATA LOCAL INFILE of our own temp files
    try:
        return sa.create_engine(sqlalchemy_url(url), connect_args=connect_args, hide_parameters=True, **options)
    except sa.exc.ArgumentError as exc:
        raise ConfigurationError(scrub(str(exc), url), where=redact(url), hint="check the URL") from None


def quote_table(preparer: Any, name: str) -> str:
    return ".".join(preparer.quote(part) for part in name.split("."))


def connection_error(exc: BaseException, url: str, where: str, *, data_hint: str | None = None) -> AgentETLError:
    """Map a driver exception to our tree by its SQLSTATE or error number (``errors.py``), the password scrubbed.

    ``data_hint`` replaces the hint of a data error: a destination says the staged rows do not fit.
    """
    from agent_orchestrated_etl.connectors.sql.errors import classify

    text = str(exc).strip()
    message = scrub(text.splitlines()[0] if text else type(exc).__name__, url)
    kind = classify(exc, scheme(url))
    if kind == "data":
        return DataError(
            message,
            where=where,
            hint=data_hint or "cast the column in query:, or set retry.on_bad_data: quarantine to set the rows aside",
        )
    cls, hint = _KINDS[kind]
    return cls(message, where=where, hint=hint.format(url=redact(url)))


_KINDS: dict[str, tuple[type[AgentETLError], str]] = {
    "transient": (ConnectionFailedError, "is the server at {url} up?"),
    # Another transaction won this time; the same work succeeds when tried again.
    "conflict": (TransactionConflictError, "another transaction held the rows; the task is retried"),
    "resource": (ResourceExhaustedError, "the database ran short of memory, disk or connections; the task is retried"),
    "auth": (AuthError, "check the user and password in the URL, and the user's grants"),
    "missing": (SourceNotFoundError, "check the table, schema and database names"),
    "config": (ConfigurationError, "check the query and the table"),
}
