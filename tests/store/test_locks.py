import subprocess
import sys

import pytest

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.store.durability import PipelineBusyError
from agent_orchestrated_etl.store.records import RunStore
from agent_orchestrated_etl.store.schema import pipeline_locks


def test_a_live_holder_keeps_the_pipeline() -> None:
    durability = RunStore(Settings().store_url).durability
    assert durability.acquire("shop", "run-1") is None
    with pytest.raises(PipelineBusyError, match="already running as run run-1"):
        durability.acquire("shop", "run-2")
    durability.release("shop", "run-1")
    assert durability.acquire("shop", "run-2") is None


def test_a_dead_holder_is_taken_over() -> None:
    store = RunStore(Settings().store_url)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    store.durability.acquire("shop", "run-1")
    with store.engine.begin() as conn:
        conn.execute(pipeline_locks.update().values(pid=int(dead.stdout)))
    assert store.durability.acquire("shop", "run-2") == "run-1"
