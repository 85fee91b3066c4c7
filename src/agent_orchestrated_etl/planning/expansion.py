"""Sources that read several tables (``tables:``, ``schema:``) become one ordinary source per table.

What dlt, Airbyte and Meltano users expect: each source table lands in a
destination table of its own name (after the destination's ``table_prefix``),
as tasks of its own, so each table has its own checkpoints, retries,
incremental state and atomic commit. Rewriting the spec before planning gives
all of that from the planner and connectors as they are: a connector only
ever reads one table, and pushdown, partitions and incremental windows
apply per table.

The tables of ``schema:`` are known only to the database, so a run expands
when it plans (``agent-etl validate`` when it reads the sources), and each
expansion is a decision in the run's record. Source ``crm`` reading table
``orders`` becomes source ``crm.orders``: the task ids, the incremental state
key and the decisions name the table.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from agent_orchestrated_etl.connectors.registry import source_class
from agent_orchestrated_etl.connectors.sql.common import PLAIN_NAME
from agent_orchestrated_etl.exceptions import ConfigurationError, SourceNotFoundError
from agent_orchestrated_etl.planning.tasks import PlannedDecision
from agent_orchestrated_etl.spec import PipelineSpec

# Bookkeeping and staging tables of agent-etl's own destinations, when a loaded schema is read back.
_OWN_PREFIXES = ("_agent_etl_", "_aetl_")


def several_tables(spec: PipelineSpec) -> list[str]:
    """The sources of ``spec`` that read several tables."""
    return [name for name, source in spec.sources.items() if getattr(source, "reads_tables", False)]


def expand(
    spec: PipelineSpec, planned: dict[str, list[str]] | None = None
) -> tuple[PipelineSpec, list[PlannedDecision]]:
    """``spec`` with every multi-table source replaced by one source (and destination) per table.

    Asks each such source's database for its tables, unless ``planned`` gives
    them (source name -> table names without schema, as a resumed run's first
    plan read them: a table created since must not shift the destinations).
    Raises SourceNotFoundError naming a listed or excluded table that does not
    exist, ConfigurationError for a merge into a table without a primary key.
    """
    names = several_tables(spec)
    if not names:
        return spec, []
    sources: dict[str, Any] = dict(spec.sources)  # the union of source specs is built at run time (spec.py)
    destinations = list(spec.all_destinations)
    quality = list(spec.quality)
    decisions: list[PlannedDecision] = []
    for name in names:
        reader = source_class(sources[name].type)(name, sources[name], batch_rows=1024)
        if planned is not None:
            tables = _as_planned(reader.spec, planned.get(name, []))
            choice, reason = _choice(name, tables), "the tables of the run's first plan"
        else:
            tables, choice, reason = _tables(reader)
        decisions.append(PlannedDecision(f"source {name}", choice, reason))
        per_table = {f"{name}.{bare(t)}": _one_table(reader.spec, t) for t in tables}
        sources = {k: v for n, s in sources.items() for k, v in (per_table.items() if n == name else [(n, s)])}
        # A check on the multi-table source runs on each of its tables.
        quality = [
            copy
            for c in quality
            for copy in ([c.model_copy(update={"input": n}) for n in per_table] if c.input == name else [c])
        ]
        expanded = []
        for dest in destinations:
            if dest.input != name:
                expanded.append(dest)
                continue
            for source_name, table in zip(per_table, tables, strict=True):
                expanded.append(_destination(dest, reader, source_name, table, decisions))
        destinations = expanded
    update = {"sources": sources, "quality": quality, "destination": None, "destinations": destinations}
    return spec.model_copy(update=update), decisions


def bare(table: str) -> str:
    """The table's name without its schema: the name of its destination table."""
    return table.rsplit(".", 1)[-1]


