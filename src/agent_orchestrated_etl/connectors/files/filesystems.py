"""Where files live: local paths and ``s3://bucket/key`` through pyarrow.fs, globs, compression.

S3 settings resolve in this order: the spec's ``s3:`` block, then the
standard AWS environment (``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``,
``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``,
``AWS_PROFILE`` and ``~/.aws/credentials``, read by the AWS SDK inside
pyarrow), so a spec written for AWS runs unchanged against a local S3.

With ``s3.role_arn`` the role is assumed through STS (boto3, the ``aws`` extra),
signed by the keys of the ``s3:`` block or else the same credential chain
(environment, shared profile, container or instance role). Its credentials are
renewed before they expire (botocore's refresh windows: 15 minutes before,
10 at the latest), and each filesystem asked for then carries the new ones.
"""

from __future__ import annotations

import glob as globlib
import gzip
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, BinaryIO

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from agent_orchestrated_etl import confinement, redaction
from agent_orchestrated_etl.exceptions import (
    AgentETLError,
    AuthError,
    ConfigurationError,
    ConnectionFailedError,
    MissingDependencyError,
    SourceNotFoundError,
    from_os_error,
)

_REFUSED = ("ACCESS_DENIED", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "EXPIRED_TOKEN")
COMPRESSION_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}


class S3Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint_url: str | None = Field(None, description="e.g. http://127.0.0.1:8333 for a local S3; AWS when omitted.")
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    allow_bucket_creation: bool = Field(False, description="Create the bucket of a destination when it is missing.")
    role_arn: str | None = Field(None, description="An IAM role to assume through STS; its credentials are renewed.")
    external_id: str | None = Field(None, description="The ExternalId the role's trust policy asks for.")
    session_name: str = Field("agent-etl", min_length=2, max_length=64, description="The assumed role's session name.")
    duration_seconds: int = Field(3600, ge=900, le=43200, description="How long each set of role credentials lasts.")


