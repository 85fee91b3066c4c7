"""The ``verify:`` option of a destination."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class VerifySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity: Literal["error", "warn"] = Field(
        "error", description="error fails the run on a mismatch; warn only records it."
    )
    columns: list[str] | None = Field(
        None, min_length=1, description="Columns to compare besides the key (default: every column both sides have)."
    )


def verify_options(value: bool | VerifySpec | None) -> VerifySpec | None:
    """``verify: true`` is every default; false or absent turns it off."""
    if value is None or value is False:
        return None
    return VerifySpec() if value is True else value
