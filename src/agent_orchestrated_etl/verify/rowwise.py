"""Which target columns still hold a source column's values after a chain of row-wise steps.

Steps that keep every row and change no value they do not name (select,
rename, cast, derive, fill_null, mask, hash) leave the target's rows one to one
with the source's; the columns they pass through untouched can be hashed
against the source, under their new names. Any other step (filter, dedupe,
unnest, join, aggregate, sort, python) or a ``sql:`` transform ends it.
"""

from __future__ import annotations

from typing import Any

from agent_orchestrated_etl.transform.steps import (
    CastStep,
    DeriveStep,
    FillNullStep,
    HashStep,
    MaskStep,
    RenameStep,
    SelectStep,
    Step,
)

_CHANGED = None


class Lineage:
    """Target column -> the source column it holds unchanged (None: a step changed it)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._names: dict[str, str | None] | None = None  # None: every name is still its own
        self._touched: dict[str, str | None] = {}

    def of(self, column: str) -> str | None:
        if self._names is not None:
            return self._names.get(column)
        return self._touched.get(column, column)

    def _current(self) -> dict[str, str | None]:
        return self._names if self._names is not None else self._touched

    def apply(self, step: Any) -> bool:
        """Follow one step; False when it does not keep the rows one to one."""
        if isinstance(step, SelectStep):
            self._names = {c: self.of(c) for c in step.select}
        elif isinstance(step, RenameStep):
            moved = {new: self.of(old) for old, new in step.rename.items()}
            current = self._current()
            for old in step.rename:
                current[old] = _CHANGED  # gone under that name
                if self._names is not None:
                    del current[old]
            current.update(moved)
        elif isinstance(step, CastStep | FillNullStep | DeriveStep | HashStep):
            names = {
                CastStep: lambda s: s.cast,
                FillNullStep: lambda s: s.fill_null,
                DeriveStep: lambda s: s.derive,
                HashStep: lambda s: s.hash,
            }[type(step)](step)
            self._current().update(dict.fromkeys(names, _CHANGED))
        elif isinstance(step, MaskStep):
            self._current().update(dict.fromkeys(step.styles, _CHANGED))
        else:
            return False
        return True


def lineage(spec: Any, name: str) -> Lineage | None:
    """How transform (or source) ``name`` relates to its source, if only row-wise steps lie between."""
    transforms = {t.name: t for t in spec.transforms}
    chain: list[list[Step]] = []
    while name not in spec.sources:
        transform = transforms.get(name)
        if transform is None or transform.steps is None or transform.input is None:
            return None
        chain.insert(0, transform.steps)
        name = transform.input
    found = Lineage(name)
    for steps in chain:
        for step in steps:
            if not found.apply(step):
                return None
    return found
