"""MLLP framing (HL7's Minimal Lower Layer Protocol): each message is sent as
0x0B <message> 0x1C 0x0D. Reading frames off a stream, and framing a reply."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

START = b"\x0b"
END = b"\x1c\x0d"
MAX_FRAME_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Frame:
    """One frame read off a connection: the message's bytes, or what was wrong with the frame
    (`problem`; then `data` is what was read of it). `skipped` counts bytes before its start
    block that belonged to no frame."""

    data: bytes
    problem: str | None = None
    skipped: int = 0


class FrameTooLarge(Exception):
    """A frame grew past the limit: the connection is closed after the reply."""


def frame(message: bytes) -> bytes:
    return START + message + END


async def read_frame(reader: asyncio.StreamReader, max_bytes: int = MAX_FRAME_BYTES) -> Frame | None:
    """The next frame, or None when the peer closed the connection between frames or in the
    middle of one (a truncated frame is dropped: it was never acknowledged, so the sender
    sends it again). Raises FrameTooLarge past `max_bytes`."""
    skipped = 0
    while True:  # bytes before the start block belong to no frame
        byte = await reader.read(1)
        if not byte:
            return None
        if byte == START:
            break
        skipped += 1
    try:
        data = await reader.readuntil(b"\x1c")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise FrameTooLarge(f"a frame is larger than the limit ({max_bytes} bytes)") from None
    data = data[:-1]
    if len(data) > max_bytes:
        raise FrameTooLarge(f"a frame is larger than the limit ({max_bytes} bytes)")
    after = await reader.read(1)
    if not after:
        return None
    if after != b"\x0d":
        return Frame(data, "malformed MLLP frame: the end block 0x1C is not followed by 0x0D", skipped)
    if START in data:
        # A start block inside a frame: what came before it was a frame cut short. The message
        # is the part after the last start block.
        return Frame(data, "malformed MLLP frame: a start block 0x0B inside a frame", skipped)
    return Frame(data, None, skipped)