def _tables(reader: Any) -> tuple[list[str], str, str]:
    """The tables a source reads (schema-qualified as the spec gave them), the decision's choice and reason."""
    spec = reader.spec
    where = f"source {reader.name}"
    if spec.tables is not None:
        by_schema: dict[str | None, set[str]] = {}
        for table in spec.tables:
            schema = table.rpartition(".")[0] or None
            if schema not in by_schema:
                by_schema[schema] = set(reader.table_names(schema))
            if bare(table) not in by_schema[schema]:
                raise SourceNotFoundError(
                    f"table {table} does not exist",
                    where=where,
                    hint=f"check tables:; {_listing(schema, by_schema[schema])}",
                )
        tables = list(spec.tables)
        return tables, _choice(reader.name, tables), f"tables: lists {len(tables)}; each exists"
    schema = spec.schema_
    found = reader.table_names(schema)
    own = [t for t in found if t.startswith(_OWN_PREFIXES)]
    odd = [t for t in found if t not in own and not PLAIN_NAME.match(t)]
    if missing := sorted(set(spec.exclude) - set(found)):
        raise SourceNotFoundError(
            f"exclude: names {missing[0]}, which is not a table of schema {schema}",
            where=where,
            hint=f"check exclude:; {_listing(schema, set(found))}",
        )
    tables = [t for t in found if t not in own and t not in odd and t not in spec.exclude]
    if unknown := sorted(set(spec.table_options) - set(tables)):
        raise ConfigurationError(
            f"table_options names {unknown[0]}, which schema {schema} does not have (or exclude: leaves out)",
            where=where,
            hint=f"its tables: {', '.join(tables) or 'none'}",
        )
    if not tables:
        raise SourceNotFoundError(
            f"schema {schema} has no table to read",
            where=where,
            hint=f"check schema: and exclude:; {_listing(schema, set(found))}",
        )
    reason = f"schema {schema} has {len(found)} base table(s): {', '.join(found)}"
    if spec.exclude:
        reason += f"; exclude: leaves out {', '.join(spec.exclude)}"
    if own:
        reason += f"; {', '.join(own)} are agent-etl's own bookkeeping"
    if odd:
        reason += f"; {', '.join(odd)} are not plain names (read them with query:)"
    return [f"{schema}.{t}" for t in tables], _choice(reader.name, tables), reason


def _as_planned(spec: Any, names: list[str]) -> list[str]:
    """The tables a first plan read, in the order expansion gave them then."""
    if spec.tables is not None:
        return [t for t in spec.tables if bare(t) in names]
    return [f"{spec.schema_}.{t}" for t in sorted(names)]


def _choice(name: str, tables: list[str]) -> str:
    return f"read {len(tables)} table(s) as a source each, each into a destination table of its name: {', '.join(f'{name}.{bare(t)}' for t in tables)}"


def _listing(schema: str | None, tables: set[str]) -> str:
    where = f"schema {schema}" if schema else "the default schema"
    return f"{where} has {', '.join(sorted(tables)[:20]) or 'no tables'}" + (" ..." if len(tables) > 20 else "")


def _one_table(spec: Any, table: str) -> Any:
    """The source's spec reading ``table`` alone; an entry under table_options replaces its partition and incremental."""
    options = spec.table_options.get(bare(table))
    own = {"partition": options.partition, "incremental": options.incremental} if options is not None else {}
    return spec.model_copy(
        update={"table": table, "tables": None, "schema_": None, "exclude": [], "table_options": {}, **own}
    )


def _destination(dest: Any, reader: Any, source_name: str, table: str, decisions: list[PlannedDecision]) -> Any:
    target = (dest.table_prefix or "") + bare(table)
    data = dest.model_dump(by_alias=True) | {"table": target, "table_prefix": None, "input": source_name}
    if dest.write == "merge" and not dest.primary_key:
        key = reader.primary_key(table)
        if not key:
            raise ConfigurationError(
                f"write: merge needs a primary key, and table {table} has none",
                where=f"source {reader.name}",
                hint="add one to the table, give the destination primary_key:, or read the table through a source of its own",
            )
        data["primary_key"] = key
        decisions.append(
            PlannedDecision(
                f"destination {target}",
                f"merge on ({', '.join(key)})",
                f"the primary key of source table {table}; the destination gave no primary_key",
            )
        )
    try:
        return type(dest).model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigurationError(
            f"destination table {target!r} for source table {table}: {first['msg'].removeprefix('Value error, ')}",
            where=f"source {reader.name}",
            hint="rename the table, or change table_prefix:",
        ) from None
