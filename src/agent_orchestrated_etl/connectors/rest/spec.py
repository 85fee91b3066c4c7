"""The settings of a REST source: one endpoint, its parameters, where the records are and how to page."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from agent_orchestrated_etl.connectors.http.paginators import NoPagination, Pagination
from agent_orchestrated_etl.connectors.http.source import HttpSourceSpec
from agent_orchestrated_etl.connectors.incremental import IncrementalSpec

TEMPLATE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class RestSourceSpec(HttpSourceSpec):
    type: Literal["rest"]
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Query parameters; {{ high_water_mark }} is replaced by the committed incremental mark.",
    )
    body: dict[str, Any] | None = Field(None, description="JSON body for POST.")
    records: str | None = Field(
        None,
        description="Dotted path of the record list in the body (data.items); default: the body. "
        "A path that is not in a response fails the read.",
    )
    pagination: Pagination = Field(default_factory=lambda: NoPagination(type="none"))
    concurrency: int = Field(4, ge=1, le=64, description="Pages in flight when the total is known up front.")
    incremental: IncrementalSpec | None = Field(
        None,
        description="Load only records past the committed mark of `cursor`; "
        "pass the mark to the API with {{ high_water_mark }} in params.",
    )

    @field_validator("params")
    @classmethod
    def _known_templates(cls, params: dict[str, Any]) -> dict[str, Any]:
        for key, value in params.items():
            for name in TEMPLATE.findall(str(value)):
                if name != "high_water_mark":
                    raise ValueError(
                        f"params.{key}: unknown template {{{{ {name} }}}}; the only one is {{{{ high_water_mark }}}}"
                    )
        return params
