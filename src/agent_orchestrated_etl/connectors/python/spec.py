"""The spec model of a Python object as a source."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent_orchestrated_etl.connectors.base import ConnectorSpec
from agent_orchestrated_etl.connectors.nested import NestedOptions


class PythonSourceSpec(ConnectorSpec):
    type: Literal["python"]
    ref: str = Field(
        min_length=1,
        description=(
            "The name the data is bound under in the process that runs the pipeline: the Python API binds each object"
            " it is given (Pipeline(sources={'orders': rows}), or data={'orders': rows} with a YAML spec)."
        ),
    )
    nested: NestedOptions = Field(
        default_factory=NestedOptions, description="Dicts only: how nested values become columns, as for JSON."
    )
