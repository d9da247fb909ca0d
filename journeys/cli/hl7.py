"""`journeys hl7 listen|check|send`: the HL7 v2 SIU feed over MLLP (journeys.feeds)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import typer

from journeys import logs
from journeys.cli.common import _engine, _fail, _print_json, _settings, _state, json_option, new_app
from journeys.definitions.problems import DefinitionError
from journeys.errors import Invalid

hl7_app = new_app("HL7 v2 feeds: appointments (SIU) over MLLP start, move and cancel journeys.")


def _mapping_option() -> Any:
    return typer.Option(..., "--mapping", metavar="FILE", help="The feed's mapping file (YAML)")


@hl7_app.command("check")
def check(
    mapping_file: Path = typer.Argument(..., metavar="FILE", help="A feed's mapping file (YAML)"),
    against_db: bool = typer.Option(
        False, "--db-check", help="Also check it against its org and journey in the database"
    ),
) -> None:
    """Check a feed's mapping file: every problem, with its line. Exit 1 when there is one."""
    from journeys.feeds.mapping import load_mapping_file

    try:
        mapping = load_mapping_file(mapping_file)
    except DefinitionError as exc:
        for line in exc.messages:
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    if against_db:
        _bound(mapping, str(mapping_file))
    typer.echo(f"{mapping_file}: ok (feed {mapping.feed}, journey {mapping.journey})")


def _bound(mapping: object, filename: str) -> object:
    from journeys.feeds.bind import bind
    from journeys.feeds.mapping import FeedMapping
    from journeys.store.db import read_only

    assert isinstance(mapping, FeedMapping)
    engine = _engine()
    with read_only(engine) as conn:
        try:
            return bind(conn, mapping)
        except Invalid as exc:
            for line in exc.messages:
                typer.echo(f"{filename}: {line}", err=True)
            raise typer.Exit(1) from None


@hl7_app.command("listen")
def listen(
    mapping_file: Path = _mapping_option(),
    db: str = typer.Option(
        None, "--db", metavar="URL", help="Database URL", show_default="$JOURNEYS_DATABASE_URL"
    ),
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST", help="Address to listen on"),
    port: int = typer.Option(2575, "--port", metavar="PORT", min=0, max=65535, help="TCP port"),
    tls_cert: Path = typer.Option(None, "--tls-cert", metavar="FILE", help="TLS certificate chain (PEM)"),
    tls_key: Path = typer.Option(None, "--tls-key", metavar="FILE", help="TLS private key (PEM)"),
    tls_client_ca: Path = typer.Option(
        None, "--tls-client-ca", metavar="FILE", help="Require client certificates signed by this CA (PEM)"
    ),
    allow_from: str = typer.Option(
        None,
        "--allow-from",
        metavar="CIDRS",
        help="Only accept connections from these addresses (comma-separated)",
    ),
) -> None:
    """Listen for HL7 v2 SIU messages over MLLP and apply them as the mapping says.

    Each message is acknowledged (AA, AE or AR) after its effect is committed; a redelivered
    message (same MSH-10 from the same sender) is acknowledged the same way and applied once.
    Runs next to `journeys serve` or `journeys worker`, as its own process."""
    from journeys.feeds.bind import Feed
    from journeys.feeds.listener import Listener, networks
    from journeys.feeds.mapping import load_mapping_file

    if db:
        _state["db"] = db
    tls = _tls(tls_cert, tls_key, tls_client_ca)
    try:
        allowed = networks(allow_from or "")
    except ValueError as exc:
        _fail(f"--allow-from: {exc}", 2)
    try:
        mapping = load_mapping_file(mapping_file)
    except DefinitionError as exc:
        _fail("\n".join(exc.messages))
    settings = _settings()
    logs.configure(settings.log_level, settings.log_format)
    feed = _bound(mapping, str(mapping_file))
    assert isinstance(feed, Feed)
    engine = _engine()
    vault = settings.vault(engine)
    listener = Listener(
        engine, feed, lambda: vault.org(feed.org_id), settings.clock().now, allow_from=allowed
    )

    _run(listener, host, port, tls)


