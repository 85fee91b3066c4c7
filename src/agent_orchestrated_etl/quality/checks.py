"""Quality expectations of a spec: one class per kind, each written as a one-key mapping.

Three levels, by what a check needs to see:
- row checks (not_null, in_range, regex, accepted_values, sql) judge each row alone,
  as a DuckDB boolean expression evaluated batch by batch;
- whole-input row checks (unique, referential) judge a row against every other row
  or another input, so they run in the DuckDB workspace (which spills) over all rows;
- dataset checks (row_count, freshness, schema) judge the input as a whole from a
  small running state (a count, a maximum, the schema), merged across tasks.

Rows failing a row check go to quarantine. Every check has a severity (``error``
fails the run, ``warn`` records it) and row checks a threshold: the fraction of
rows allowed to fail.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from agent_orchestrated_etl.transform.sql import ident, literal

Level = Literal["row", "all_rows", "dataset"]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'36h' -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use a number with s, m, h, d or w, e.g. 36h)")
    return float(match.group(1)) * _SECONDS[match.group(2)]


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    kind: ClassVar[str]
    level: ClassVar[Level] = "row"

    name: str | None = Field(None, description="A label for reports; by default the kind and its columns.")
    input: str | None = Field(
        None, description="Apply to this source or transform; by default to every destination's input."
    )
    severity: Literal["error", "warn"] = Field(
        "error", description="error fails the run; warn only records the failure."
    )
    threshold: float = Field(0.0, ge=0, le=1, description="Fraction of rows allowed to fail, e.g. 0.01 (row checks).")
    keep_in_target: bool = Field(
        False, description="Load failing rows into the target too; they are still copied to quarantine."
    )

    @model_validator(mode="after")
    def _row_options(self) -> _Check:
        if self.level == "dataset" and (self.threshold or self.keep_in_target):
            raise ValueError(f"{self.kind} judges the whole input; threshold and keep_in_target are for row checks")
        return self

    @property
    def columns(self) -> list[str]:
        """Columns of the checked input that this check reads."""
        return []

    @property
    def label(self) -> str:
        return self.name or f"{self.kind}({', '.join(self.columns)})"

    def failed_sql(self) -> str:
        """A DuckDB expression true for a failing row, never null (row checks)."""
        raise NotImplementedError

    def explain(self, row: dict[str, Any]) -> str:
        """Why this row failed, in words, for the quarantine's reason column."""
        return f"failed {self.label}"


def _passes_on_null(condition: str) -> str:
    # A null value is not judged by value checks (not_null says whether nulls are allowed).
    return f"coalesce(NOT ({condition}), false)"


class NotNullCheck(_Check):
    kind: ClassVar[str] = "not_null"
    not_null: list[str] = Field(min_length=1, description="These columns are never null.")

    @property
    def columns(self) -> list[str]:
        return self.not_null

    def failed_sql(self) -> str:
        return " OR ".join(f"{ident(c)} IS NULL" for c in self.not_null)

    def explain(self, row: dict[str, Any]) -> str:
        return f"{', '.join(c for c in self.not_null if row.get(c) is None)} is null"


class UniqueCheck(_Check):
    kind: ClassVar[str] = "unique"
    level: ClassVar[Level] = "all_rows"
    unique: list[str] = Field(min_length=1, description="These columns together identify a row; later duplicates fail.")

    @property
    def columns(self) -> list[str]:
        return self.unique

    def explain(self, row: dict[str, Any]) -> str:
        key = ", ".join(f"{c}={row.get(c)!r}" for c in self.unique)
        return f"duplicate of an earlier row with {key}"


class RangeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str
    min: float | int | str | None = None
    max: float | int | str | None = None

    @model_validator(mode="after")
    def _a_bound(self) -> RangeOptions:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        for name, bound in (("min", self.min), ("max", self.max)):
            if isinstance(bound, str) and not _comparable(bound):
                # Caught here, with its line, not as a conversion error mid-run.
                raise ValueError(
                    f"{name}: {bound!r} is not a number, a date or a timestamp (in_range compares those; for text use accepted_values or regex)"
                )
        return self


def _comparable(text: str) -> bool:
    """A bound written as a string: a number, or an ISO date or timestamp (2024-01-31, 2024-01-31 12:00:00)."""
    try:
        float(text)
        return True
    except ValueError:
        pass
    try:
        datetime.fromisoformat(text.strip())
        return True
    except ValueError:
        return False


class InRangeCheck(_Check):
    kind: ClassVar[str] = "in_range"
    in_range: RangeOptions = Field(description="{column, min, max}; bounds are inclusive.")

    @property
    def columns(self) -> list[str]:
        return [self.in_range.column]

    def failed_sql(self) -> str:
        column, bounds = ident(self.in_range.column), []
        if self.in_range.min is not None:
            bounds.append(f"{column} >= {literal(self.in_range.min)}")
        if self.in_range.max is not None:
            bounds.append(f"{column} <= {literal(self.in_range.max)}")
        return _passes_on_null(" AND ".join(bounds))

    def explain(self, row: dict[str, Any]) -> str:
        low = "-inf" if self.in_range.min is None else self.in_range.min
        high = "inf" if self.in_range.max is None else self.in_range.max
        return f"{self.in_range.column}={row.get(self.in_range.column)!r} is outside [{low}, {high}]"


class RegexOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str
    pattern: str = Field(description="RE2 syntax; matches anywhere unless anchored with ^ and $.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        # RE2 (DuckDB) and Python agree on the common syntax; this catches typos at validate time.
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return pattern


class RegexCheck(_Check):
    kind: ClassVar[str] = "regex"
    regex: RegexOptions

    @property
    def columns(self) -> list[str]:
        return [self.regex.column]

    def failed_sql(self) -> str:
        return _passes_on_null(
            f"regexp_matches(CAST({ident(self.regex.column)} AS VARCHAR), {literal(self.regex.pattern)})"
        )

    def explain(self, row: dict[str, Any]) -> str:
        return f"{self.regex.column}={row.get(self.regex.column)!r} does not match {self.regex.pattern}"


class ValuesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str
    values: list[str | int | float | bool] = Field(min_length=1)


class AcceptedValuesCheck(_Check):
    kind: ClassVar[str] = "accepted_values"
    accepted_values: ValuesOptions

    @property
    def columns(self) -> list[str]:
        return [self.accepted_values.column]

    def failed_sql(self) -> str:
        values = ", ".join(literal(v) for v in self.accepted_values.values)
        return _passes_on_null(f"{ident(self.accepted_values.column)} IN ({values})")

    def explain(self, row: dict[str, Any]) -> str:
        return f"{self.accepted_values.column}={row.get(self.accepted_values.column)!r} is not one of {self.accepted_values.values}"


class CountOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _a_bound(self) -> CountOptions:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        return self


class RowCountCheck(_Check):
    kind: ClassVar[str] = "row_count"
    level: ClassVar[Level] = "dataset"
    row_count: CountOptions = Field(description="{min, max}: rows that pass the row checks, inclusive.")

    @property
    def label(self) -> str:
        return (
            self.name
            or f"row_count({self.row_count.min if self.row_count.min is not None else ''}..{self.row_count.max if self.row_count.max is not None else ''})"
        )


class FreshnessOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str = Field(description="A timestamp or date column.")
    max_age: str = Field(description="e.g. 36h or 2d: the newest value may be at most this old.")

    @field_validator("max_age")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class FreshnessCheck(_Check):
    kind: ClassVar[str] = "freshness"
    level: ClassVar[Level] = "dataset"
    freshness: FreshnessOptions

    @property
    def columns(self) -> list[str]:
        return [self.freshness.column]


class SchemaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    columns: dict[str, str] = Field(
        min_length=1,
        description="Column: Arrow type (int64, string, timestamp[us], decimal128(12, 2)) or a family: integer, number, string, temporal, boolean.",
    )
    exact: bool = Field(False, description="No other columns allowed.")


class SchemaCheck(_Check):
    kind: ClassVar[str] = "schema"
    level: ClassVar[Level] = "dataset"
    schema_: SchemaOptions = Field(alias="schema")

    @property
    def label(self) -> str:
        return self.name or f"schema({len(self.schema_.columns)} columns)"


class ReferenceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str
    to: str = Field(pattern=r"^[A-Za-z_]\w*\.[A-Za-z_]\w*$", description="input.column that must hold every value.")

    @property
    def target(self) -> tuple[str, str]:
        name, _, column = self.to.partition(".")
        return name, column


class ReferentialCheck(_Check):
    kind: ClassVar[str] = "referential"
    level: ClassVar[Level] = "all_rows"
    referential: ReferenceOptions

    @property
    def columns(self) -> list[str]:
        return [self.referential.column]

    @property
    def label(self) -> str:
        return self.name or f"referential({self.referential.column} -> {self.referential.to})"

    def explain(self, row: dict[str, Any]) -> str:
        return f"{self.referential.column}={row.get(self.referential.column)!r} is not in {self.referential.to}"


class SqlCheck(_Check):
    kind: ClassVar[str] = "sql"
    sql: str = Field(
        min_length=1, description="A DuckDB predicate every row must satisfy, e.g. 'shipped_at >= ordered_at'."
    )

    @property
    def label(self) -> str:
        return self.name or f"sql({self.sql})"

    def failed_sql(self) -> str:
        return _passes_on_null(self.sql)

    def explain(self, row: dict[str, Any]) -> str:
        return f"not true: {self.sql}"


CHECK_MODELS: dict[str, type[_Check]] = {
    m.kind: m
    for m in (
        NotNullCheck,
        UniqueCheck,
        InRangeCheck,
        RegexCheck,
        AcceptedValuesCheck,
        RowCountCheck,
        FreshnessCheck,
        SchemaCheck,
        ReferentialCheck,
        SqlCheck,
    )
}


def _which_kind(value: Any) -> str | None:
    if isinstance(value, _Check):
        return value.kind
    if isinstance(value, dict):
        kinds = [key for key in value if key in CHECK_MODELS]
        return kinds[0] if len(kinds) == 1 else None
    return None


QualityCheck = Annotated[
    Annotated[NotNullCheck, Tag("not_null")]
    | Annotated[UniqueCheck, Tag("unique")]
    | Annotated[InRangeCheck, Tag("in_range")]
    | Annotated[RegexCheck, Tag("regex")]
    | Annotated[AcceptedValuesCheck, Tag("accepted_values")]
    | Annotated[RowCountCheck, Tag("row_count")]
    | Annotated[FreshnessCheck, Tag("freshness")]
    | Annotated[SchemaCheck, Tag("schema")]
    | Annotated[ReferentialCheck, Tag("referential")]
    | Annotated[SqlCheck, Tag("sql")],
    Discriminator(
        _which_kind,
        custom_error_type="check_kind",
        custom_error_message=f"a check has exactly one kind: {', '.join(CHECK_MODELS)}",
    ),
]
Check = _Check
