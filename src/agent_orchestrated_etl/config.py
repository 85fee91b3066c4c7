"""Runtime settings, from the environment names the architecture document uses.

Resolution order (pydantic-settings): explicit arguments, then environment
variables, then a ``.env`` file in the working directory, then the defaults below.
Secrets are ``SecretStr`` so they never print.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent_orchestrated_etl.exceptions import ConfigurationError
from agent_orchestrated_etl.yaml_locations import SpecLimits

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)I?B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str | int) -> int:
    """'512MB' -> bytes. Binary multiples, as memory limits are usually meant."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (use a number with KB, MB or GB, e.g. 512MB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


class Settings(BaseSettings):
    # Only the documented names: a field name like `home` would also match $HOME.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=False)

    home: Path = Field(
        default=Path("~/.agent-etl"),
        validation_alias="AGENT_ETL_HOME",
        description="Where the metadata store and run workspaces live.",
    )
    log_level: str = Field(default="INFO", validation_alias="AGENT_ETL_LOG_LEVEL")
    max_workers: int = Field(
        default=4,
        ge=1,
        validation_alias="AGENT_ETL_MAX_WORKERS",
        description="How many tasks run at once, across all ETL agents.",
    )
    memory_limit: str = Field(
        default="512MB",
        validation_alias="AGENT_ETL_MEMORY_LIMIT",
        description="Memory budget of the process running the agents (they share it); DuckDB gets a share of it.",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias="DATABASE_URL",
        description="SQLAlchemy URL of the metadata store; a SQLite file under home by default.",
    )
    hub_url: str | None = Field(
        default=None,
        validation_alias="AGENT_ETL_HUB_URL",
        description="The hub's broker, for agents in several processes (redis://host:6379/0); in-process by default.",
    )
    hub_prefix: str = Field(
        default="agent-etl",
        validation_alias="AGENT_ETL_HUB_PREFIX",
        description="Prefix of the hub's keys on its broker, so that several deployments can share one Redis.",
    )
    connection_pool_size: int = Field(default=5, ge=1, validation_alias="CONNECTION_POOL_SIZE")
    connection_timeout: float = Field(default=30, gt=0, validation_alias="CONNECTION_TIMEOUT")
    monitoring_enabled: bool = Field(
        default=True,
        validation_alias="MONITORING_ENABLED",
        description="Sample the agents' CPU and RSS (and alert on the memory limit) and serve Prometheus /metrics.",
    )
    websocket_port: int = Field(default=8765, validation_alias="WEBSOCKET_PORT")
    batch_rows: int = Field(
        # DuckDB's row group size: batches of it load into DuckDB without re-chunking.
        default=122_880,
        ge=1,
        validation_alias="AGENT_ETL_BATCH_ROWS",
        description="Target rows per Arrow record batch read from a source.",
    )

    pushdown: bool = Field(
        default=True,
        validation_alias="AGENT_ETL_PUSHDOWN",
        description=(
            "Let the planner have a destination's engine copy from a source by itself when no Python step needs the"
            " rows, and a DuckDB destination evaluate row and unique checks as SQL over its staged rows; false keeps"
            " every row on the Arrow path."
        ),
    )

    spec_max_bytes: str = Field(
        default="1MB",
        validation_alias="AGENT_ETL_SPEC_MAX_BYTES",
        description="Largest pipeline spec read, in the CLI and in serve.",
    )
    spec_max_nodes: int = Field(
        default=100_000,
        ge=1,
        validation_alias="AGENT_ETL_SPEC_MAX_NODES",
        description="Most YAML nodes a spec may have once its aliases are expanded.",
    )
    spec_max_depth: int = Field(
        default=64, ge=1, validation_alias="AGENT_ETL_SPEC_MAX_DEPTH", description="Deepest nesting of a spec."
    )

    aws_secrets_manager_enabled: bool = Field(
        default=False,
        validation_alias="AWS_SECRETS_MANAGER_ENABLED",
        description="Let ${aws-sm:name#key} references resolve through AWS Secrets Manager.",
    )
    aws_region: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
        description="Region of AWS Secrets Manager; the AWS SDK's own default when unset.",
    )
    encryption_key: SecretStr | None = Field(
        default=None,
        validation_alias="AGENT_ETL_ENCRYPTION_KEY",
        description=(
            "Encryption at rest, opt-in (encryption.py): 32 bytes in base64 or hex, or a secret reference to them;"
            " the Parquet files a file destination stages and commits are encrypted with it."
        ),
    )
    secrets_dirs: str = Field(
        default="/run/secrets",
        validation_alias="AGENT_ETL_SECRETS_DIR",
        description=(
            "Directories (separated by the OS path separator) a spec served by `agent-etl serve` may read"
            " ${file:...} secrets from, besides its data root; the CLI reads any file its user can."
        ),
    )
    secrets_cache_ttl: float = Field(
        default=300,
        ge=0,
        validation_alias="AGENT_ETL_SECRETS_CACHE_TTL",
        description="Seconds a secret fetched from a secrets manager is reused; a rotated value is seen after that.",
    )

    memory_enabled: bool = Field(
        default=True,
        validation_alias="AGENT_ETL_MEMORY_ENABLED",
        description="Let the agents keep episodes of their runs (summaries, failures, recoveries, profiles) in the store.",
    )
    memory_retention_days: float = Field(
        default=180,
        gt=0,
        validation_alias="AGENT_ETL_MEMORY_RETENTION_DAYS",
        description="Episodes older than this are forgotten when new ones are written.",
    )
    memory_max_episodes: int = Field(
        default=100_000,
        ge=1,
        validation_alias="AGENT_ETL_MEMORY_MAX_EPISODES",
        description="Most episodes kept; the oldest go first. Recall holds their vectors in memory (512 bytes each).",
    )

    @field_validator("memory_limit", "spec_max_bytes")
    @classmethod
    def _check_size(cls, value: str) -> str:
        parse_size(value)
        return value

    @cached_property
    def memory_limit_bytes(self) -> int:
        return parse_size(self.memory_limit)

    @property
    def spec_limits(self) -> SpecLimits:
        return SpecLimits(parse_size(self.spec_max_bytes), self.spec_max_nodes, self.spec_max_depth)

    @property
    def secrets_roots(self) -> list[Path]:
        return [Path(part).expanduser() for part in self.secrets_dirs.split(os.pathsep) if part]

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser()

    @property
    def store_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home_dir / 'agent-etl.db'}"


def load_settings() -> Settings:
    """Settings from the environment, with a readable error naming the variable at fault."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(
            f"invalid settings: {problems}", hint="fix the environment variable(s) named"
        ) from None
