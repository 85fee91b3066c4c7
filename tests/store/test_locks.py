import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

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
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    store.durability.acquire("shop", "run-1")
    with store.engine.begin() as conn:
        conn.execute(pipeline_locks.update().values(pid=int(dead.stdout)))
    assert store.durability.acquire("shop", "run-2") == "run-1"


# A worker takes part in every round: it waits for the round's go file, tries to take the
# lock of a dead holder, and writes what happened. Starting all at once is what makes them race.
RACER = """
import os, sys, time
from pathlib import Path
from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.store.durability import PipelineBusyError
from agent_orchestrated_etl.store.records import RunStore

directory, me, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
durability = RunStore(Settings().store_url).durability
(directory / f"ready-{me}").touch()
for n in range(rounds):
    while not (directory / f"go-{n}").exists():
        time.sleep(0.001)
    try:
        outcome = "took " + str(durability.acquire("shop", f"run-{n}-{me}"))
    except PipelineBusyError as exc:
        outcome = "busy: " + str(exc)
    (directory / f"partial-{n}-{me}").write_text(outcome)
    (directory / f"partial-{n}-{me}").rename(directory / f"result-{n}-{me}")
"""


def test_exactly_one_of_many_processes_takes_over_a_dead_holder(store_url: str, tmp_path: Path) -> None:
    processes, rounds = 8, 5
    store = RunStore(store_url)
    dead = int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
        ).stdout
    )
    store.durability.acquire("shop", "crashed")
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path), str(i), str(rounds)]) for i in range(processes)
    ]
    try:
        wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == processes)
        for n in range(rounds):
            with store.engine.begin() as conn:
                conn.execute(pipeline_locks.update().values(run_id="crashed", pid=dead))
            (tmp_path / f"go-{n}").touch()
            wait_for(lambda n=n: len(list(tmp_path.glob(f"result-{n}-*"))) == processes)
            outcomes = {i: (tmp_path / f"result-{n}-{i}").read_text() for i in range(processes)}
            winners = [i for i, text in outcomes.items() if text == "took crashed"]
            assert len(winners) == 1, outcomes
            with store.engine.connect() as conn:
                assert conn.execute(sa.select(pipeline_locks.c.run_id)).scalars().all() == [f"run-{n}-{winners[0]}"]
            assert all(text.startswith("busy: pipeline shop ") for i, text in outcomes.items() if i != winners[0]), (
                "\n".join(outcomes.values())
            )
        assert [racer.wait(timeout=60) for racer in racers] == [0] * processes
    finally:
        for racer in racers:
            racer.kill()
        store.close()


def wait_for(condition: Callable[[], bool], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
