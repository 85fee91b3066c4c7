"""What a user sees when a run fails: one line naming the source and the cause, and the record."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.store.records import RunStore

MISSING_FILE = """\
name: missing_file
sources:
  customers: {type: file, path: nowhere/customers.csv}
destination: {type: duckdb, path: out.duckdb, table: customers}
"""


def agent_etl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps tables to 80 columns when output is not a terminal
    return subprocess.run(
        [sys.executable, "-m", "agent_orchestrated_etl", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_missing_file_fails_with_one_line_and_a_recorded_decision(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(MISSING_FILE)
    result = agent_etl("run", "p.yaml", cwd=tmp_path)
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error_lines == [
        f"error: source customers: file not found: {tmp_path}/nowhere/customers.csv (check `path:` in the spec)"
    ]
    assert "Traceback" not in result.stderr

    store = RunStore(Settings().store_url)
    [run] = store.list_runs()
    record = store.get_run(run["run_id"])
    assert record["status"] == "failed"
    [task] = record["tasks"]
    assert (task["task_id"], task["status"]) == ("customers[0]>customers", "failed")
    assert "file not found" in task["error"]
    [failure] = [
        e
        for e in record["events"]
        if e["kind"] == "decision" and e["subject"] == "task customers[0]>customers" and e["choice"] == "fail"
    ]
    assert failure["reason"] == "SourceNotFoundError: retrying cannot help"
    assert not (tmp_path / "out.duckdb").exists() or "customers" not in _tables(tmp_path / "out.duckdb")

    shown = agent_etl("runs", "show", run["run_id"][:17], cwd=tmp_path)
    assert shown.returncode == 0
    assert "customers[0]>customers" in shown.stdout and "failed" in shown.stdout


def test_a_failed_quality_gate_says_to_fix_the_data_not_to_resume(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("id,email\n1,a@x\n2,\n")
    (tmp_path / "p.yaml").write_text(
        "name: gate\nsources:\n  people: {type: file, path: people.csv}\n"
        "quality:\n  - not_null: [email]\ndestination: {type: duckdb, path: out.duckdb, table: people}\n"
    )
    result = agent_etl("run", "p.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "quality checks failed: not_null(email)" in result.stderr
    assert "fix the data, the check or the target and run again; agent-etl runs discard" in result.stderr
    assert "agent-etl resume" not in result.stderr

    (tmp_path / "p.yaml").write_text(MISSING_FILE)
    failed = agent_etl("run", "p.yaml", cwd=tmp_path)
    # A missing file is no transient failure: resume would meet it again.
    [run] = [r for r in RunStore(Settings().store_url).list_runs() if r["pipeline"] == "missing_file"]
    assert (
        failed.stderr.splitlines()[-1]
        == f"see the decisions: agent-etl runs show {run['run_id']}; fix what the error names (the spec, a path, a"
        f" table, the environment) and run again; agent-etl runs discard {run['run_id']} drops its staged output;"
        f" then: agent-etl run {tmp_path}/p.yaml"
    )


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = agent_etl("--debug", "run", "does-not-exist.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: spec file not found: does-not-exist.yaml (check the path)"


def _tables(path: Path) -> set[str]:
    import duckdb

    return {
        r[0]
        for r in duckdb.connect(str(path), read_only=True).execute("SELECT table_name FROM duckdb_tables()").fetchall()
    }


def test_usage_errors_say_what_is_missing_without_a_traceback(tmp_path: Path) -> None:
    result = agent_etl("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "Missing argument 'spec'" in result.stderr and "Traceback" not in result.stderr
    result = agent_etl("bogus", cwd=tmp_path)
    assert result.returncode == 2 and "No such command 'bogus'" in result.stderr


def test_the_next_step_follows_the_errors_branch_not_its_text() -> None:
    from agent_orchestrated_etl.exceptions import (
        AuthError,
        ConnectionFailedError,
        DataError,
        InternalError,
        SourceNotFoundError,
        StepError,
    )
    from agent_orchestrated_etl.model.failure import failure_of
    from agent_orchestrated_etl.model.vocabulary import Remedy
    from agent_orchestrated_etl.store.durability import PipelineBusyError

    def step(error: BaseException, resumed: bool = False) -> tuple[Remedy, str]:
        failure = failure_of(error, run_id="r1", spec_file="p.yaml", resumed=resumed)
        return failure.remedy, failure.next_step

    discard = "agent-etl runs discard r1 drops its staged output; then: agent-etl run p.yaml"
    assert step(ConnectionFailedError("connection refused")) == (
        Remedy.RESUME,
        "go on from the checkpoints: agent-etl resume r1",
    )
    assert step(DataError("bad rows")) == (
        Remedy.FIX_DATA,
        f"fix the data, the check or the target and run again; {discard}",
    )
    # "resume" in the text changes nothing: the branch decides.
    config = (
        Remedy.FIX_CONFIG,
        f"fix what the error names (the spec, a path, a table, the environment) and run again; {discard}",
    )
    assert step(StepError("resume later", path=("quality", 0), where="check x")) == config
    assert step(SourceNotFoundError("file not found")) == config
    assert step(AuthError("password authentication failed")) == (
        Remedy.FIX_AUTH,
        f"fix the credentials (the variables or secret the spec names) and run again; {discard}",
    )
    assert (
        step(InternalError("oops"))
        == step(KeyError("x"))
        == (Remedy.BUG, "this is a bug in agent-etl; please report it with run r1")
    )
    busy = PipelineBusyError("pipeline p is already running as run r0", holder_run_id="r0")
    assert step(busy) == (
        Remedy.WAIT,
        (
            "wait for run r0 to finish (agent-etl runs show r0), then run again (agent-etl run p.yaml); run r1 never"
            " started, so there is nothing to resume"
        ),
    )
    assert step(busy, resumed=True) == (
        Remedy.WAIT,
        "wait for run r0 to finish (agent-etl runs show r0), then agent-etl resume r1",
    )


GOOD = """\
name: busy
sources:
  people: {type: file, path: people.csv}
