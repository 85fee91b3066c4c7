"""moto's standalone server as AWS (Secrets Manager, IAM, STS, S3), started on 127.0.0.1 and stopped by its PID.

``MotoAWS`` resets the server for each test and makes the principals a test needs
while IAM is open; ``enforce_iam()`` then turns on moto's checking of signatures,
policies and trust relationships (its INITIAL_NO_AUTH_ACTION_COUNT, set to 0).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

ACCOUNT = "123456789012"
REGION = "us-east-1"
_ADMIN = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": REGION}


@contextmanager
def moto_server() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/moto-api/data.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto's server did not start on {url} (exit code {proc.poll()})")
            time.sleep(0.2)
        yield url
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def policy(actions: str | list[str], effect: str = "Allow") -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": effect, "Action": actions, "Resource": "*"}]})


def trust(principal: str, external_id: str | None = None) -> str:
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
    if external_id is not None:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


class MotoAWS:
    def __init__(self, url: str) -> None:
        self.url = url
        httpx.post(f"{url}/moto-api/reset-auth", content=b"inf").raise_for_status()
        httpx.post(f"{url}/moto-api/reset").raise_for_status()

    def client(self, service: str, **credentials: str) -> Any:
        import boto3

        return boto3.session.Session(**{**_ADMIN, **credentials}).client(service, endpoint_url=self.url)

    def user(self, name: str, actions: str | list[str] | None = None) -> dict[str, str]:
        """An IAM user allowed ``actions``; its keys as boto3 arguments."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        if actions is not None:
            iam.put_user_policy(UserName=name, PolicyName="allowed", PolicyDocument=policy(actions))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}

    def role(self, name: str, trusted: str, actions: str | list[str], external_id: str | None = None) -> str:
        iam = self.client("iam")
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust(trusted, external_id))["Role"]["Arn"]
        iam.put_role_policy(RoleName=name, PolicyName="allowed", PolicyDocument=policy(actions))
        return str(arn)

    def enforce_iam(self) -> None:
        httpx.post(f"{self.url}/moto-api/reset-auth", content=b"0").raise_for_status()


def user_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"
