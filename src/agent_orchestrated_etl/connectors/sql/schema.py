"""Schema changes on load: compare what arrives with what the target holds.

``evolve`` (the default) adds new columns and applies safe widenings;
``freeze`` refuses any change with a readable diff. A change that would
lose data (text into an integer column, a wider decimal into a narrower one
that cannot grow) is refused in both modes: nothing is silently truncated or dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from agent_orchestrated_etl.connectors.sql.types import plain, widened
from agent_orchestrated_etl.exceptions import ConfigurationError, DataError


@dataclass
class SchemaDiff:
    added: list[pa.Field] = field(default_factory=list)
    widened: list[tuple[str, pa.DataType, pa.DataType]] = field(default_factory=list)  # (column, from, to)
    incompatible: list[tuple[str, pa.DataType, pa.DataType]] = field(default_factory=list)  # (column, target, incoming)

    @property
    def changes(self) -> bool:
        return bool(self.added or self.widened)

    def render(self) -> str:
        lines = [f"  + {f.name}: {f.type}" for f in self.added]
        lines += [f"  ~ {name}: {old} -> {new}" for name, old, new in self.widened]
        lines += [f"  ! {name}: target holds {old}, incoming {new}" for name, old, new in self.incompatible]
        return "\n".join(lines)


def diff(target: dict[str, pa.DataType | None], incoming: pa.Schema) -> SchemaDiff:
    """Compare target columns (Arrow types; None when the reflected type is unknown) with incoming data.

    Columns are matched by name, case-insensitively, as the databases fold them.
    """
    folded = {name.lower(): (name, dtype) for name, dtype in target.items()}
    result = SchemaDiff()
    for incoming_field in incoming:
        match = folded.get(incoming_field.name.lower())
        if match is None:
            result.added.append(incoming_field)
            continue
        name, dtype = match
        if dtype is None or pa.types.is_null(incoming_field.type):
            continue  # a type we cannot judge: the database will cast or refuse
        wider = widened(dtype, incoming_field.type)
        if wider is None:
            result.incompatible.append((name, dtype, incoming_field.type))
        elif wider != plain(dtype):
            result.widened.append((name, dtype, wider))
    return result


def check(d: SchemaDiff, *, mode: str, where: str) -> None:
    """Raise when the diff may not be applied under ``mode``."""
    if d.incompatible:
        raise DataError(
            "incoming columns do not fit the target table:\n" + d.render(),
            where=where,
            hint="CAST the columns in a transform, or widen the target table yourself",
        )
    if mode == "freeze" and d.changes:
        raise ConfigurationError(
            "the incoming schema differs from the target table and `schema: freeze` forbids changes:\n" + d.render(),
            where=where,
            hint="set `schema: evolve` to apply these changes, or change the source to match",
        )