destination: {type: duckdb, path: out.duckdb, table: people}
"""


def test_a_refused_run_says_to_wait_for_the_holder_and_cannot_be_resumed(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("id\n1\n2\n")
    (tmp_path / "p.yaml").write_text(GOOD)
    store = RunStore(Settings().store_url)
    store.durability.acquire("busy", "20260101T000000-holder")  # held by this live process
    refused = agent_etl("run", "p.yaml", cwd=tmp_path)
    assert refused.returncode == 1
    [run] = store.list_runs()
    refused_id = run["run_id"]
    assert refused.stderr.splitlines()[-2:] == [
        (
            f"error: pipeline busy is already running as run 20260101T000000-holder (pid {os.getpid()} on"
            f" {socket.gethostname()}) (two runs of one pipeline never load at once)"
        ),
        (
            f"see the decisions: agent-etl runs show {refused_id}; wait for run 20260101T000000-holder to finish"
            f" (agent-etl runs show 20260101T000000-holder), then run again (agent-etl run {tmp_path}/p.yaml); run"
            f" {refused_id} never started, so there is nothing to resume"
        ),
    ]
    as_json = json.loads(agent_etl("run", "--json", "p.yaml", cwd=tmp_path).stdout)
    assert (as_json["ok"], as_json["status"], as_json["failure"]["remedy"], as_json["failure"]["holder_run_id"]) == (
        False,
        "failed",
        "wait",
        "20260101T000000-holder",
    )

    store.durability.release("busy", "20260101T000000-holder")  # the holder finished
    resumed = agent_etl("resume", refused_id, cwd=tmp_path)
    assert resumed.returncode == 1
    assert resumed.stderr.splitlines() == [
        f"error: run {refused_id} never started: it was refused because run 20260101T000000-holder held pipeline busy;"
        f" there is nothing to resume (start a new run once that one has finished: agent-etl run {tmp_path}/p.yaml)"
    ]
    assert not (tmp_path / "out.duckdb").exists()  # resume loaded nothing
    shown = agent_etl("runs", "show", refused_id, cwd=tmp_path)
    assert "next step: wait for run 20260101T000000-holder to finish" in shown.stdout
    assert (
        json.loads(agent_etl("runs", "show", "--json", refused_id, cwd=tmp_path).stdout)["failure"]["remedy"] == "wait"
    )


def test_every_outcome_under_json_is_one_document_on_stdout(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: bad\nsources:\n  people: {type: file}\ndestination: {type: duckdb, path: out.duckdb, table: people}\n"
    )
    for command in ("run", "validate"):
        result = agent_etl(command, "--json", "bad.yaml", cwd=tmp_path)
        assert result.returncode == 2
        document = json.loads(result.stdout)
        assert document["problems"] == [
            {"file": "bad.yaml", "line": 3, "path": "sources.people.path", "message": "field required"}
        ]
    assert json.loads(agent_etl("run", "--json", "bad.yaml", cwd=tmp_path).stdout)["failure"]["remedy"] == "fix_config"

    missing = agent_etl("run", "--json", "nowhere.yaml", cwd=tmp_path)
    assert missing.returncode == 1
    assert json.loads(missing.stdout) == {
        "ok": False,
        "error": "spec file not found: nowhere.yaml",
        "failure": {
            "remedy": "fix_config",
            "error_type": "ConfigurationError",
            "message": "spec file not found: nowhere.yaml",
            "where": None,
            "holder_run_id": None,
            "next_step": "check the path",
        },
    }
    validated = agent_etl("validate", "--json", "nowhere.yaml", cwd=tmp_path)
    assert validated.returncode == 2
    assert json.loads(validated.stdout) == {
        "valid": False,
        "problems": [
            {
                "file": "nowhere.yaml",
                "line": None,
                "path": "",
                "message": "spec file not found: nowhere.yaml (check the path)",
            }
        ],
        "notes": [],
    }
    for args in (("resume", "--json", "nope"), ("runs", "show", "--json", "nope")):
        result = agent_etl(*args, cwd=tmp_path)
        assert result.returncode == 1
        assert json.loads(result.stdout)["error"] == "no run 'nope' in the store"
    usage = agent_etl("run", "--json", cwd=tmp_path)
    assert usage.returncode == 2 and json.loads(usage.stdout)["error"] == "Missing argument 'spec'."

    (tmp_path / "p.yaml").write_text(MISSING_FILE)
    failed = agent_etl("run", "--json", "p.yaml", cwd=tmp_path)
    assert failed.returncode == 1
    document = json.loads(failed.stdout)
    assert (
        document["ok"],
        document["status"],
        document["failure"]["remedy"],
        document["failure"]["error_type"],
        document["failure"]["where"],
    ) == (
        False,
        "failed",
        "fix_config",
        "SourceNotFoundError",
        "task customers[0]>customers",
    )


def test_the_cli_advice_is_the_typed_failures_next_step_not_the_decisions_or_the_error() -> None:
    from agent_orchestrated_etl.cli import next_step
    from agent_orchestrated_etl.model.failure import make_failure
    from agent_orchestrated_etl.model.vocabulary import Remedy, RunStatus
    from agent_orchestrated_etl.orchestrator import RunResult

    # Text that a guess would read as "resume": a retry decision and a transient-sounding error.
    transient = "ConnectionFailedError is transient"
    decisions = [{"by": "orchestrator", "at": "", "subject": "task a", "choice": "retry", "reason": transient}]
    for remedy in Remedy:
        message = "connection refused, retry later"
        failure = make_failure(remedy, "ConnectionFailedError", message, run_id="r1", spec_file="p", holder_run_id="r0")
        result = RunResult("r1", "p", RunStatus.FAILED, "refused, resume later", 1.0, [], decisions, [], failure)
        assert next_step(result) == failure.next_step
        assert ("agent-etl resume r1" in next_step(result)) is (remedy is Remedy.RESUME)
        assert result.to_dict()["failure"] == {**failure.model_dump(), "remedy": remedy.value}
