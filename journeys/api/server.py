"""The HTTP server process: uvicorn, stopped cleanly by SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn


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