# Per settings: the credentials a filesystem was made with, and it; a role's renewed credentials make a new one.
_cache: dict[tuple[Any, ...], tuple[tuple[str | None, ...], pafs.FileSystem]] = {}
_roles: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def resolve(path: str, s3: S3Settings | None = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem of a path and the path inside it (``bucket/key`` on S3)."""
    if path.startswith("s3://"):
        return _s3(s3 or S3Settings()), path[len("s3://") :]
    if "://" in path:
        raise SourceNotFoundError(f"unsupported scheme in {path}", hint="use a local path or s3://bucket/key")
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def display(fs: pafs.FileSystem, path: str) -> str:
    return f"s3://{path}" if isinstance(fs, pafs.S3FileSystem) else path


def _s3(settings: S3Settings) -> pafs.FileSystem:
    endpoint = settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = settings.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    secret = settings.secret_access_key.get_secret_value() if settings.secret_access_key else None
    token = settings.session_token.get_secret_value() if settings.session_token else None
    key = (
        endpoint,
        region,
        settings.access_key_id,
        secret,
        token,
        settings.allow_bucket_creation,
        settings.role_arn,
        settings.external_id,
        settings.session_name,
        settings.duration_seconds,
    )
    if settings.role_arn:
        with _lock:
            role = _roles.get(key)
        if role is None:
            role = _assume_role(settings, region, secret, token)
            with _lock:
                role = _roles.setdefault(key, role)
        frozen = role.get_frozen_credentials()  # renews them when they are about to expire
        credentials: tuple[str | None, ...] = (frozen.access_key, frozen.secret_key, frozen.token)
    else:
        credentials = (settings.access_key_id, secret, token)
    with _lock:
        cached = _cache.get(key)
        if cached is None or cached[0] != credentials:
            kwargs: dict[str, Any] = {"region": region, "allow_bucket_creation": settings.allow_bucket_creation}
            if endpoint:
                scheme, _, host = endpoint.partition("://")
                kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
            if credentials[0]:  # otherwise the AWS SDK's default chain: env, profile, instance role
                kwargs.update(access_key=credentials[0], secret_key=credentials[1], session_token=credentials[2])
            cached = _cache[key] = (credentials, pafs.S3FileSystem(**kwargs))
        return cached[1]


def _assume_role(settings: S3Settings, region: str, secret: str | None, token: str | None) -> Any:
    """Credentials of ``settings.role_arn`` that renew themselves; assumed once here, so a refusal shows now."""
    try:
        import boto3
        from botocore.credentials import RefreshableCredentials
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    except ImportError:
        raise MissingDependencyError("assuming an IAM role for S3 (s3.role_arn)", "aws") from None
    role = settings.role_arn
    session = boto3.session.Session(
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        region_name=region,
    )
    sts = session.client("sts")  # boto3 reads AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL itself
    arguments: dict[str, Any] = {
        "RoleArn": role,
        "RoleSessionName": settings.session_name,
        "DurationSeconds": settings.duration_seconds,
    }
    if settings.external_id:
        arguments["ExternalId"] = settings.external_id
    expiry: list[str] = []  # of the credentials last given, once there are some
    if settings.external_id:
        remedy = " with this s3.external_id"
    else:
        remedy = "; check s3.role_arn, and give s3.external_id if the policy asks for one"

    def fetch() -> dict[str, str]:
        if expiry:
            doing = f"cannot renew the credentials of role {role} (they expire at {expiry[-1]})"
        else:
            doing = f"cannot assume role {role}"
        try:
            answer = sts.assume_role(**arguments)["Credentials"]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise AuthError(
                f"{doing}: {error.get('Code', 'Error')}: {error.get('Message', '')}".rstrip(": "),
                where=role,
                hint=f"the role's trust policy must let these credentials call sts:AssumeRole{remedy}",
            ) from None
        except NoCredentialsError:
            raise AuthError(
                f"{doing}: no AWS credentials to call STS with",
                where=role,
                hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or run with a container or instance"
                " role",
            ) from None
        except BotoCoreError as exc:
            raise ConnectionFailedError(
                f"{doing}: {exc}", where=role, hint="check AWS_ENDPOINT_URL(_STS) and AWS_REGION"
            ) from None
        for value in (answer["SecretAccessKey"], answer["SessionToken"]):
            redaction.register(value)
        expiry[:] = [answer["Expiration"].isoformat()]
        return {
            "access_key": answer["AccessKeyId"],
            "secret_key": answer["SecretAccessKey"],
            "token": answer["SessionToken"],
            "expiry_time": expiry[-1],
        }

    first = fetch()
    return RefreshableCredentials(
        first["access_key"],
        first["secret_key"],
        first["token"],
        datetime.fromisoformat(first["expiry_time"]),
        fetch,
        "sts-assume-role",
        time_fetcher=lambda: _clock(),
    )


def _clock() -> datetime:
    """Now, as the renewal of role credentials sees it; STS issues them for 15 minutes at least, so tests move it."""
    return datetime.now(UTC)


def forget() -> None:
    """Drop every S3 filesystem and role made so far: for tests that empty their S3 server."""
    with _lock:
        _cache.clear()
        _roles.clear()


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def expand(fs: pafs.FileSystem, path: str) -> list[str]:
    """The files a path or glob names, sorted; hidden and underscore files are skipped in globs."""
    found = _expand(fs, path)
    for match in found:
        confine_local(fs, match)
    return found


def confine_local(fs: pafs.FileSystem, path: str) -> None:
    """In a confined process (serve), a local file is opened only inside its roots, checked at each open (confinement.py)."""
    if isinstance(fs, pafs.LocalFileSystem):
        confinement.check_file(path, where=path)


def _expand(fs: pafs.FileSystem, path: str) -> list[str]:
    if not globlib.has_magic(path):
        kind = info(fs, path).type
        if kind == pafs.FileType.NotFound:
            return []
        if kind == pafs.FileType.Directory:
            return _expand(fs, path.rstrip("/") + "/**/*")
        return [path]
    if isinstance(fs, pafs.LocalFileSystem):
        found = [p for p in globlib.glob(path, recursive=True) if os.path.isfile(p)]
        _refuse_escapes(path, found)
    else:
        base = _root(path)
        pattern = _glob_regex(path)
        try:
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        except OSError as exc:
            raise os_error(exc, path) from exc
        found = [i.path for i in infos if i.type == pafs.FileType.File and pattern.match(i.path)]
    return sorted(p for p in found if not _hidden(p[len(_root(path)) :]))


def _refuse_escapes(pattern: str, found: list[str]) -> None:
    """A glob reads what lies under its directory: a match that is a symlink out of it is refused.

    Checking the glob's directory (as serve's data root does, api/roots.py) says nothing about
    what a match links to, and a link can appear after the check; a file named on its own is
    not a glob and may still be a link anywhere.
    """
    base = os.path.realpath(_root(pattern) or ".")
    for match in found:
        target = os.path.realpath(match)
        if os.path.commonpath([base, target]) != base:
            raise ConfigurationError(
                f"{match} matches the glob {pattern} but is a symlink to {target}, outside {base}",
                where=pattern,
                hint="a glob reads only files under its directory: move the file there, or name it on its own",
            )


def _root(pattern: str) -> str:
    """The directory part of a glob before its first wildcard."""
    return re.split(r"[*?\[]", pattern, maxsplit=1)[0].rsplit("/", 1)[0]


def _hidden(relative: str) -> bool:
    """Staging, manifests and dotfiles: any path component starting with _ or ."""
    return any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def info(fs: pafs.FileSystem, path: str) -> pafs.FileInfo:
    try:
        return fs.get_file_info(path)
    except OSError as exc:
        raise os_error(exc, path) from exc


def compression_of(path: str) -> str | None:
    return COMPRESSION_SUFFIXES.get(os.path.splitext(path)[1].lower())


@contextmanager
def open_input(
    fs: pafs.FileSystem, path: str, compression: str | None, *, to_the_break: bool = False
) -> Iterator[BinaryIO]:
    """A readable stream of the file's bytes, decompressed.

    ``to_the_break``: a truncated gzip gives every byte before the break (Python's
    gzip; pyarrow's faster decompressor drops the block it was working on).
    """
    if to_the_break and compression == "gzip":
        with open_input(fs, path, None) as raw, gzip.GzipFile(fileobj=raw) as unzipped:
            yield _UpToTheBreak(unzipped)  # type: ignore[misc]  # duck-types the read()/read1() of a BinaryIO
        return
    confine_local(fs, path)
    try:
        stream = fs.open_input_stream(path, compression=compression)
    except FileNotFoundError as exc:
        raise SourceNotFoundError(f"file not found: {display(fs, path)}", hint="check `path:`") from exc
    except OSError as exc:
        raise os_error(exc, display(fs, path)) from exc
    try:
        yield stream
    finally:
        stream.close()


class _UpToTheBreak:
    """A gzip stream whose ``read`` returns what one step decompressed: GzipFile.read(n) drops
    everything it had gathered for the call when the file breaks off before n bytes."""

    def __init__(self, stream: gzip.GzipFile) -> None:
        self.read = self.read1 = stream.read1


def os_error(exc: OSError, where: str) -> AgentETLError:
    if (local := from_os_error(exc, where)) is not None:
        return local
    text = str(exc)
    if any(code in text for code in _REFUSED):
        return AuthError(
            f"S3 refused the credentials: {text}",
            where=where,
            hint="check s3.access_key_id/secret_access_key or AWS_* variables",
        )
    if "NETWORK_CONNECTION" in text or "curlCode" in text:
        return ConnectionFailedError(
            f"cannot reach S3: {text}", where=where, hint="check s3.endpoint_url or AWS_ENDPOINT_URL"
        )
    if "NO_SUCH_BUCKET" in text or "NoSuchBucket" in text or "not found" in text.lower():
        return SourceNotFoundError(
            text, where=where, hint="check the bucket and key, or set s3.allow_bucket_creation: true"
        )
    return ConnectionFailedError(text, where=where)
