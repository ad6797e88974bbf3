"""A loopback HTTP file server for the sample-set tests: serves a folder's files with HTTP
range requests, and can corrupt a file's bytes, drop a connection halfway or stop."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Faults:
    """What the server does wrong, per file name.

    Attributes:
        corrupt: name -> number of responses whose bytes are altered (then served intact).
        always_corrupt: names whose bytes are always altered.
        drop: name -> number of responses that close the connection halfway.
    """

    corrupt: dict[str, int] = field(default_factory=dict)
    always_corrupt: set[str] = field(default_factory=set)
    drop: dict[str, int] = field(default_factory=dict)


class SampleServer:
    """Serves ``folder`` on 127.0.0.1 and records each request (name, Range header)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.faults = Faults()
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def _take(self, counts: dict[str, int], name: str) -> bool:
        with self._lock:
            if counts.get(name, 0) > 0:
                counts[name] -= 1
                return True
            return False

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        name = handler.path.rsplit("/", 1)[-1]
        range_header = handler.headers.get("Range")
        with self._lock:
            self.requests.append((name, range_header))
        path = self.folder / name
        if not handler.path.startswith("/files/") or not path.is_file():
            handler.send_error(404)
            return
        body = path.read_bytes()
        if name in self.faults.always_corrupt or self._take(self.faults.corrupt, name):
            body = bytes(b ^ 0xFF for b in body[:64]) + body[64:]
        start = 0
        if range_header and range_header.startswith("bytes="):
            start = int(range_header[6:].split("-", 1)[0])
            if start >= len(body):
                handler.send_error(416)
                return
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            handler.send_response(200)
        payload = body[start:]
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if self._take(self.faults.drop, name):
            handler.wfile.write(payload[: len(payload) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(2)
            return
        handler.wfile.write(payload)

    def names_requested(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.requests]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def write_manifest(files: list[Path], path: Path) -> Path:
    """A ``file,size,sha256`` manifest of ``files`` (their real bytes)."""
    lines = ["file,size,sha256"]
    for file in files:
        data = file.read_bytes()
        lines.append(f"{file.name},{len(data)},{hashlib.sha256(data).hexdigest()}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
