"""Secret providers: what ``${env:NAME}``, ``${file:/run/secrets/pg}`` and ``${aws-sm:name#key}`` resolve to.

A reference names its provider. ``resolve`` replaces every reference in a
string and registers each value it gives for redaction (redaction.py), so
whichever provider a secret came from, it is masked in everything written or
served. References are resolved when a run starts (spec.resolve_env) and when a
process opens its store or serves its API (DATABASE_URL, AGENT_ETL_API_TOKEN);
the spec and the settings are kept as written, never resolved.

- ``env``: an environment variable.
- ``file``: a file's text, one trailing newline stripped (Docker and Kubernetes secrets).
- ``aws-sm``: an AWS Secrets Manager secret's SecretString, or with ``#key`` one key of
  it as JSON; enabled by AWS_SECRETS_MANAGER_ENABLED, in AWS_REGION, through the AWS
  credential chain and AWS_ENDPOINT_URL. Values are kept for AGENT_ETL_SECRETS_CACHE_TTL
  seconds, so a rotated secret is picked up by the runs that start after that.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from agent_orchestrated_etl import confinement, redaction
from agent_orchestrated_etl.config import load_settings
from agent_orchestrated_etl.exceptions import (
    AuthError,
    ConfigurationError,
    ConnectionFailedError,
    MissingDependencyError,
)


class Provider(Protocol):
    pattern: str  # what a reference to this provider looks like after "${name:"

    def resolve(self, reference: str, *, where: str) -> str:
        """The secret's value; raises an AgentETLError naming the reference, never a value."""

    def problem(self, reference: str) -> str | None:
        """Why the reference cannot be resolved now, for `validate`; None when it can."""


class EnvProvider:
    pattern = r"[A-Za-z_][A-Za-z0-9_]*"

    def resolve(self, reference: str, *, where: str) -> str:
        if reference not in os.environ:
            raise ConfigurationError(
                f"environment variable {reference} is not set",
                where=where,
                hint=f"export {reference}=... before the run",
            )
        return os.environ[reference]

    def problem(self, reference: str) -> str | None:
        if reference in os.environ:
            return None
        return f"environment variable {reference} is not set (export {reference}=... before the run)"


class FileProvider:
    pattern = r"[^}\s]+"

    def resolve(self, reference: str, *, where: str, confined: bool = False) -> str:
        """``confined``: a spec's reference, which a confined process (serve) reads only under its secrets roots."""
        path = Path(reference).expanduser()
        try:
            text = confinement.read_secret_file(path) if confined else path.read_text(encoding="utf-8")
            return text.rstrip("\r\n")
        except FileNotFoundError:
            why = "does not exist"
        except confinement.SecretOutsideRoots as exc:
            raise ConfigurationError(
                f"secret file of ${{file:{reference}}} {exc}",
                where=where,
                hint="a served spec reads secrets only there: mount the secret under one, or set AGENT_ETL_SECRETS_DIR",
            ) from None
        except IsADirectoryError:
            why = "is a directory"
        except PermissionError:
            why = f"cannot be read by this process (uid {os.getuid()})"
        except UnicodeDecodeError:
            why = "is not UTF-8 text"
        except OSError as exc:
            why = f"cannot be read ({exc.strerror})"
        raise ConfigurationError(
            f"secret file of ${{file:{reference}}} {why}",
            where=where,
            hint="mount the secret at that path, or fix the reference",
        )

    def problem(self, reference: str) -> str | None:
        try:
            self.resolve(reference, where="", confined=True)  # asked of a spec's references (spec.unset_variables)
        except ConfigurationError as exc:
            return f"{exc.message} ({exc.hint})"
        return None


class AwsSecretsManager:
    """SecretString values by name, kept for the cache TTL; one client per region, shared by threads."""

    pattern = r"[A-Za-z0-9/_+=.@!-]+(?:#[^}]+)?"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str | None, Any] = {}
        self._cache: dict[tuple[str | None, str], tuple[float, str]] = {}

    def resolve(self, reference: str, *, where: str) -> str:
        name, _, key = reference.partition("#")
        text = self._secret_string(name, where)
        if not key:
            return text
        shown = f"${{aws-sm:{reference}}}"
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise ConfigurationError(
                f"{shown}: secret {name!r} is not a JSON object, so it has no key {key!r}",
                where=where,
                hint=f"drop #{key} to take the whole secret, or store it as JSON",
            )
        if key not in document:
            raise ConfigurationError(
                f"{shown}: secret {name!r} has no key {key!r} (its keys: {', '.join(sorted(document)) or 'none'})",
                where=where,
                hint="fix the key after #",
            )
        value = document[key]
        return value if isinstance(value, str) else json.dumps(value)

    def problem(self, reference: str) -> str | None:
        try:
            self.resolve(reference, where="")
        except (ConfigurationError, ConnectionFailedError) as exc:
            return f"{exc.message} ({exc.hint})" if exc.hint else exc.message
        return None

    def forget(self) -> None:
        """Drop cached values and clients: for tests that point AWS_ENDPOINT_URL at a new server."""
        with self._lock:
            self._clients.clear()
            self._cache.clear()

    def _secret_string(self, name: str, where: str) -> str:
        settings = load_settings()
        shown = f"${{aws-sm:{name}}}"
        if not settings.aws_secrets_manager_enabled:
            raise ConfigurationError(
                f"{shown}: AWS Secrets Manager is not enabled",
                where=where,
                hint="set AWS_SECRETS_MANAGER_ENABLED=true (and AWS_REGION)",
            )
        region = settings.aws_region
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get((region, name))
        if cached is not None and now - cached[0] < settings.secrets_cache_ttl:
            return cached[1]
        client = self._client(region)
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

        try:
            answer = client.get_secret_value(SecretId=name)
        except ClientError as exc:
            raise _client_error(exc, shown, region, where) from None
        except NoCredentialsError:
            raise AuthError(
                f"{shown}: no AWS credentials found",
                where=where,
                hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or run with an instance or task role",
            ) from None
        except EndpointConnectionError as exc:
            raise ConnectionFailedError(
                f"{shown}: cannot reach AWS Secrets Manager at {exc.kwargs.get('endpoint_url')}",
                where=where,
                hint="check AWS_REGION and AWS_ENDPOINT_URL",
            ) from None
        except BotoCoreError as exc:
            raise ConfigurationError(f"{shown}: {exc}", where=where, hint="check the AWS settings") from None
        if "SecretString" not in answer:
            raise ConfigurationError(
                f"{shown}: secret has a binary value only", where=where, hint="store the secret as a SecretString"
            )
        text = str(answer["SecretString"])
        with self._lock:
            self._cache[(region, name)] = (now, text)
        return text

    def _client(self, region: str | None) -> Any:
        with self._lock:
            if region not in self._clients:
                try:
                    import boto3
                except ImportError:
                    raise MissingDependencyError("AWS Secrets Manager (${aws-sm:...})", "aws") from None
                # boto3 reads AWS_ENDPOINT_URL(_SECRETS_MANAGER) and the credential chain itself.
                self._clients[region] = boto3.session.Session(region_name=region).client("secretsmanager")
            return self._clients[region]


