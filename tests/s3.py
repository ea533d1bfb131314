"""A real S3 API on 127.0.0.1 for the shared artifact store's tests: moto's server, one bucket per test.

`pytest.importorskip` first: without shipyard[s3] and moto installed these tests skip.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Bucket:
    name: str
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables a process needs to reach the bucket (as a user sets them)."""
        return aws_env(self.endpoint)

    def url(self, prefix: str = "models") -> str:
        return f"s3://{self.name}/{prefix}"


def aws_env(endpoint: str) -> dict[str, str]:
    """Credentials moto accepts, the endpoint, no retries (a refused connection fails at once) and no
    shared AWS config of the machine's user."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def new_bucket(endpoint: str) -> Bucket:
    name = f"shipyard-{secrets.token_hex(4)}"
    client(endpoint).create_bucket(Bucket=name)
    return Bucket(name, endpoint)


def client(endpoint: str) -> Any:
    """A plain boto3 client: what tests look at and tamper with, beside the store under test."""
    import boto3

    env = aws_env(endpoint)
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def keys(bucket: Bucket) -> list[str]:
    listed = client(bucket.endpoint).list_objects_v2(Bucket=bucket.name)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def read(bucket: Bucket, key: str) -> bytes:
    body: bytes = client(bucket.endpoint).get_object(Bucket=bucket.name, Key=key)["Body"].read()
    return body


def write(bucket: Bucket, key: str, data: bytes) -> None:
    client(bucket.endpoint).put_object(Bucket=bucket.name, Key=key, Body=data)


def remove(bucket: Bucket, key: str) -> None:
    client(bucket.endpoint).delete_object(Bucket=bucket.name, Key=key)


def cached(home: Path, sha256: str) -> Path:
    """Where a machine whose SHIPYARD_HOME is `home` keeps its copy of a blob."""
    return home / "artifacts" / sha256[:2] / sha256
