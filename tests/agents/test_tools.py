import pytest
from pydantic import BaseModel, ValidationError

from agent_orchestrated_etl.agents.tools import Tool, ToolCall, ToolRegistry, default_registry


class In(BaseModel):
    n: int


class Out(BaseModel):
    doubled: int


async def double(arguments: In, call: ToolCall) -> dict:
    return {"doubled": arguments.n * 2}


def test_default_registry_offers_the_task_tools_with_schemas() -> None:
    registry = default_registry()
    assert registry.names() == {
        "extract_load",
        "stage",
        "transform_load",
        "pushdown",
        "profile",
        "sample",
        "remember",
        "recall",
    }
    described = {t["name"]: t for t in registry.describe()}
    assert described["stage"]["input_schema"]["properties"]["task"]["type"] == "object"
    assert "rows_written" in described["extract_load"]["output_schema"]["properties"]


async def test_a_tool_validates_its_input_and_output() -> None:
    registry = ToolRegistry()
    registry.register(Tool("double", "Doubles.", In, Out, double))
    tool = registry.get("double")
    result = await tool({"n": 21}, call=None)  # type: ignore[arg-type]
    assert result == Out(doubled=42)
    with pytest.raises(ValidationError):
        await tool({"n": "many"}, call=None)  # type: ignore[arg-type]


def test_duplicate_and_unknown_tools_are_errors() -> None:
    registry = ToolRegistry()
    registry.register(Tool("double", "Doubles.", In, Out, double))
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Tool("double", "Again.", In, Out, double))
    with pytest.raises(LookupError, match="registered: \\['double'\\]"):
        registry.get("triple")
