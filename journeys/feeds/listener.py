"""The MLLP listener: an asyncio server taking any number of connections. Each connection's
messages are processed one after another, in the order they arrive (a worker thread applies
each in its own transaction), and each is acknowledged after its effect is committed.

Logs name the feed, the control id, the event and the acknowledgement code: never a field of
the message."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from journeys.feeds import ack as acks
from journeys.feeds import mllp
from journeys.feeds.apply import Outcome, process
from journeys.feeds.bind import Feed
from journeys.keys.phi import OrgPhi

log = logging.getLogger("journeys.feeds")


@dataclass
class Counters:
    connections: int = 0
    messages: int = 0
    accepted: int = 0
    errors: int = 0
    rejected: int = 0


class Listener:
    def __init__(
        self,
        engine: Engine,
        feed: Feed,
        phi: Callable[[], OrgPhi],
        clock: Callable[[], datetime],
        *,
        max_frame_bytes: int = mllp.MAX_FRAME_BYTES,
        allow_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (),
    ) -> None:
        self.engine = engine
        self.feed = feed
        self.phi = phi
        self.clock = clock
        self.max_frame_bytes = max_frame_bytes
        self.allow_from = allow_from  # empty: any peer
        self.counters = Counters()
        self._server: asyncio.Server | None = None
        self.port: int | None = None  # once listening

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
        """Listen; returns the port (the one chosen when `port` is 0)."""
        self._server = await asyncio.start_server(
            self._serve, host, port, ssl=tls, limit=self.max_frame_bytes + 2
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def serve_forever(self) -> None:
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _allowed(self, writer: asyncio.StreamWriter) -> bool:
        if not self.allow_from:
            return True
        peer = writer.get_extra_info("peername")
        try:
            address = ipaddress.ip_address(peer[0]) if peer else None
        except ValueError:
            address = None
        if address is not None and any(address in net for net in self.allow_from):
            return True
        log.warning("feed %s: a connection from %s refused (not in --allow-from)", self.feed.name, address)
        return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.connections += 1
        if not self._allowed(writer):
            writer.close()
            return
        try:
            await self._connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the peer went away: whatever it had not been acknowledged, it sends again
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, ssl.SSLError):
                pass

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                frame = await mllp.read_frame(reader, self.max_frame_bytes)
            except mllp.FrameTooLarge as exc:
                await self._reply(writer, acks.reject(str(exc), "100"), None)
                log.warning("feed %s: a frame over the size limit; connection closed", self.feed.name)
                return
            if frame is None:
                return
            if frame.skipped:
                log.warning("feed %s: %d bytes outside any MLLP frame skipped", self.feed.name, frame.skipped)
            if frame.problem is not None:
                log.warning("feed %s: %s", self.feed.name, frame.problem)
                await self._reply(writer, acks.reject(frame.problem, "100"), None)
                continue
            outcome = await asyncio.to_thread(self._process, frame.data)
            await self._reply(writer, outcome.ack, outcome)

    def _process(self, data: bytes) -> Outcome:
        started = time.perf_counter()
        try:
            outcome = process(self.engine, self.feed, data, self.clock, self.phi())
        except Exception as exc:  # never a traceback with the message's fields in it
            log.error("feed %s: a message failed: %s", self.feed.name, type(exc).__name__)
            outcome = Outcome(None, acks.error("the message could not be applied", "207"))
        h = outcome.message.header if outcome.message else None
        log.info(
            "feed %s: %s %s -> %s%s (%.1f ms)",
            self.feed.name,
            h.logged_id if h else "(unreadable)",
            h.event if h else "-",
            outcome.ack.code,
            " (redelivered)" if outcome.ack.duplicate else "",
            (time.perf_counter() - started) * 1000,
        )
        return outcome

    async def _reply(self, writer: asyncio.StreamWriter, ack: acks.Ack, outcome: Outcome | None) -> None:
        self.counters.messages += 1
        if ack.code == "AA":
            self.counters.accepted += 1
        elif ack.code == "AE":
            self.counters.errors += 1
        else:
            self.counters.rejected += 1
        header = outcome.message.header if outcome and outcome.message else None
        writer.write(mllp.frame(acks.encode(ack, header, self.clock())))
        await writer.drain()


def tls_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """A server context from PEM files (TLS 1.2 or later); with `client_ca`, every client must
    present a certificate that CA signed (mutual TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca is not None:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """`10.0.0.0/8,192.168.1.7` -> the networks; raises ValueError naming the bad one."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or CIDR network") from None
    return tuple(out)
