"""Finding the records in a JSON body by a dotted path, and refusing a path that is not there.

A wrong ``records:`` path used to look like an empty source, and an empty
source under ``write: replace`` empties the target. So a path that is absent
from a response fails the read, naming the keys that do exist where the walk
stopped; a path that holds a list (an empty one too) or one object is records.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agent_orchestrated_etl.exceptions import ConfigurationError
from agent_orchestrated_etl.redaction import MASK, is_credential_key, redact

_MISSING = object()


def dig(body: Any, path: str | None) -> Any:
    """The value at a dotted path (``data.items``) of a JSON body, or None."""
    value = _walk(body, path)[0]
    return None if value is _MISSING else value


def _walk(body: Any, path: str | None) -> tuple[Any, list[str], Any]:
    """(the value at ``path`` or _MISSING, the parts walked before it went missing, the value reached there)."""
    value, walked = body, list[str]()
    for part in path.split(".") if path else []:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING, walked, value
        walked.append(part)
    return value, walked, value


def value_at(body: Any, path: str, *, key: str, where: str, page: int, hint: str) -> Any:
    """The value at ``path`` of a page's body; raises ConfigurationError, naming the keys there are, when it is absent.

    ``key`` is the spec key that holds the path (``records``), ``page`` the
    page's number, and ``hint`` the fix, for the message.
    """
    value, walked, reached = _walk(body, path)
    if value is _MISSING:
        raise ConfigurationError(
            f"{key}: {path} is not in the response of page {page}: {_missing(walked, path, reached)}",
            where=where,
            hint=hint,
        )
    return value


def records_at(body: Any, path: str | None, *, key: str, where: str, page: int) -> list[Any]:
    """The records of a page: the list at ``path``, or the one object there; no path means the whole body.

    Raises ConfigurationError when the path is absent from the body or holds
    something else than a list or an object (a number, a string, null).
    """
    if path is None:
        return body if isinstance(body, list) else [body]  # the converter quarantines what is not an object
    hint = f"set `{key}:` to the dotted path of the record list in the response"
    value = value_at(body, path, key=key, where=where, page=page, hint=hint)
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    raise ConfigurationError(
        f"{key}: {path} holds {kind(value)} in the response of page {page}, not a list of records or an object",
        where=where,
        hint=hint,
    )


def _missing(walked: list[str], path: str, reached: Any) -> str:
    at = ".".join(walked) or "the top level"
    wanted = path.split(".")[len(walked)]
    if isinstance(reached, dict):
        keys = [str(k) for k in reached]
        listed = ", ".join(keys[:20]) + (f" and {len(keys) - 20} more" if len(keys) > 20 else "") if keys else "none"
        return f"{at} has no key {wanted!r} (its keys: {listed})"
    return f"{at} is {kind(reached)}, which has no key {wanted!r}"


def kind(value: Any) -> str:
    """A JSON value's type in a message: ``a number ('12')``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return f"an {'object' if isinstance(value, dict) else 'array'} of {len(value)}"
    names = {bool: "a boolean", str: "a string", int: "a number", float: "a number"}
    name = names.get(type(value), type(value).__name__)
    return f"{name} ({str(value)[:40]!r})"


def shown_url(url: str) -> str:
    """A URL fit for a message: registered secrets masked, and query values under credential names."""
    parts = urlsplit(url)
    query = [(k, MASK if is_credential_key(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return redact(urlunsplit(parts._replace(query=urlencode(query, safe="*")))) if parts.query else redact(url)
