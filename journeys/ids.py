"""Identifiers: time-ordered UUIDs (version 7 layout) so new rows land at the end of B-tree indexes."""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def new_id() -> str:
    """A UUIDv7 string: 48-bit Unix ms, 12-bit sequence within the ms, 62 random bits."""
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _seq += 1
            if _seq > 0xFFF:  # sequence exhausted: borrow the next millisecond
                _last_ms += 1
                _seq = 0
            ms = _last_ms
        else:
            _last_ms = ms
            _seq = 0
        seq = _seq
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand
    return str(uuid.UUID(int=value))


def new_ids(n: int) -> list[str]:
    return [new_id() for _ in range(n)]


_event_counter = itertools.count()
_event_lock = threading.Lock()
_node = os.urandom(2).hex()


def new_event_id() -> str:
    """A time-ordered event id: ns timestamp, process-local sequence, random node (32 chars)."""
    with _event_lock:
        seq = next(_event_counter) & 0xFFFFFF
    return f"{time.time_ns():020d}{seq:06x}{_node}"[:32]
