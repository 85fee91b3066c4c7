"""Agent memory: error signatures, recall by meaning and by name, limits, masking, and what runs leave in it."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from agent_orchestrated_etl import redaction
from agent_orchestrated_etl.agents.memory import Memory, RunMemory, mask_message, memory_for, signature_of
from agent_orchestrated_etl.agents.memory_index import HashedEmbedder
from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.model.messages import Decision, RunFinished, RunStarted, TaskFailed, TaskFinished
from agent_orchestrated_etl.model.vocabulary import FailureKind, RunStatus
from agent_orchestrated_etl.store.memory import Episode, EpisodeStore
from agent_orchestrated_etl.store.records import RunStore
from agent_orchestrated_etl.store.schema import memory_episodes


def _memory(max_episodes: int = 100_000, retention_days: float = 180, url: str | None = None) -> Memory:
    store = RunStore(url or Settings().store_url)
    return Memory(EpisodeStore(store.engine), retention=timedelta(days=retention_days), max_episodes=max_episodes)


def test_a_signature_masks_values_and_keeps_the_sqlstate_or_http_status() -> None:
    pg = signature_of(
        "QueryCanceledError",
        "canceling statement due to statement timeout on 'orders' at id 12345, run 3fa85f645717 (SQLSTATE: 57014)",
        "orders",
    )
    assert pg.code == "57014"
    assert pg.message == "canceling statement due to statement timeout on ? at id N, run <id> (SQLSTATE: N)"
    assert str(pg).startswith("QueryCanceledError on orders [57014]: ")
    http = signature_of("ServerError", 'server error 503: {"error": "busy"}', "orders_api")
    assert (http.code, http.message) == ("503", "server error N: {?: ?}")
    # Two failures that differ only in their values have one signature.
    assert signature_of("E", "row 17 of 'a.csv' is bad", "s") == signature_of("E", "row 9000 of 'b.csv' is bad", "s")


def test_the_hashed_embedding_is_deterministic_normalised_and_near_for_inflections() -> None:
    embedder = HashedEmbedder()
    a, b, c, d = embedder.embed(
        [
            "timeouts on the orders API",
            "TaskTimeout on orders_api",
            "disk full on warehouse",
            "timeouts on the orders API",
        ]
    )
    assert np.array_equal(a, d)
    assert a.dtype == np.float32 and abs(float(np.linalg.norm(a)) - 1) < 1e-6
    assert float(a @ b) > float(a @ c) + 0.2


def _unrelated(rng: random.Random, n: int) -> list[Episode]:
    systems = [f"{w}_{i}" for i, w in enumerate(["billing", "crm", "ledger", "events", "clicks", "hr"] * 5)]
    errors = ["SchemaDriftError", "AuthError", "ResourceExhaustedError", "ParseError", "DiskFullError"]
    episodes = []
    for i in range(n):
        system, error = rng.choice(systems), rng.choice(errors)
        text = f"{error} on {system}: value {rng.randint(0, 10**6)} could not be handled in batch {i}"
        episodes.append(Episode("failure", text, system=system, signature=f"{error} on {system}: value N"))
    return episodes


def test_every_query_naming_a_signature_or_a_system_finds_its_episode_among_1000_unrelated(store_url: str) -> None:
    memory = _memory(url=store_url)
    memory.remember(_unrelated(random.Random(7), 1000))
    targets = {
        "orders_api": "TaskTimeout",
        "payments_db": "QueryCanceledError",
        "inventory_feed": "ServerError",
        "shipping_sftp": "ConnectionResetError",
        "geo_lookup": "RateLimitedError",
    }
    ids = {}
    for system, error in targets.items():
        signature = signature_of(error, f"{error} while reading page 3 of {system}", system)
        ids[system] = memory.remember(
            [Episode("failure", f"{signature}; retry tried 2 times, worked 1", system=system, signature=str(signature))]
        )[0]
    for system, error in targets.items():
        for query in (f"what went wrong with {system}", f"have we seen {error} before", f"{error} on {system}"):
            found = [r.episode.id for r in memory.recall(query, 5)]
            assert ids[system] in found, query
    # Naming the system makes its episode the best, even in other words than its text.
    assert memory.recall("anything about Orders API lately?", 1)[0].episode.id == ids["orders_api"]


def test_recall_filters_by_kind_and_a_forgotten_episode_is_gone() -> None:
    memory = _memory()
    old = datetime.now(UTC) - timedelta(days=30)
    ids = memory.remember(
        [
            Episode("run", "run of pipeline shop succeeded: 10 rows", pipeline="shop", at=old),
            Episode("note", "the shop database is read-only on Sundays", system="shop"),
        ]
    )
    assert [r.episode.kind for r in memory.recall("shop", 5, kind="note")] == ["note"]
    assert memory.forget(datetime.now(UTC) - timedelta(days=1)) == 1
    assert memory.show(ids[0]) is None and memory.show(ids[1]) is not None
    assert [r.episode.id for r in memory.recall("shop", 5)] == [ids[1]]


def test_the_size_limit_and_the_retention_forget_the_oldest_as_new_episodes_come(store_url: str) -> None:
    memory = _memory(max_episodes=3, retention_days=10, url=store_url)
    ancient = Episode("note", "from long ago", at=datetime.now(UTC) - timedelta(days=11))
    first = memory.remember([ancient, *(Episode("note", f"note {i}") for i in range(3))])
    assert memory.store.count() == 3 and memory.show(first[0]) is None
    memory.remember([Episode("note", "newest")])
    assert memory.store.count() == 3 and memory.show(first[1]) is None
    assert memory.recall("note", 10)[0].episode.text in {"note 1", "note 2", "newest"}


def _events(run_id: str, secret: str) -> list:
    a, b = "orders[<p1]>raw", "orders[<p2]>raw"
    split = "orders[<p2.1]>raw"
    message = f"server error 503 from https://u:{secret}@api.example.com/v1 (token {secret})"
    return [
        RunStarted(
            run_id=run_id,
            pipeline="shop",
            spec_sha256="x",
            tasks=[{"id": a, "source": "orders"}, {"id": b, "source": "orders"}],
        ),
        TaskFailed(
            run_id=run_id, task_id=a, attempt=1, error_type="ServerError", remedy=FailureKind.RETRY, message=message
        ),
        Decision(run_id=run_id, subject=f"task {a}", choice="retry", reason="ServerError is transient"),
        TaskFinished(run_id=run_id, task_id=a, rows_read=100, rows_written=100, seconds=2.0),
        TaskFailed(
            run_id=run_id,
            task_id=b,
            attempt=1,
            error_type="TaskTimeout",
            remedy=FailureKind.RETRY,
            message="task timed out",
        ),
        Decision(run_id=run_id, subject=f"task {b}", choice="split", reason="it ran past its timeout"),
        TaskFinished(run_id=run_id, task_id=split, rows_read=50, rows_written=50, seconds=1.0),
        RunFinished(run_id=run_id, status=RunStatus.SUCCEEDED),
    ]


def test_a_run_leaves_its_summary_and_each_failure_with_the_recovery_and_whether_it_worked() -> None:
    memory = _memory()
    recorder = RunMemory(memory)
    for event in _events("r1", "hunter2-secret"):
        recorder.observe(event)
    episodes = {
        e.kind + ":" + (e.detail.get("error_class") or ""): e for e in memory.store.get(list(range(1, 10))).values()
    }
    run = episodes["run:"]
    assert run.detail["sources"]["orders"] == {
        "tasks": 2,
        "rows_read": 150,
        "rows_written": 150,
        "rows_quarantined": 0,
        "bytes": 0,
        "seconds": 3.0,
        "rows_per_second": 50.0,
    }
    served = episodes["failure:ServerError"]
    assert served.system == "orders" and served.detail["code"] == "503"
    assert served.detail["recovery"] == {
        "action": "retry",
        "reason": "ServerError is transient",
        "tried": 1,
        "worked": 1,
    }
    timeout = episodes["failure:TaskTimeout"]
    assert timeout.detail["recovery"]["action"] == "split" and timeout.detail["recovery"]["worked"] == 1
    assert memory.recall("503 from the orders source", 1)[0].episode.id == served.id


def test_a_planted_secret_never_reaches_the_memory_table(store_url: str) -> None:
    secret = "s3cr3t-Pa55word-planted"
    redaction.register(secret)
    memory = _memory(url=store_url)
    recorder = RunMemory(memory)
    for event in _events("r2", secret):
        recorder.observe(event)
    memory.remember([Episode("note", f"the password is {secret}", {"auth": {"token": secret}}, system=secret)])
    with memory.store.engine.connect() as conn:
        rows = conn.execute(sa.select(memory_episodes)).all()
    assert len(rows) == 4
    dumped = json.dumps([[str(v) for v in row] for row in rows])
    assert secret not in dumped and "***" in dumped


def test_memory_that_cannot_write_does_not_fail_the_run(caplog: pytest.LogCaptureFixture) -> None:
    memory = _memory()
    with memory.store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE memory_episodes"))
    recorder = RunMemory(memory)
    for event in _events("r3", "whatever-secret"):
        recorder.observe(event)  # raises nothing
    assert "agent memory skipped an event of run r3" in caplog.text


def test_a_pipeline_run_remembers_itself_and_the_cli_finds_shows_and_forgets_it(tmp_path: Path) -> None:
    from agent_orchestrated_etl.cli import app
    from agent_orchestrated_etl.orchestrator import run_pipeline
    from agent_orchestrated_etl.spec import load_spec

    (tmp_path / "people.csv").write_text("id,name\n1,ada\n2,alan\n3,grace\n")
    spec = tmp_path / "p.yaml"
    spec.write_text(
        "name: people_copy\nsources: {people: {type: file, path: people.csv}}\n"
        "destination: {type: duckdb, path: wh.duckdb, table: people, write: replace}\n"
    )
    result = run_pipeline(load_spec(spec), Settings())
    assert result.ok
    runner = CliRunner()
    found = runner.invoke(app, ["memory", "search", "people_copy runs", "--json"])
    assert found.exit_code == 0, found.output
    hits = json.loads(found.output)
    assert hits[0]["kind"] == "run" and hits[0]["run_id"] == result.run_id
    assert hits[0]["detail"]["sources"]["people"]["rows_written"] == 3
    shown = runner.invoke(app, ["memory", "show", str(hits[0]["id"])])
    assert json.loads(shown.output)["pipeline"] == "people_copy"
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    forgot = runner.invoke(app, ["memory", "forget", "--before", tomorrow])
    assert "forgot 1 episode(s)" in forgot.output
    missing = runner.invoke(app, ["memory", "show", str(hits[0]["id"])])
    assert missing.exit_code != 0 and "no episode" in str(missing.exception)


def test_memory_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent_orchestrated_etl.orchestrator import run_pipeline
    from agent_orchestrated_etl.spec import load_spec

    monkeypatch.setenv("AGENT_ETL_MEMORY_ENABLED", "false")
    (tmp_path / "a.csv").write_text("id\n1\n")
    spec = tmp_path / "p.yaml"
    spec.write_text(
        "name: memory_off\nsources: {a: {type: file, path: a.csv}}\ndestination: {type: duckdb, path: w.duckdb, table: a}\n"
    )
    assert run_pipeline(load_spec(spec), Settings()).ok
    assert memory_for(Settings().store_url).store.count() == 0


def test_mask_message_masks_registered_secrets_first() -> None:
    redaction.register("tok-12345-abcdef")
    assert mask_message("auth with tok-12345-abcdef failed 3 times") == "auth with *** failed N times"


async def test_the_remember_recall_and_profile_tools_keep_and_find_episodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_orchestrated_etl.agents.tools import ToolCall, default_registry
    from agent_orchestrated_etl.execution import RunContext
    from agent_orchestrated_etl.spec import load_spec

    monkeypatch.chdir(tmp_path)  # a spec's relative paths are resolved by the run, which this test does not start
    (tmp_path / "customers.csv").write_text("id,email\n1,ada@example.com\n2,alan@example.com\n")
    spec = tmp_path / "p.yaml"
    spec.write_text(
        "name: crm\nsources: {customers: {type: file, path: customers.csv}}\n"
        "destination: {type: duckdb, path: w.duckdb, table: customers}\n"
    )
    loaded = load_spec(spec).pipeline
    assert loaded is not None
    call = ToolCall(RunContext("run-t1", loaded, Settings(), tmp_path / "run"), progress=None)  # type: ignore[arg-type]
    registry = default_registry()
    kept = await registry.get("remember")({"text": "the crm export drops rows on Sundays", "system": "customers"}, call)
    # By the name of a source of the run (this failed with an AttributeError: the tool gave run.reader a name for a task).
    await registry.get("profile")({"source": "customers"}, call)
    found = await registry.get("recall")({"query": "what do we know about customers", "k": 5}, call)
    by_kind = {e["kind"]: e for e in found.episodes}  # type: ignore[attr-defined]
    assert by_kind["note"]["id"] == kept.id and by_kind["note"]["run_id"] == "run-t1"  # type: ignore[attr-defined]
    profile = by_kind["profile"]
    assert [c["name"] for c in profile["detail"]["columns"]] == ["id", "email"]
    assert profile["detail"]["columns"][1]["pii"] is True
    assert "ada@example.com" not in json.dumps(profile)  # the profile's shape, not its values
    notes = await registry.get("recall")({"query": "customers", "kind": "note"}, call)
    assert [e["kind"] for e in notes.episodes] == ["note"]  # type: ignore[attr-defined]


def test_a_real_failure_and_the_retry_that_fixed_it_are_remembered(tmp_path: Path) -> None:
    from tests.connectors.http_servers import fault_server

    from agent_orchestrated_etl.orchestrator import run_pipeline
    from agent_orchestrated_etl.spec import load_spec

    server, url, api = fault_server(30)
    try:
        api.faults["offset=0"] = ["503"]  # the first page fails once; the task's retry reads it whole
        spec = tmp_path / "p.yaml"
        spec.write_text(
            f"name: orders_feed\nsources:\n  orders_api:\n    type: rest\n    url: {url}/offset\n    records: results\n"
            "    pagination: {type: offset, size_param: limit, total_path: count}\n"
            "    retry: {attempts: 1}\n"
            "destination: {type: duckdb, path: w.duckdb, table: orders}\n"
            "retry: {attempts: 3, backoff_seconds: 0.01, max_backoff_seconds: 0.01}\n"
        )
        result = run_pipeline(load_spec(spec), Settings())
    finally:
        server.shutdown()
    assert result.ok, result
    memory = memory_for(Settings().store_url)
    failure = memory.recall("503 errors on orders_api", 1, kind="failure")[0].episode
    assert failure.run_id == result.run_id and failure.system == "orders_api"
    record = RunStore(Settings().store_url).get_run(result.run_id)
    assert record is not None
    failed = [e for e in record["events"] if e["kind"] == "task_failed"]
    assert failure.detail["code"] == "503" and failure.detail["error_class"] == failed[0]["error_type"]
    assert failure.detail["recovery"]["action"] == "retry" and failure.detail["recovery"]["worked"] == 1
    summary = memory.recall("orders_feed run", 1, kind="run")[0].episode
    assert summary.detail["sources"]["orders_api"]["rows_written"] == 30 and summary.detail["failures"] == 1
