"""Sockets and small local HTTP servers for the tests."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# How often a local server's loop looks for a shutdown request: http.server's default (0.5 s)
# is what every stop of a fake would otherwise cost.
POLL_INTERVAL_S = 0.01


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalHttpServer:
    """A threading HTTP server on `host` (a free port) serving `handler` from a daemon
    thread; `stop()` returns at once and may be called more than once."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> None:
        self.httpd = ThreadingHTTPServer((host, 0), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.base_url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": POLL_INTERVAL_S}, daemon=True
        )
        self._thread.start()
        self._stopped = False

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.httpd.shutdown()
            self.httpd.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that does not log each request to stderr."""

    def log_message(self, *args: object) -> None:
        pass

    def send_body(self, status: int, body: bytes = b"", content_type: str | None = None) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


def post_unfinished(
    base_url: str, path: str, body_start: bytes, *, declared_length: int | None, timeout: float = 20
) -> tuple[int, bytes]:
    """POST over a raw socket but send only `body_start` of the body, then wait for the answer
    without ever finishing it: with `declared_length` as its Content-Length, else chunked.

    Returns the status and body the server answered with before the body was complete. A
    server that waits for the whole body never answers: the read times out (socket.timeout)."""
    host, port = base_url.removeprefix("http://").split(":")
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/x-www-form-urlencoded",
    ]
    if declared_length is None:
        head.append("Transfer-Encoding: chunked")
        step = 16 * 1024
        pieces = (body_start[i : i + step] for i in range(0, len(body_start), step))
        payload = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    else:
        head.append(f"Content-Length: {declared_length}")
        payload = body_start
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("ascii"))
        try:
            sock.sendall(payload)
        except OSError:
            pass  # the server may have answered and stopped reading already
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        header_text, _, body = data.partition(b"\r\n\r\n")
        lines = header_text.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = dict(line.partition(":")[::2] for line in lines[1:])
        length = int({k.lower(): v for k, v in fields.items()}.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return status, body