def _client_error(exc: Any, shown: str, region: str | None, where: str) -> Exception:
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "Error")), str(error.get("Message", ""))
    if found := re.search(r"<Code>([^<]*)</Code>.*?<Message>([^<]*)</Message>", message, re.DOTALL):
        code, message = found.groups()  # an XML answer where JSON was expected (moto sends one on a refusal)
    # The message names the secret and the caller, never a value: AWS does not send it on a refusal.
    detail = f"{code}: {' '.join(message.split())}".rstrip(": ")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "ResourceNotFoundException":
        return ConfigurationError(
            f"{shown}: AWS Secrets Manager has no such secret in region {region} ({detail})",
            where=where,
            hint="create the secret, or fix its name or AWS_REGION",
        )
    if status in (401, 403) or code in _REFUSALS:
        return AuthError(
            f"{shown}: AWS Secrets Manager refused access ({detail})",
            where=where,
            hint="grant secretsmanager:GetSecretValue on the secret to these credentials, or fix them",
        )
    return ConnectionFailedError(f"{shown}: AWS Secrets Manager failed ({detail})", where=where)


_REFUSALS = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
    }
)


PROVIDERS: dict[str, Provider] = {"env": EnvProvider(), "file": FileProvider(), "aws-sm": AwsSecretsManager()}
_pattern: re.Pattern[str] | None = None


def register_provider(name: str, provider: Provider) -> None:
    """Make ``${name:...}`` resolve through ``provider``."""
    global _pattern
    PROVIDERS[name] = provider
    _pattern = None


def reference_pattern() -> re.Pattern[str]:
    """A reference: group ``provider`` names it, ``reference`` is what follows the colon."""
    global _pattern
    if _pattern is None:
        names = "|".join(
            f"(?P<p{i}>{re.escape(name)}):(?P<r{i}>{provider.pattern})"
            for i, (name, provider) in enumerate(PROVIDERS.items())
        )
        _pattern = re.compile(rf"\$\{{(?:{names})\}}")
    return _pattern


def references(text: str) -> list[tuple[str, str]]:
    """Each ``(provider, reference)`` in ``text``, in order."""
    return [_parts(match) for match in reference_pattern().finditer(text)]


def is_reference(text: str) -> bool:
    """Whether ``text`` is exactly one reference, and nothing else."""
    return reference_pattern().fullmatch(text) is not None


def resolve(text: str, *, where: str = "", from_spec: bool = False) -> str:
    """``text`` with every reference replaced by its value; each value is registered for redaction.

    ``from_spec``: the text is part of a spec, whose ``${file:...}`` a confined process (serve) reads
    only under its secrets roots (confinement.py); the operator's own settings are not confined.
    """
    if "${" not in text:
        return text

    def substitute(match: re.Match[str]) -> str:
        name, reference = _parts(match)
        provider = PROVIDERS[name]
        if isinstance(provider, FileProvider):
            value = provider.resolve(reference, where=where, confined=from_spec)
        else:
            value = provider.resolve(reference, where=where)
        redaction.register(value)
        return value

    return reference_pattern().sub(substitute, text)


def problems(text: str) -> list[str]:
    """Why each reference in ``text`` cannot be resolved now (an unset variable, a missing file ...)."""
    found = []
    for name, reference in references(text):
        if (problem := PROVIDERS[name].problem(reference)) is not None:
            found.append(problem)
    return found


def _parts(match: re.Match[str]) -> tuple[str, str]:
    for group, value in match.groupdict().items():
        if value is not None and group.startswith("p"):
            return value, match.group("r" + group[1:])
    raise AssertionError("a reference matched without a provider")  # the pattern has one group pair per provider
