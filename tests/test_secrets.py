"""Secret providers (secrets.py): ${file:...} and ${aws-sm:...} beside ${env:...}, against moto's server for AWS."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from tests.aws_servers import MotoAWS

from agent_orchestrated_etl import redaction
from agent_orchestrated_etl.exceptions import AuthError, ConfigurationError, SpecError
from agent_orchestrated_etl.secrets import resolve
from agent_orchestrated_etl.spec import parse_spec, resolve_env, unset_variables

SPEC = """\
name: p
sources:
  db: {{type: postgres, url: "postgresql://app:{ref}@db.example/x", table: orders}}
destination: {{type: duckdb, path: o.duckdb, table: t}}
"""


def secret_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run" / "secrets" / "pg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_file_reference_gives_the_file_without_its_trailing_newline_and_is_masked(tmp_path: Path) -> None:
    value = f"pw-{uuid.uuid4().hex}"
    path = secret_file(tmp_path, value + "\n")
    spec = resolve_env(parse_spec(SPEC.format(ref=f"${{file:{path}}}")).pipeline)
    assert spec.sources["db"].url == f"postgresql://app:{value}@db.example/x"
    assert redaction.redact(f"connecting with {value}") == "connecting with ***"


def test_a_missing_or_unreadable_secret_file_names_the_reference(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigurationError) as caught:
        resolve(f"x ${{file:{missing}}}", where="sources.db.url")
    assert (
        str(caught.value)
        == f"sources.db.url: secret file of ${{file:{missing}}} does not exist (mount the secret at that path, or fix"
        " the reference)"
    )
    with pytest.raises(ConfigurationError, match=rf"secret file of \$\{{file:{tmp_path}\}} is a directory"):
        resolve(f"${{file:{tmp_path}}}")
    # `validate` finds what `run` would fail on, with the line.
    loaded = parse_spec(SPEC.format(ref=f"${{file:{missing}}}"))
    [problem] = unset_variables(loaded)
    assert (problem.line, problem.path) == (3, "sources.db.url")
    assert f"${{file:{missing}}} does not exist" in problem.message


def test_an_unknown_provider_is_left_as_written() -> None:
    assert resolve("${vault:db#pw} and ${env:lower-case}") == "${vault:db#pw} and ${env:lower-case}"


def test_settings_that_hold_secrets_take_references(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_orchestrated_etl.api.security import resolve_token
    from agent_orchestrated_etl.store.records import RunStore

    password = f"store-{uuid.uuid4().hex}"
    user, _, rest = postgres_url.removeprefix("postgresql://").partition("@")
    # The test server trusts local connections, so a password is accepted whatever it is.
    url_file = secret_file(tmp_path, f"postgresql://{user}:{password}@{rest}\n")
    store = RunStore(f"${{file:{url_file}}}")
    assert store.engine.dialect.name == "postgresql"
    assert redaction.redact(password) == redaction.MASK
    token = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("API_TOKEN_VALUE", token)
    monkeypatch.setenv("AGENT_ETL_API_TOKEN", "${env:API_TOKEN_VALUE}")
    assert resolve_token(tmp_path) == (token, False)
    assert redaction.redact(token) == redaction.MASK


@pytest.fixture
def secrets_manager(aws: MotoAWS, monkeypatch: pytest.MonkeyPatch) -> MotoAWS:
    monkeypatch.setenv("AWS_SECRETS_MANAGER_ENABLED", "true")
    return aws


def test_an_aws_secret_and_a_key_of_it_resolve_and_are_masked(secrets_manager: MotoAWS) -> None:
    password = f"sm-{uuid.uuid4().hex}"
    sm = secrets_manager.client("secretsmanager")
    sm.create_secret(Name="prod/pg", SecretString=json.dumps({"username": "app", "password": password}))
    sm.create_secret(Name="plain", SecretString="whole-value-1")
    spec = resolve_env(parse_spec(SPEC.format(ref="${aws-sm:prod/pg#password}")).pipeline)
    assert spec.sources["db"].url == f"postgresql://app:{password}@db.example/x"
    assert resolve("${aws-sm:plain}") == "whole-value-1"
    assert redaction.redact(f"{password} whole-value-1 app") == "*** *** app"
    with pytest.raises(ConfigurationError) as caught:
        resolve("${aws-sm:prod/pg#pasword}", where="sources.db.url")
    assert (
        str(caught.value)
        == "sources.db.url: ${aws-sm:prod/pg#pasword}: secret 'prod/pg' has no key 'pasword' (its keys: password,"
        " username) (fix the key after #)"
    )


def test_a_rotated_aws_secret_is_picked_up_within_the_ttl(
    secrets_manager: MotoAWS, monkeypatch: pytest.MonkeyPatch
) -> None:
    ttl = 4.0  # long enough for the put below to land inside it on a loaded machine
    monkeypatch.setenv("AGENT_ETL_SECRETS_CACHE_TTL", str(ttl))
    sm = secrets_manager.client("secretsmanager")
    sm.create_secret(Name="rotating", SecretString="first-value")
    fetched = time.monotonic()
    assert resolve("${aws-sm:rotating}") == "first-value"
    sm.put_secret_value(SecretId="rotating", SecretString="second-value")
    assert resolve("${aws-sm:rotating}") == "first-value"  # cached: no call to AWS per reference
    assert time.monotonic() - fetched < ttl
    while (value := resolve("${aws-sm:rotating}")) == "first-value":
        assert time.monotonic() - fetched < ttl + 1.0, "the rotated value was not picked up within the TTL"
        time.sleep(0.05)
    assert value == "second-value"
    assert time.monotonic() - fetched >= ttl
    assert redaction.redact("first-value second-value") == "*** ***"


def test_a_missing_aws_secret_is_a_one_line_configuration_error(secrets_manager: MotoAWS) -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve("${aws-sm:no/such#password}", where="sources.db.url")
    message = str(caught.value)
    assert message.startswith(
        "sources.db.url: ${aws-sm:no/such}: AWS Secrets Manager has no such secret in region us-east-1"
        " (ResourceNotFoundException: "
    )
    assert message.endswith("(create the secret, or fix its name or AWS_REGION)") and "\n" not in message
    with pytest.raises(SpecError) as spec_error:  # and `validate` reports it with its line
        from agent_orchestrated_etl.spec import check_variables

        check_variables(parse_spec(SPEC.format(ref="${aws-sm:no/such#password}")))
    assert spec_error.value.problems[0].line == 3


def test_access_denied_by_iam_is_a_one_line_auth_error(
    secrets_manager: MotoAWS, monkeypatch: pytest.MonkeyPatch
) -> None:
    sm = secrets_manager.client("secretsmanager")
    sm.create_secret(Name="guarded", SecretString="guarded-value")
    allowed = secrets_manager.user("reader", "secretsmanager:GetSecretValue")
    denied = secrets_manager.user("stranger", "s3:GetObject")
    secrets_manager.enforce_iam()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", denied["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", denied["aws_secret_access_key"])
    with pytest.raises(AuthError) as caught:
        resolve("${aws-sm:guarded}", where="AGENT_ETL_API_TOKEN")
    message = str(caught.value)
    assert message.startswith(
        "AGENT_ETL_API_TOKEN: ${aws-sm:guarded}: AWS Secrets Manager refused access (AccessDenied: User:"
        " arn:aws:iam::123456789012:user/stranger is not authorized"
    )
    assert "stranger" in message and "guarded-value" not in message and "\n" not in message
    from agent_orchestrated_etl.secrets import PROVIDERS

    PROVIDERS["aws-sm"].forget()  # type: ignore[attr-defined]  # a client holds the credentials it was made with
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", allowed["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", allowed["aws_secret_access_key"])
    assert resolve("${aws-sm:guarded}") == "guarded-value"


def test_aws_secrets_manager_must_be_enabled(aws: MotoAWS) -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"^x: \$\{aws-sm:a\}: AWS Secrets Manager is not enabled \(set AWS_SECRETS_MANAGER_ENABLED=true",
    ):
        resolve("${aws-sm:a#b}", where="x")
