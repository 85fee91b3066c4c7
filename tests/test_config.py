import pytest

from agent_orchestrated_etl.config import Settings, load_settings, parse_size
from agent_orchestrated_etl.exceptions import ConfigurationError


def test_only_the_documented_environment_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENT_ETL_HOME")
    monkeypatch.setenv("HOME", "/somewhere/else")
    monkeypatch.setenv("BATCH_ROWS", "5")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    settings = Settings()
    assert str(settings.home) == "~/.agent-etl"
    assert settings.batch_rows == 122_880
    assert settings.log_level == "INFO"
    monkeypatch.setenv("AGENT_ETL_MAX_WORKERS", "7")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    assert (Settings().max_workers, Settings().store_url) == (7, "postgresql://u@h/db")


def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_ETL_MEMORY_LIMIT", "lots")
    with pytest.raises(ConfigurationError, match="AGENT_ETL_MEMORY_LIMIT"):
        load_settings()


def test_sizes() -> None:
    assert parse_size("512MB") == 512 * 1024**2
    assert parse_size("1.5 GiB") == int(1.5 * 1024**3)
    with pytest.raises(ValueError, match="not a size"):
        parse_size("big")
