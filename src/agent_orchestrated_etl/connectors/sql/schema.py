"""Schema changes on load: compare what arrives with what the target holds.

``evolve`` (the default) adds new columns and applies safe widenings;
``freeze`` refuses any change with a readable diff; ``discard`` leaves out
the columns the target lacks and applies safe widenings. A change that would
lose data (text into an integer column, a wider decimal into a narrower one
that cannot grow) is refused in every mode: nothing is silently truncated.
"""

from __future__ import annotations

from collections.abc import Callable
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

    def summary(
        self, mode: str, type_name: Callable[[pa.DataType], str], added_type: Callable[[pa.Field], str] | None = None
    ) -> list[str]:
        """What applying the diff under ``mode`` does to the target, a line a column, in the destination's type names.

        ``added_type`` names the type of an added column where the destination
        adds it as declared in staging rather than from its Arrow type.
        """
        if mode == "discard":
            lines = [f"dropped column {f.name} (not in the target)" for f in self.added]
        else:
            lines = [f"added column {f.name} {added_type(f) if added_type else type_name(f.type)}" for f in self.added]
        return lines + [f"widened {name} {type_name(old)} -> {type_name(new)}" for name, old, new in self.widened]

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
            hint="set `schema: evolve` to apply these changes or `schema: discard` to leave new columns out, or change the source to match",
        )
