"""A path the user must fix (permissions, a read-only or full disk, a file where a folder belongs)
is a configuration error naming the path and the fix, on every destination and source, never a bug."""

import errno
import json
import os
from pathlib import Path

import pytest
from tests.test_run_failures import agent_etl

SPEC = """\
name: fs
sources:
  people: {type: file, path: people.csv}
destination: {type: file, path: out}
"""


def test_local_os_errors_are_configuration_errors_naming_the_path() -> None:
    from agent_orchestrated_etl.exceptions import ConfigurationError, from_os_error
    from agent_orchestrated_etl.model.vocabulary import Remedy

    denied = from_os_error(PermissionError(errno.EACCES, "Permission denied", "/data/out"), where="task a[0]>b")
    assert isinstance(denied, ConfigurationError) and denied.next_remedy is Remedy.FIX_CONFIG
    assert (
        str(denied)
        == "task a[0]>b: permission denied: /data/out (give this user access to it, or point `path:` elsewhere)"
    )
    full = from_os_error(OSError(errno.ENOSPC, "No space left on device", "/data/out/part-0.parquet"))
    assert (
        str(full)
        == "no space left on the device: /data/out/part-0.parquet (free space there, or point `path:` elsewhere)"
    )
    read_only = from_os_error(OSError(errno.EROFS, "Read-only file system"))
    assert (
        str(read_only)
        == "read-only file system ([Errno 30] Read-only file system) (mount it writable, or point `path:` elsewhere)"
    )
    assert from_os_error(OSError("something else")) is None  # not ours to guess: stays a bug report


def test_a_file_where_the_staging_folder_belongs_fails_with_the_path_not_as_a_bug(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("id\n1\n2\n")
    (tmp_path / "p.yaml").write_text(SPEC)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "_staging").write_text("")  # every write below it fails with ENOTDIR mid-task
    result = agent_etl("run", "p.yaml", cwd=tmp_path)
    assert result.returncode == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith(
        "error: task people[0]>file0: a file stands where a folder is needed ([Errno 20] Cannot create directory "
    )
    assert error.endswith("Not a directory) (check `path:` in the spec)") and f"'{tmp_path}/out/_staging/" in error
    assert "bug" not in result.stderr and "Traceback" not in result.stderr and "agent-etl resume" not in result.stderr
    failure = json.loads(agent_etl("run", "--json", "p.yaml", cwd=tmp_path).stdout)["failure"]
    assert (failure["remedy"], failure["error_type"], failure["where"]) == (
        "fix_config",
        "ConfigurationError",
        "task people[0]>file0",
    )


def test_a_file_where_the_output_folder_belongs_is_not_retried_as_a_connection_failure(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("id\n1\n2\n")
    (tmp_path / "p.yaml").write_text(SPEC)
    (tmp_path / "out").write_text("")
    result = agent_etl("run", "p.yaml", cwd=tmp_path)
    assert result.returncode == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error == (
        f"error: {tmp_path}/out: something of another kind exists there already ([Errno 17] Cannot create directory '{tmp_path}/out': "
        "non-directory entry exists. Detail: [errno 17] File exists) (check `path:` in the spec)"
    )
    assert "agent-etl resume" not in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_output_folder_is_a_configuration_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("id\n1\n2\n")
    (tmp_path / "p.yaml").write_text(SPEC)
    (tmp_path / "out").mkdir()
    (tmp_path / "out").chmod(0o555)
    try:
        result = agent_etl("run", "p.yaml", cwd=tmp_path)
    finally:
        (tmp_path / "out").chmod(0o755)
    assert result.returncode == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert (
        "permission denied" in error
        and f"{tmp_path}/out" in error
        and error.endswith("(give this user access to it, or point `path:` elsewhere)")
    )
    assert "bug" not in result.stderr and "Traceback" not in result.stderr
