import sqlite3
from pathlib import Path

import pytest

from agent_orchestrated_etl.exceptions import ConfigurationError
from agent_orchestrated_etl.store.records import RunStore


def test_a_store_from_an_older_version_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE runs (run_id VARCHAR(64) PRIMARY KEY, pipeline VARCHAR(200) NOT NULL, status VARCHAR(20) NOT NULL, started_at DATETIME NOT NULL)")
    with pytest.raises(ConfigurationError, match="made by an older version") as caught:
        RunStore(f"sqlite:///{path}")
    assert "spec_text" in str(caught.value) and f"mv {path} {path}.old" in str(caught.value)
