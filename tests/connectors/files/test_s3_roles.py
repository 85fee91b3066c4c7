"""S3 through an assumed IAM role (s3.role_arn), against moto's server with IAM enforced: STS, then S3.

The user whose keys are in the environment may only call sts:AssumeRole; every S3
call must therefore be signed by the role's credentials.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from test_files import stage_and_commit
from tests.aws_servers import MotoAWS, trust, user_arn
from tests.connectors.rest_helpers import make_source, read_all

from agent_orchestrated_etl.connectors.files import FileDestination, FileDestinationSpec, filesystems
from agent_orchestrated_etl.connectors.files.filesystems import S3Settings
from agent_orchestrated_etl.exceptions import AuthError

BUCKET = "landing"
EXTERNAL_ID = "ext-7"


@dataclass
class Roles:
    aws: MotoAWS
    loader: str  # trusts the user "etl", with EXTERNAL_ID
    elsewhere: str  # trusts another user
    etl: dict[str, str]
    admin: dict[str, str]


@pytest.fixture
def roles(aws: MotoAWS, monkeypatch: pytest.MonkeyPatch) -> Roles:
    admin = aws.user("admin", "*")
    etl = aws.user("etl", "sts:AssumeRole")
    loader = aws.role("loader", user_arn("etl"), "s3:*", external_id=EXTERNAL_ID)
    elsewhere = aws.role("elsewhere", user_arn("admin"), "s3:*")
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="in/orders.csv", Body=b"id,amount\n1,9.5\n2,12\n")
    aws.enforce_iam()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", etl["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", etl["aws_secret_access_key"])
    return Roles(aws, loader, elsewhere, etl, admin)


def source(path: str, **s3: object) -> pa.Table:
    table, rejected = read_all(make_source({"type": "file", "path": path, "s3": s3}))
    assert rejected == []
    return table


def test_reads_and_writes_s3_as_the_assumed_role(roles: Roles) -> None:
    role = {"role_arn": roles.loader, "external_id": EXTERNAL_ID}
    assert source(f"s3://{BUCKET}/in/orders.csv", **role).to_pylist() == [
        {"id": 1, "amount": 9.5},
        {"id": 2, "amount": 12.0},
    ]
    out = f"s3://{BUCKET}/out/{uuid.uuid4().hex[:8]}"
    dest = FileDestination(
        FileDestinationSpec(type="file", path=out, s3=S3Settings(**role)), memory_limit_bytes=1 << 28
    )
    assert stage_and_commit(dest, "r1", [pa.record_batch({"id": [1, 2, 3]})]) == 3
    assert source(out, **role).column("id").to_pylist() == [1, 2, 3]
    # The user's own keys may not read the bucket: the reads above were the role's.
    with pytest.raises(AuthError, match="S3 refused the credentials"):
        source(f"s3://{BUCKET}/in/orders.csv")


def test_the_role_is_assumed_with_credentials_from_a_shared_profile(
    roles: Roles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[etl]\naws_access_key_id = {roles.etl['aws_access_key_id']}\n"
        f"aws_secret_access_key = {roles.etl['aws_secret_access_key']}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "etl")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    table = source(f"s3://{BUCKET}/in/orders.csv", role_arn=roles.loader, external_id=EXTERNAL_ID)
    assert table.num_rows == 2


def test_a_role_that_does_not_trust_us_is_a_one_line_auth_error(roles: Roles) -> None:
    for role, external_id in ((roles.elsewhere, None), (roles.loader, "wrong-id")):
        with pytest.raises(AuthError) as caught:
            source(f"s3://{BUCKET}/in/orders.csv", role_arn=role, external_id=external_id)
        message = str(caught.value)
        assert message.startswith(
            f"{role}: cannot assume role {role}: AccessDenied: User: {user_arn('etl')} is not authorized to perform: sts:AssumeRole"
        )
        assert (
            "the role's trust policy must let these credentials call sts:AssumeRole" in message and "\n" not in message
        )
        assert caught.value.next_remedy == "fix_auth"


def in_the_future(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """STS issues credentials for 15 minutes at least: move the clock their renewal reads instead of waiting."""
    moved = datetime.now(UTC) + timedelta(seconds=seconds)
    monkeypatch.setattr(filesystems, "_clock", lambda: moved)


def test_role_credentials_are_renewed_before_they_expire(roles: Roles, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = S3Settings(role_arn=roles.loader, external_id=EXTERNAL_ID, duration_seconds=3600)
    first, root = filesystems.resolve(f"s3://{BUCKET}/in/orders.csv", settings)
    assert filesystems.resolve(f"s3://{BUCKET}/in/orders.csv", settings)[0] is first  # still fresh: the same one
    in_the_future(monkeypatch, 3600 - 5 * 60)  # five minutes before they expire
    renewed, _ = filesystems.resolve(f"s3://{BUCKET}/in/orders.csv", settings)
    assert renewed is not first
    with renewed.open_input_stream(root) as stream:
        assert io.BytesIO(stream.read()).getvalue().startswith(b"id,amount")


def test_expired_role_credentials_that_cannot_be_renewed_are_a_one_line_auth_error(
    roles: Roles, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"s3://{BUCKET}/in/orders.csv"
    settings = {"role_arn": roles.loader, "external_id": EXTERNAL_ID}
    assert source(path, **settings).num_rows == 2
    roles.aws.client("iam", **roles.admin).update_assume_role_policy(
        RoleName="loader", PolicyDocument=trust(user_arn("admin"))
    )
    in_the_future(monkeypatch, 3600 + 60)
    with pytest.raises(AuthError) as caught:
        source(path, **settings)
    message = str(caught.value)
    assert message.startswith(f"{roles.loader}: cannot renew the credentials of role {roles.loader} (they expire at ")
    assert f"): AccessDenied: User: {user_arn('etl')} is not authorized to perform: sts:AssumeRole" in message
    assert "\n" not in message
