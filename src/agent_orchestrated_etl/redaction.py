"""The one redaction path: every resolved secret is registered here once, and masked wherever we write or serve.

A secret is a value a reference resolves to (``${env:NAME}``, ``${file:...}``,
``${aws-sm:...}``: secrets.py), a ``SecretStr`` field, the value of a key named like
a credential (``password``, ``token``, ``api_key``, ``Authorization``...) or the
password in a URL's userinfo. ``spec.resolve_env`` and ``secrets.resolve``
register them when a run resolves its spec; the registry lives as long as
the process, so a value is still masked in what a run leaves behind after it.

What passes through ``redact``: every log record (``RedactingFilter`` on the
root handler, so third-party loggers too), every hub message and stored event
(so the store, the API, ``/ws`` and alerts), and the CLI's error lines and
tracebacks. Values shorter than ``MIN_LENGTH`` are not masked: replacing
``"1"`` everywhere would garble everything else.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, quote_plus, urlsplit

if TYPE_CHECKING:  # pydantic itself is not needed to redact: `agent-etl --help` starts without it
    from pydantic import BaseModel

MASK = "***"
MIN_LENGTH = 4

_CREDENTIAL_KEY = re.compile(
    r"(?:^|_)(?:password|passwd|pwd|secret|token|api_?key|apikey|key|authorization|credentials?|cookie|session)$"
)
_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register(value: str) -> None:
    """Mask ``value`` from now on, as given and as it appears percent-encoded in a URL."""
    if not isinstance(value, str) or len(value) < MIN_LENGTH:
        return
    forms = {value, quote(value, safe=""), quote_plus(value), quote(value)}
    global _pattern
    with _lock:
        if forms <= _secrets:
            return
        _secrets.update(f for f in forms if len(f) >= MIN_LENGTH)
        # Longest first: a secret that contains another is masked whole.
        _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def is_credential_key(path: str) -> bool:
    """Whether the last key of a dotted spec path (``sources.api.auth.value``) names a credential."""
    if path.endswith("]"):
        return False  # an item of a list under such a key is a column name (primary_key: [id]), not a credential
    parts = [p for p in re.split(r"[.\[\]]+", path) if p and not p.isdigit()]
    if not parts:
        return False
    key = parts[-1].lower().replace("-", "_")
    return bool(_CREDENTIAL_KEY.search(key)) or (key == "value" and len(parts) > 1 and parts[-2].lower() == "auth")


def register_resolved(path: str, value: str) -> None:
    """Register what in a resolved spec string is secret: all of it under a credential key, a URL's password."""
    if is_credential_key(path):
        register(value)
        scheme, _, rest = value.partition(" ")
        if rest and scheme.lower() in ("bearer", "basic", "token"):
            register(rest.strip())
    if "://" in value and "@" in value:
        try:
            password = urlsplit(value).password
        except ValueError:
            password = None
        if password:
            register(password)


def forget() -> None:
    """Empty the registry: for tests, each of which is a run of its own."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def redact(text: str) -> str:
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def redact_data(value: Any) -> Any:
    """``value`` with every string in it redacted; the same object when nothing changed."""
    if _pattern is None:
        return value
    if isinstance(value, str):
        masked = redact(value)
        return value if masked == value else masked  # an enum member (a StrEnum) stays one
    if isinstance(value, dict):
        items = {k: redact_data(v) for k, v in value.items()}
        return value if all(items[k] is value[k] for k in value) else items
    if isinstance(value, list | tuple):
        items_ = [redact_data(v) for v in value]
        return value if all(a is b for a, b in zip(items_, value, strict=True)) else type(value)(items_)
    return value


M = TypeVar("M", bound="BaseModel")


def redact_model(message: M) -> M:
    """A message with every string field redacted: the same object when it holds no secret."""
    if _pattern is None:
        return message
    changed = {}
    for name, value in message.__dict__.items():
        redacted = redact_data(value)
        if redacted is not value:
            changed[name] = redacted
    return message.model_copy(update=changed) if changed else message


class RedactingFilter(logging.Filter):
    """Masks registered secrets in a record's message and traceback before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        try:
            message = record.getMessage()
        except (
            TypeError,
            ValueError,
        ):  # arguments that do not fit the format: keep both, masked, rather than fail the caller
            message = redact(str(record.msg)) + " " + redact(repr(record.args))
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            # Rendered here as text: a handler rendering the exception itself would print its message unmasked.
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