def _run(listener: Any, host: str, port: int, tls: ssl.SSLContext | None) -> None:
    """Listen until stopped (Ctrl-C, SIGTERM)."""

    async def run() -> None:
        try:
            bound = await listener.start(host, port, tls)
        except OSError as exc:
            _fail(f"cannot listen on {host}:{port}: {exc.strerror}")
        where = f"{host}:{bound}{' (TLS)' if tls else ''}"
        typer.echo(f"feed {listener.feed.name}: listening for MLLP on {where}", err=True)
        await listener.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


def _tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> ssl.SSLContext | None:
    """The listener's TLS context from the options, or exit 2 naming what is wrong."""
    from journeys.feeds.listener import tls_context

    if (cert is None) != (key is None):
        _fail("--tls-cert and --tls-key go together", 2)
    if client_ca is not None and cert is None:
        _fail("--tls-client-ca needs --tls-cert and --tls-key", 2)
    if cert is None or key is None:
        return None
    try:
        return tls_context(str(cert), str(key), str(client_ca) if client_ca else None)
    except (OSError, ssl.SSLError) as exc:
        _fail(f"cannot use the TLS certificate or key: {getattr(exc, 'strerror', None) or exc}", 2)
        raise  # unreachable: _fail exits


def split_messages(text: str) -> list[bytes]:
    """The HL7 messages of a file: each starts with a line beginning MSH|."""
    out: list[list[str]] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.startswith("MSH|"):
            out.append([])
        if out and line.strip():
            out[-1].append(line)
    return ["\r".join(m).encode("utf-8") + b"\r" for m in out]


@hl7_app.command("send")
def send(
    files: list[Path] = typer.Argument(..., metavar="FILE", help="Files of HL7 messages (each starts MSH|)"),
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST", help="The listener's address"),
    port: int = typer.Option(2575, "--port", metavar="PORT", min=1, max=65535, help="The listener's port"),
    tls: bool = typer.Option(False, "--tls", help="Connect with TLS (the certificate is not verified)"),
    tls_cert: Path = typer.Option(
        None, "--tls-cert", metavar="FILE", help="With --tls: present this client certificate (PEM)"
    ),
    tls_key: Path = typer.Option(None, "--tls-key", metavar="FILE", help="Its private key (PEM)"),
    as_json: bool = json_option("Print one JSON object per acknowledgement"),
) -> None:
    """Send HL7 messages to a listener over MLLP and print each acknowledgement.

    For trying a feed and its mapping with sample messages. Exit 1 unless every message got AA."""
    from journeys.feeds.mllp import frame

    messages: list[bytes] = []
    for f in files:
        try:
            messages += split_messages(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"cannot read {f}: {getattr(exc, 'strerror', None) or 'not UTF-8'}", 2)
    if not messages:
        _fail("no HL7 messages in the files (each starts with a line beginning MSH|)", 2)
    all_ok = True
    try:
        sock = socket.create_connection((host, port), timeout=60)
    except OSError as exc:
        _fail(f"cannot connect to {host}:{port}: {exc.strerror or exc}")
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        try:
            if tls_cert is not None:
                ctx.load_cert_chain(str(tls_cert), str(tls_key) if tls_key else None)
            sock = ctx.wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            _fail(f"TLS with {host}:{port} failed: {getattr(exc, 'strerror', None) or exc}")
    with sock:
        for message in messages:
            try:
                sock.sendall(frame(message))
                reply = _read_reply(sock)
            except (OSError, ssl.SSLError) as exc:  # e.g. a client certificate the listener refused
                _fail(f"the connection to {host}:{port} failed: {getattr(exc, 'strerror', None) or exc}")
            code, control, text = _msa(reply)
            all_ok = all_ok and code == "AA"
            if as_json:
                _print_json({"controlId": control, "ack": code, "text": text})
            else:
                typer.echo(f"{control or '-'}  {code}  {text}")
    if not all_ok:
        raise typer.Exit(1)


def _read_reply(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\x1c\r"):
        chunk = sock.recv(65536)
        if not chunk:
            _fail("the listener closed the connection without acknowledging")
        data += chunk
    return data.strip(b"\x0b\x1c\r")


def _msa(reply: bytes) -> tuple[str, str, str]:
    for seg in reply.decode("utf-8", "replace").split("\r"):
        if seg.startswith("MSA|"):
            parts = seg.split("|") + ["", "", ""]
            return parts[1], parts[2], parts[3]
    return "?", "", "no MSA segment in the reply"
