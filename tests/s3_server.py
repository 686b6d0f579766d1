"""A local S3 API server for the object-store tests: moto's ``ThreadedMotoServer`` on 127.0.0.1.

The way s3fs and Dask test S3: a real HTTP server speaking the S3 protocol (conditional PUTs
included), reached through the standard ``AWS_*`` variables, which the test process and every
subprocess it starts inherit. Only localhost is used.

* ``s3`` (module fixture): starts the server once per module, sets ``AWS_ENDPOINT_URL`` and fake
  credentials, yields an :class:`S3` helper, and stops the server (restoring the variables).
* ``bucket`` (function fixture): a fresh, empty bucket per test, with s3fs's instance and
  listings caches cleared, so no test sees another's objects or stale listings.
"""
from __future__ import annotations

import os
import socket
import uuid

import pytest

ENV = {"AWS_ACCESS_KEY_ID": "dummy", "AWS_SECRET_ACCESS_KEY": "dummy", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3:
    """The running server: its endpoint, a boto3 client and helpers to look at buckets."""

    def __init__(self, endpoint: str):
        import boto3

        self.endpoint = endpoint
        self.client = boto3.client("s3", endpoint_url=endpoint)

    def new_bucket(self) -> str:
        name = f"cb-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str, prefix: str = "") -> dict:
        """``{key below prefix: bytes}`` of every object under ``prefix``."""
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                out[key[len(prefix):].lstrip("/")] = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return out

    def keys(self, bucket: str, prefix: str = "") -> list:
        """The keys under ``prefix`` (relative), sorted."""
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out.extend(o["Key"][len(prefix):].lstrip("/") for o in page.get("Contents", []))
        return sorted(out)

    def set_auth(self, enabled: bool) -> None:
        """Make the server check credentials (the fake ones are then refused), or stop checking."""
        import urllib.request

        body = b"0" if enabled else b"inf"
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=body, method="POST",
                                         headers={"Content-Type": "text/plain"})  # not a form: moto reads the body
        urllib.request.urlopen(request).read()


def clear_s3fs_caches() -> None:
    """Forget s3fs instances (and with them their listings caches)."""
    import s3fs

    for fs in list(s3fs.S3FileSystem._cache.values()):
        fs.invalidate_cache()
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def s3():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in [*ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(ENV, AWS_ENDPOINT_URL=endpoint)
    try:
        yield S3(endpoint)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        clear_s3fs_caches()


@pytest.fixture
def bucket(s3):
    clear_s3fs_caches()
    name = s3.new_bucket()
    yield name
    clear_s3fs_caches()
