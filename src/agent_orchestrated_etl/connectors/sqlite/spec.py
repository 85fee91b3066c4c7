"""The spec models of SQLite as a source and as a destination."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from agent_orchestrated_etl.connectors.base import DestinationSpecBase
from agent_orchestrated_etl.connectors.sql.common import SQLDestinationFields, SQLSourceSpec
from agent_orchestrated_etl.exceptions import ConfigurationError


def database_path(url: str | None, path: str | None) -> Path:
    if path is None and url is None:
        raise ConfigurationError(
            "a sqlite connector has neither url nor path", hint="give url: sqlite:///file.db or path: file.db"
        )
    return Path(path if path is not None else str(url).removeprefix("sqlite:///")).expanduser()


class SQLiteSourceSpec(SQLSourceSpec):
    type: Literal["sqlite"]
    url: str | None = Field(None, description="sqlite:///relative.db or sqlite:////absolute.db")
    path: str | None = Field(None, description="The database file, instead of url.")

    @model_validator(mode="after")
    def _one_of_each(self) -> SQLiteSourceSpec:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of url or path")
        if self.url is not None and not self.url.startswith("sqlite:///"):
            raise ValueError("url must start with sqlite:/// (e.g. sqlite:///shop.db)")
        return self

    def rebased(self, base: Path) -> SQLiteSourceSpec:
        if self.url is not None and not os.path.isabs(os.path.expanduser(self.url.removeprefix("sqlite:///"))):
            return self.model_copy(update={"url": f"sqlite:///{base / self.url.removeprefix('sqlite:///')}"})
        return super().rebased(base)

    @property
    def database(self) -> Path:
        return database_path(self.url, self.path)

    @property
    def connection_url(self) -> str:
        return f"sqlite:///{self.database}"


class SQLiteDestinationSpec(DestinationSpecBase, SQLDestinationFields):
    type: Literal["sqlite"]
    url: str = Field(description="sqlite:///relative.db or sqlite:////absolute.db; created if missing.")

    def rebased(self, base: Path) -> SQLiteDestinationSpec:
        path = self.url.removeprefix("sqlite:///")
        if not os.path.isabs(os.path.expanduser(path)):
            return self.model_copy(update={"url": f"sqlite:///{base / path}"})
        return self
