"""Quoting for the SQL we generate: identifiers and literals, never string-pasted values."""

from __future__ import annotations

import math
from typing import Any

#: Hidden columns that ride along with the data inside the engine and never reach a target.
ROW = "__agent_etl_row"  # the row's ordinal in its source, which maps back to its position
FLAG_PREFIX = "__agent_etl_check_"  # one boolean per check: the row failed it
HIDDEN_PREFIX = "__agent_etl_"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A DuckDB literal for a YAML scalar; strings are cast implicitly where a column needs it."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"'{value}'::DOUBLE"
    return "'" + str(value).replace("'", "''") + "'"


def is_hidden(name: str) -> bool:
    return name.startswith(HIDDEN_PREFIX)
