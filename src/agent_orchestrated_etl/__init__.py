"""agent-orchestrated-etl: ETL in which cooperating agents extract, transform, validate and load data.

The public Python API (docs/python-api.md); every name here is stable, and
tests/test_public_api.py lists them::

    import agent_orchestrated_etl as etl

    pipeline = etl.Pipeline(
        "orders",
        sources={"orders": [{"id": 1, "total": 9.5}, {"id": 2, "total": 3.0}]},
        destination={"type": "duckdb", "path": "warehouse.duckdb", "table": "orders", "write": "replace"},
    )
    result = pipeline.run()
    print(result.status, result.rows_written, pipeline.read_table().num_rows)

Names are imported on first use (PEP 562), so ``import agent_orchestrated_etl``
stays cheap for the CLI and for code that imports one submodule.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent_orchestrated_etl.config import Settings, load_settings
    from agent_orchestrated_etl.connectors.duckdb.spec import DuckDBDestinationSpec, DuckDBSourceSpec
    from agent_orchestrated_etl.connectors.files import FileDestinationSpec, FileSourceSpec
    from agent_orchestrated_etl.connectors.postgres.spec import PostgresDestinationSpec, PostgresSourceSpec
    from agent_orchestrated_etl.connectors.python.spec import PythonSourceSpec
    from agent_orchestrated_etl.connectors.rest.spec import RestSourceSpec
    from agent_orchestrated_etl.connectors.sqlite.spec import SQLiteDestinationSpec, SQLiteSourceSpec
    from agent_orchestrated_etl.exceptions import (
        AgentETLError,
        AuthError,
        ConfigurationError,
        DataError,
        FatalError,
        InternalError,
        MissingDependencyError,
        RetriableError,
        RunFailedError,
        SourceNotFoundError,
        SpecError,
        SpecProblem,
    )
    from agent_orchestrated_etl.model.failure import RunFailure
    from agent_orchestrated_etl.model.messages import RunEvent
    from agent_orchestrated_etl.model.vocabulary import Remedy, RunStatus, TaskStatus
    from agent_orchestrated_etl.monitoring.live import TaskState
    from agent_orchestrated_etl.pipeline import Pipeline, Progress, RunEvents, read_batches, read_table, resume
    from agent_orchestrated_etl.quality.checks import (
        AcceptedValuesCheck,
        FreshnessCheck,
        InRangeCheck,
        NotNullCheck,
        ReferentialCheck,
        RegexCheck,
        RowCountCheck,
        SchemaCheck,
        SqlCheck,
        UniqueCheck,
    )
    from agent_orchestrated_etl.run_result import RunResult
    from agent_orchestrated_etl.spec import PipelineSpec, RetryPolicy, WorkflowSpec
    from agent_orchestrated_etl.transform.steps import TransformSpec

try:
    __version__ = version("agent-orchestrated-etl")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

# Each public name and the module it lives in.
_EXPORTS: dict[str, str] = {
    # Running pipelines
    "Pipeline": "pipeline",
    "Progress": "pipeline",
    "RunEvents": "pipeline",
    "read_batches": "pipeline",
    "read_table": "pipeline",
    "resume": "pipeline",
    "Settings": "config",
    "load_settings": "config",
    # Results
    "RunResult": "run_result",
    "RunFailure": "model.failure",
    "RunEvent": "model.messages",
    "TaskState": "monitoring.live",
    "Remedy": "model.vocabulary",
    "RunStatus": "model.vocabulary",
    "TaskStatus": "model.vocabulary",
    # Spec models
    "PipelineSpec": "spec",
    "WorkflowSpec": "spec",
    "RetryPolicy": "spec",
    "TransformSpec": "transform.steps",
    "PythonSourceSpec": "connectors.python.spec",
    "FileSourceSpec": "connectors.files",
    "FileDestinationSpec": "connectors.files",
    "DuckDBSourceSpec": "connectors.duckdb.spec",
    "DuckDBDestinationSpec": "connectors.duckdb.spec",
    "SQLiteSourceSpec": "connectors.sqlite.spec",
    "SQLiteDestinationSpec": "connectors.sqlite.spec",
    "PostgresSourceSpec": "connectors.postgres.spec",
    "PostgresDestinationSpec": "connectors.postgres.spec",
    "RestSourceSpec": "connectors.rest.spec",
    "NotNullCheck": "quality.checks",
    "UniqueCheck": "quality.checks",
    "InRangeCheck": "quality.checks",
    "RegexCheck": "quality.checks",
    "AcceptedValuesCheck": "quality.checks",
    "RowCountCheck": "quality.checks",
    "FreshnessCheck": "quality.checks",
    "SchemaCheck": "quality.checks",
    "ReferentialCheck": "quality.checks",
    "SqlCheck": "quality.checks",
    # Errors (exceptions.py), branched by remedy
    "AgentETLError": "exceptions",
    "RetriableError": "exceptions",
    "DataError": "exceptions",
    "ConfigurationError": "exceptions",
    "SpecError": "exceptions",
    "SpecProblem": "exceptions",
    "MissingDependencyError": "exceptions",
    "AuthError": "exceptions",
    "FatalError": "exceptions",
    "SourceNotFoundError": "exceptions",
    "InternalError": "exceptions",
    "RunFailedError": "exceptions",
}

__all__ = [
    "__version__",
    "Pipeline",
    "Progress",
    "RunEvents",
    "read_batches",
    "read_table",
    "resume",
    "Settings",
    "load_settings",
    "RunResult",
    "RunFailure",
    "RunEvent",
    "TaskState",
    "Remedy",
    "RunStatus",
    "TaskStatus",
    "PipelineSpec",
    "WorkflowSpec",
    "RetryPolicy",
    "TransformSpec",
    "PythonSourceSpec",
    "FileSourceSpec",
    "FileDestinationSpec",
    "DuckDBSourceSpec",
    "DuckDBDestinationSpec",
    "SQLiteSourceSpec",
    "SQLiteDestinationSpec",
    "PostgresSourceSpec",
    "PostgresDestinationSpec",
    "RestSourceSpec",
    "NotNullCheck",
    "UniqueCheck",
    "InRangeCheck",
    "RegexCheck",
    "AcceptedValuesCheck",
    "RowCountCheck",
    "FreshnessCheck",
    "SchemaCheck",
    "ReferentialCheck",
    "SqlCheck",
    "AgentETLError",
    "RetriableError",
    "DataError",
    "ConfigurationError",
    "SpecError",
    "SpecProblem",
    "MissingDependencyError",
    "AuthError",
    "FatalError",
    "SourceNotFoundError",
    "InternalError",
    "RunFailedError",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next access is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
