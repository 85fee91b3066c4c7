"""The Tool Registry: named, described, typed capabilities that agents call.

An ETL agent's capabilities are the names of the tools it holds, so the
orchestrator places a task on an agent that has the task's tool. Inputs and
outputs are Pydantic models, so their JSON Schemas can be listed (and one
day handed to an LLM).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from agent_orchestrated_etl.execution import Progress, RunContext, execute_task
from agent_orchestrated_etl.model.outcome import TaskOutcome
from agent_orchestrated_etl.planning.tasks import Task


@dataclass(frozen=True)
class ToolCall:
    """What a tool may use besides its input: the run it works for and a progress reporter."""

    run: RunContext
    progress: Progress


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    fn: Callable[[Any, ToolCall], Awaitable[Any]]

    async def __call__(self, arguments: BaseModel | dict[str, Any], call: ToolCall) -> BaseModel:
        parsed = arguments if isinstance(arguments, self.input_model) else self.input_model.model_validate(arguments)
        result = await self.fn(parsed, call)
        return self.output_model.model_validate(result)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_model.model_json_schema(),
            "output_schema": self.output_model.model_json_schema(),
        }


class ToolRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise LookupError(f"no tool named {name!r}; registered: {sorted(self._tools)}") from None

    def names(self) -> frozenset[str]:
        return frozenset(self._tools)

    def describe(self) -> list[dict[str, Any]]:
        return [tool.describe() for tool in self._tools.values()]


class TaskInput(BaseModel):
    task: dict[str, Any]


def _task_tool(kind: str, description: str) -> Tool:
    async def run(arguments: TaskInput, call: ToolCall) -> TaskOutcome:
        # Arrow and the databases release the GIL for the heavy work; a thread keeps the event loop live.
        outcome = await asyncio.to_thread(execute_task, call.run, Task.from_dict(arguments.task), call.progress)
        return outcome

    return Tool(kind, description, TaskInput, TaskOutcome, run)


def _thread_tool(
    name: str,
    description: str,
    input_model: type[BaseModel],
    output_model: type[BaseModel],
    fn: Callable[[Any, Any], Any],
) -> Tool:
    async def run(arguments: Any, call: ToolCall) -> Any:
        return await asyncio.to_thread(fn, arguments, call.run if call is not None else None)

    return Tool(name, description, input_model, output_model, run)


def _profile_and_remember(arguments: Any, run: Any) -> dict[str, Any]:
    from agent_orchestrated_etl.agents import memory
    from agent_orchestrated_etl.profiling import tools as profiling

    result = profiling.profile_tool(arguments, run)
    if run is not None:
        memory.remember_profile(run, result["profile"])
    return result


def default_registry() -> ToolRegistry:
    from agent_orchestrated_etl.agents import memory
    from agent_orchestrated_etl.profiling import tools as profiling

    registry = ToolRegistry()
    registry.register(
        _task_tool(
            "extract_load",
            "Stream one partition of a source through the quality checks into a destination's staging area.",
        )
    )
    registry.register(
        _task_tool("stage", "Stream one partition of a source into the run workspace, for SQL transforms to read.")
    )
    registry.register(
        _task_tool(
            "pushdown", "Have a destination's engine copy one partition of a source into its staging area by itself."
        )
    )
    registry.register(
        _task_tool(
            "transform_load",
            "Run a transform (in the run workspace, or over every partition of one source) and stream its result into a destination's staging area.",
        )
    )
    registry.register(
        _thread_tool(
            "profile",
            "Profile a source: per column type, nulls, distinct count, range, quantiles, top values, semantic type and PII flag.",
            profiling.ProfileInput,
            profiling.ProfileOutput,
            _profile_and_remember,
        )
    )
    registry.register(
        _thread_tool(
            "sample",
            "Draw a seeded sample of a source: reservoir, random, systematic or stratified by a column.",
            profiling.SampleInput,
            profiling.SampleOutput,
            profiling.sample_tool,
        )
    )
    registry.register(
        _thread_tool(
            "remember",
            "Keep an episode in the agents' memory: a note about a source, a failure or a fix, masked with the run's secrets.",
            memory.RememberInput,
            memory.RememberOutput,
            memory.remember_tool,
        )
    )
    registry.register(
        _thread_tool(
            "recall",
            "Search the agents' memory of past runs, failures, recoveries and profiles by meaning; naming a system or an error class finds its episodes first.",
            memory.RecallInput,
            memory.RecallOutput,
            memory.recall_tool,
        )
    )
    return registry
