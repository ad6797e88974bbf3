"""A local S3-compatible server for the object-store tests, run as its own process.

The server is moto's (``pip install 'moto[server]'``, a dev dependency): a separate process
that speaks the S3 HTTP API on loopback. What is tested is semwh through pyarrow's real S3
client (``pyarrow.fs.S3FileSystem``), over real HTTP, exactly as against AWS or MinIO.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow.fs as pafs

REGION = "us-east-1"
# Credentials the server accepts; pyarrow's S3 client (in tests and in CLI subprocesses)
# reads them from the environment as it would on a cluster node.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "semwh-test",
    "AWS_SECRET_ACCESS_KEY": "semwh-test-secret",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class S3Server:
    """A running server: URIs of buckets on it, and a client to look inside."""

    port: int

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def uri(self, bucket: str, prefix: str = "") -> str:
        """An ``s3://`` URI of ``bucket/prefix`` on this server (options in the query)."""
        path = f"{bucket}/{prefix}".rstrip("/")
        # A server sharing two busy cores with Ray and torch may not answer within the
        # client's default 3 s: give it a minute, as one would a slow S3-compatible store.
        return (
            f"s3://{path}?endpoint_override={self.endpoint}&scheme=http&region={REGION}"
            "&request_timeout=60&connect_timeout=10"
        )

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            endpoint_override=self.endpoint,
            scheme="http",
            region=REGION,
            allow_bucket_creation=True,
            request_timeout=60,
            connect_timeout=10,
        )

    def create_bucket(self, bucket: str) -> None:
        self.filesystem().create_dir(bucket)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every object under ``bucket/prefix``: key (relative to the prefix) -> size."""
        base = f"{bucket}/{prefix}".rstrip("/")
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        return {
            info.path[len(base) + 1 :]: info.size
            for info in self.filesystem().get_file_info(selector)
            if info.type == pafs.FileType.File
        }


@contextmanager
def running_s3_server() -> Iterator[S3Server]:
    """Start the server on a free loopback port; stop it on exit.

    Its request log goes to a temporary file, never to a pipe: a pipe nobody reads fills up
    after a few hundred requests and the server then blocks writing its log.
    """
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS},
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"the S3 server exited: {log.read().decode()[-2000:]}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the S3 server did not start within 60 s") from None
                    time.sleep(0.1)
            yield S3Server(port)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
