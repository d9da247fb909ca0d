"""The clinic's webhook endpoint, on loopback: answers the subscription challenge and records
every delivery."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from support.net import LocalHttpServer, QuietHandler


def challenge_answer(secret: str, code: str) -> str:
    """What a receiver holding `secret` answers to the challenge `code`."""
    return hmac.new(secret.encode(), code.encode(), hashlib.sha256).hexdigest()


@dataclass
class WebhookReceiver:
    """Answers the challenge for `secret` (wrongly with `wrong`; followed by
    `challenge_suffix`), records POSTs (headers, raw body, whether it failed them) and fails
    the next `fail` POSTs with HTTP 500."""

    secret: str
    wrong: bool = False
    fail: int = 0
    challenge_suffix: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)
    challenges: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        rec = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                code = parse_qs(urlsplit(self.path).query).get("challengeCode", [""])[0]
                rec.challenges.append(code)
                answer = "nope" if rec.wrong else challenge_answer(rec.secret, code) + rec.challenge_suffix
                self.send_body(200, answer.encode())

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with rec.lock:
                    failing = rec.fail > 0
                    rec.fail -= 1 if failing else 0
                    rec.posts.append({"headers": dict(self.headers.items()), "raw": raw, "failed": failing})
                self.send_body(500 if failing else 200)

        self._server = LocalHttpServer(Handler)
        self.url = f"{self._server.base_url}/hooks"

    def ok_events(self, instance_id: str | None = None) -> list[dict[str, Any]]:
        """The events of the deliveries answered 200 (of one instance, if given), in order."""
        out = [json.loads(p["raw"]) for p in self.posts if not p["failed"]]
        return [e for e in out if instance_id is None or e["instanceId"] == instance_id]

    def stop(self) -> None:
        self._server.stop()
