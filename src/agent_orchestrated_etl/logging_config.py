"""Logging for the CLI and the server: one handler on stderr, level from AGENT_ETL_LOG_LEVEL.

Run events already tell the story of a run; logs are for operators and
debugging, so they stay quiet at the default level. Every record, of any
logger, passes the redaction filter on that handler before it is written.
"""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

from agent_orchestrated_etl.exceptions import ConfigurationError
from agent_orchestrated_etl.redaction import RedactingFilter

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def setup_logging(level: str) -> None:
    name = level.upper()
    if name not in LEVELS:
        raise ConfigurationError(
            f"unknown log level {level!r}", where="AGENT_ETL_LOG_LEVEL", hint=f"use one of {', '.join(LEVELS)}"
        )
    # On stderr: stdout carries what a command prints, such as --json output.
    handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=name == "DEBUG", markup=False)
    handler.addFilter(RedactingFilter())
    logging.basicConfig(level=name, format="%(name)s: %(message)s", handlers=[handler], force=True)
    # Alembic says which dialect it found at every open of the store; store/migrate.py logs what an upgrade does.
    # aiohttp's client logs (aiohttp.client, .connector, asyncio's unclosed-session warnings) are quiet too;
    # what they do say passes the redaction filter like any record. httpx is no longer ours but a
    # library a user adds may still use it, and it logs every URL, query string included, at INFO.
    # Under DEBUG they inherit the root's level again (setup_logging may run more than once in a process).
    for noisy in ("alembic", "aiohttp", "httpx"):
        logging.getLogger(noisy).setLevel(logging.NOTSET if name == "DEBUG" else logging.WARNING)
    # botocore logs each response's body at DEBUG: a secret's value from AWS Secrets Manager, the keys STS
    # gives for a role, before we have them to register for masking. So never below INFO, even under --debug.
    for wire in ("botocore", "boto3"):
        logging.getLogger(wire).setLevel(logging.INFO if name == "DEBUG" else logging.NOTSET)
