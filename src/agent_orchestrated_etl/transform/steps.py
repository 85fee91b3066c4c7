"""Transform specs: a named output made of ``sql:`` or of ``steps:`` applied in order.

Each step is a one-key mapping naming its op (``- filter: "amount > 0"``), with the
op's options beside it where it has any (``- cast: {...}`` + ``mode: safe``), so a
chain of steps reads top to bottom in YAML. Expressions are DuckDB SQL expressions
over the step's input columns.

Streaming ops work batch by batch and keep a source partition's rows in its own
task; blocking ops (dedupe, join, aggregate, sort) need every row at once and run
in the run's DuckDB workspace, which spills to disk past its memory limit.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from agent_orchestrated_etl.secrets import is_reference

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
Scalar = str | int | float | bool


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: ClassVar[str]
    #: Needs every row at once, so it runs in the DuckDB workspace rather than batch by batch.
    blocking: ClassVar[bool] = False


class SelectStep(_Step):
    select: list[str] = Field(min_length=1, description="Columns to keep, in this order.")
    op: ClassVar[str] = "select"


class RenameStep(_Step):
    rename: dict[str, str] = Field(min_length=1, description="Old name: new name.")
    op: ClassVar[str] = "rename"

    @field_validator("rename")
    @classmethod
    def _identifiers(cls, names: dict[str, str]) -> dict[str, str]:
        for new in names.values():
            if not re.match(_NAME, new):
                raise ValueError(f"new column name {new!r} must be letters, digits and _")
        return names


class CastStep(_Step):
    cast: dict[str, str] = Field(min_length=1, description="Column: DuckDB type, e.g. 'DECIMAL(12,2)', DATE, BIGINT.")
    mode: Literal["strict", "safe"] = Field(
        "strict", description="strict: a value that does not convert fails the run; safe: it becomes null."
    )
    op: ClassVar[str] = "cast"


class FilterStep(_Step):
    filter: str = Field(min_length=1, description="Keep the rows where this expression is true.")
    op: ClassVar[str] = "filter"


class DeriveStep(_Step):
    derive: dict[str, str] = Field(
        min_length=1, description="New (or replaced) column: expression; later entries may use earlier ones."
    )
    op: ClassVar[str] = "derive"

    @field_validator("derive")
    @classmethod
    def _identifiers(cls, columns: dict[str, str]) -> dict[str, str]:
        for name in columns:
            if not re.match(_NAME, name):
                raise ValueError(f"column name {name!r} must be letters, digits and _")
        return columns


class FillNullStep(_Step):
    fill_null: dict[str, Scalar] = Field(min_length=1, description="Column: value that replaces its nulls.")
    op: ClassVar[str] = "fill_null"


MaskStyle = Literal["full", "email", "last4"]


class MaskStep(_Step):
    mask: list[str] | dict[str, MaskStyle] = Field(
        description="Columns to mask: a list (every character starred) or column: full | email | last4."
    )
    op: ClassVar[str] = "mask"

    @property
    def styles(self) -> dict[str, MaskStyle]:
        return dict.fromkeys(self.mask, "full") if isinstance(self.mask, list) else dict(self.mask)


class HashStep(_Step):
    hash: list[str] = Field(min_length=1, description="Columns replaced by sha256(salt || value), hex.")
    salt: str = Field(
        description="A secret, given as ${env:NAME} (or ${file:...}, ${aws-sm:...}) so it never sits in the spec."
    )
    op: ClassVar[str] = "hash"

    @field_validator("salt")
    @classmethod
    def _from_secrets(cls, salt: str) -> str:
        # Resolved specs hold the value itself; only the raw YAML must use a reference.
        if "${" in salt and not is_reference(salt):
            raise ValueError(
                "salt must be exactly one secret reference: ${env:NAME}, ${file:path} or ${aws-sm:name#key}"
            )
        return salt


class DedupeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: list[str] = Field(min_length=1, description="Rows with equal keys are duplicates.")
    keep: Literal["first", "last"] = Field("first", description="Which duplicate survives.")
    order_by: list[str] = Field(
        default_factory=list, description="Columns that define first and last; input order by default (and for ties)."
    )

    @field_validator("order_by", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class DedupeStep(_Step):
    dedupe: DedupeOptions
    op: ClassVar[str] = "dedupe"
    blocking: ClassVar[bool] = True

    @field_validator("dedupe", mode="before")
    @classmethod
    def _keys_shorthand(cls, value: Any) -> Any:
        return {"keys": value} if isinstance(value, list) else value


class UnnestStep(_Step):
    unnest: str = Field(description="A list column; each element becomes a row (rows with empty lists go away).")
    parent_key: list[str] | None = Field(
        None,
        description="A child table instead: each element's fields become the columns (a list of scalars gives `value`), "
        "after the parent's key columns as _parent_<name> and the element's _index in the list.",
    )
    op: ClassVar[str] = "unnest"


class JoinOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    with_: str = Field(alias="with", pattern=_NAME, description="Another source or transform of the pipeline.")
    on: list[str] | dict[str, str] = Field(description="Key columns with the same name on both sides, or left: right.")
    how: Literal["inner", "left", "right", "full", "semi", "anti"] = "inner"
    columns: list[str] | None = Field(
        None, description="Columns to take from the other side; all but its keys by default."
    )

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `on:` key as the boolean true.
        if isinstance(value, dict) and True in value and "on" not in value:
            value = {("on" if key is True else key): item for key, item in value.items()}
        return value

    @field_validator("on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(k, k) for k in self.on] if isinstance(self.on, list) else list(self.on.items())


class JoinStep(_Step):
    join: JoinOptions
    op: ClassVar[str] = "join"
    blocking: ClassVar[bool] = True


class AggregateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    group_by: list[str] = Field(default_factory=list, description="Grouping columns; none for one total row.")
    measures: dict[str, str] = Field(min_length=1, description="Output column: aggregate expression, e.g. sum(amount).")


class AggregateStep(_Step):
    aggregate: AggregateOptions
    op: ClassVar[str] = "aggregate"
    blocking: ClassVar[bool] = True


class SortStep(_Step):
    sort: list[str] = Field(min_length=1, description="ORDER BY items, e.g. [customer_id, ordered_at DESC].")
    op: ClassVar[str] = "sort"
    blocking: ClassVar[bool] = True


class PythonStep(_Step):
    python: str = Field(
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="module:function taking a pyarrow.RecordBatch (and the args) and returning one (or a Table).",
    )
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the function.")
    op: ClassVar[str] = "python"


STEP_MODELS: dict[str, type[_Step]] = {
    "select": SelectStep,
    "rename": RenameStep,
    "cast": CastStep,
    "filter": FilterStep,
    "derive": DeriveStep,
    "fill_null": FillNullStep,
    "mask": MaskStep,
    "hash": HashStep,
    "dedupe": DedupeStep,
    "unnest": UnnestStep,
    "join": JoinStep,
    "aggregate": AggregateStep,
    "sort": SortStep,
    "python": PythonStep,
}


def _which_op(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return getattr(value, "op", None)
    if isinstance(value, dict):
        ops = [key for key in value if key in STEP_MODELS]
        return ops[0] if len(ops) == 1 else None
    return None


Step = Annotated[
    Annotated[SelectStep, Tag("select")]
    | Annotated[RenameStep, Tag("rename")]
    | Annotated[CastStep, Tag("cast")]
    | Annotated[FilterStep, Tag("filter")]
    | Annotated[DeriveStep, Tag("derive")]
    | Annotated[FillNullStep, Tag("fill_null")]
    | Annotated[MaskStep, Tag("mask")]
    | Annotated[HashStep, Tag("hash")]
    | Annotated[DedupeStep, Tag("dedupe")]
    | Annotated[UnnestStep, Tag("unnest")]
    | Annotated[JoinStep, Tag("join")]
    | Annotated[AggregateStep, Tag("aggregate")]
    | Annotated[SortStep, Tag("sort")]
    | Annotated[PythonStep, Tag("python")],
    Discriminator(
        _which_op,
        custom_error_type="step_op",
        custom_error_message=f"a step has exactly one op: {', '.join(STEP_MODELS)}",
    ),
]


class TransformSpec(BaseModel):
    """A named output, usable as an input by name: ``sql:`` over named inputs, or ``steps:`` over one."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME, description="The transform's output, usable as an input by name.")
    sql: str | None = Field(None, description="DuckDB SQL over the named inputs (sources or earlier transforms).")
    inputs: list[str] | None = Field(
        None, description="Inputs the SQL reads; by default every source or transform named in it."
    )
    input: str | None = Field(None, pattern=_NAME, description="The source or transform the steps start from.")
    steps: list[Step] | None = Field(None, min_length=1, description="Ops applied in order.")

    @model_validator(mode="after")
    def _one_kind(self) -> TransformSpec:
        if (self.sql is None) == (self.steps is None):
            raise ValueError("a transform has either `sql:` or `steps:` (with `input:`)")
        if self.steps is not None:
            if self.input is None:
                raise ValueError("a transform with `steps:` needs `input:` (a source or an earlier transform)")
            read = [self.input, *(s.join.with_ for s in self.steps if isinstance(s, JoinStep))]
            # A re-validated spec (after ${env:...} resolution) brings back the inputs found here.
            if self.inputs is not None and self.inputs != read:
                raise ValueError("`inputs:` is for `sql:` transforms; steps read `input:` (and a join's `with:`)")
            self.inputs = read
        elif self.input is not None:
            raise ValueError("`input:` is for `steps:`; a `sql:` transform lists `inputs:` (or names them in the SQL)")
        return self

    @property
    def blocking(self) -> bool:
        """True when the transform needs every row of its inputs at once."""
        return self.sql is not None or any(step.blocking for step in self.steps or [])
