"""The HTTP server process: uvicorn, stopped cleanly by SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from journeys.errors import Invalid


@dataclass(frozen=True)
class Tls:
    cert: str
    key: str


def check_tls(cert: Path | None, key: Path | None) -> Tls | None:
    """The certificate and key to serve HTTPS with (None: plain HTTP), checked before the server
    starts: both given, readable PEM, the key matching the certificate."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise Invalid("--tls-cert and --tls-key go together: give both, or neither for plain HTTP")
    for path in (cert, key):
        if not path.is_file():
            raise Invalid(f"TLS file not found: {path}")
        try:
            path.open("rb").close()
        except OSError:
            raise Invalid(f"TLS file not readable: {path}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise Invalid(
            f"cannot use {cert} and {key} for TLS ({reason}): a PEM certificate and its own private "
            "key are needed"
        ) from None
    return Tls(str(cert), str(key))


class GracefulServer(uvicorn.Server):
    """uvicorn's server, except that after a graceful shutdown on SIGTERM/SIGINT (requests in
    flight finished, the in-process worker stopped) the process exits 0, as `journeys worker`
    does, instead of re-raising the signal — so supervisors (Docker, Kubernetes, systemd) see a
    clean stop rather than death by signal."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
