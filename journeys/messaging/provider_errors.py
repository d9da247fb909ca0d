"""What a provider's error code means, in words staff can act on (a pure table, no I/O).

Twilio's codes are numbers (its REST API's errors on the send, and the ErrorCode of a status
callback); SMTP's are the server's reply codes (RFC 5321, and RFC 3463 enhanced codes such as
5.1.1). Our own senders record a few words for failures that never reached a provider
(`invalid_number`, `timeout`, `network`, `http_NNN`). A code not in the table is shown as it is,
with an honest "not a code we know" and where to look it up — never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TWILIO: dict[str, str] = {
    "20003": "Twilio refused the account's credentials (check the SMS channel's account SID and auth token)",
    "20429": "Twilio's rate limit was hit: too many requests at once (retried)",
    "20500": "Twilio had an internal error (retried)",
    "21211": "invalid 'To' phone number: the patient's number is not a valid phone number",
    "21408": "the account may not send to this country or region (Twilio geo permissions)",
    "21602": "the message body is empty",
    "21603": "the 'From' number is missing (check the SMS channel's sender)",
    "21606": "the 'From' number cannot send SMS (check the SMS channel's sender)",
    "21608": "a Twilio trial account can only send to verified numbers",
    "21610": "recipient has opted out (STOP): Twilio blocks messages to this number until it texts START",
    "21612": "Twilio cannot route a message between these two numbers",
    "21614": "the 'To' number is not a mobile number (a landline cannot receive SMS)",
    "21617": "the message is longer than Twilio allows (1,600 characters)",
    "30001": "Twilio's queue overflowed: too many messages queued at once",
    "30002": "the Twilio account is suspended",
    "30003": "unreachable destination handset: the phone is off, out of coverage or not in service",
    "30004": "message blocked: the recipient blocked the sender, or the carrier blocks this number",
    "30005": "unknown destination handset: the number does not exist or is no longer in service",
    "30006": "landline or unreachable carrier: the number cannot receive SMS",
    "30007": "carrier filtered: the carrier flagged the message as spam or unregistered traffic",
    "30008": "unknown error from the carrier: the message could not be delivered (retrying later may work)",
    "30032": "the sending toll-free number is not verified",
    "30034": "the sending number is not registered for US A2P 10DLC messaging",
}

SMTP: dict[str, str] = {
    "421": "the mail server is unavailable for now (retried)",
    "450": "the mailbox is unavailable for now, e.g. busy or greylisted (retried)",
    "451": "the mail server had a local error (retried)",
    "452": "the mail server is out of storage for now (retried)",
    "500": "the mail server did not understand a command",
    "501": "the mail server refused an argument, often a malformed address",
    "530": "the mail server requires authentication (check the email channel's login)",
    "535": "the mail server refused the email channel's login (wrong user name or password)",
    "550": "mailbox unavailable: the address does not exist, or the server refused the message",
    "551": "the recipient is not local to the server, which does not relay",
    "552": "the message is larger than the mailbox or server allows",
    "553": "the mailbox name is not allowed, often a malformed address",
    "554": "the mail server refused the message (often as spam or by policy)",
}

OURS: dict[str, str] = {
    "invalid_number": "not a valid phone number: the message was not sent to the provider",
    "timeout": "the provider did not answer in time (retried)",
    "network": "the provider could not be reached (retried)",
}

_HTTP = re.compile(r"^http_(\d{3})$")
_ENHANCED = re.compile(r"^([245])\.\d{1,3}\.\d{1,3}$")
_ENHANCED_CLASS = {
    "2": "success",
    "4": "a temporary failure (retried)",
    "5": "a permanent failure",
}


@dataclass(frozen=True, slots=True)
class ErrorExplanation:
    code: str
    meaning: str
    known: bool  # False: a code the table does not have (the meaning says so)


def explain(
    code: str | None, provider: str | None = None, channel: str | None = None
) -> ErrorExplanation | None:
    """The meaning of `code` from `provider` (twilio, smtp; else guessed from the channel), or
    None when there is no code."""
    if code is None or not code.strip():
        return None
    code = code.strip()
    family = _family(provider, channel)
    found = OURS.get(code) or (TWILIO if family == "twilio" else SMTP).get(code)
    if found:
        return ErrorExplanation(code, found, True)
    http = _HTTP.match(code)
    if http:
        return ErrorExplanation(code, f"the provider answered with HTTP status {http.group(1)}", True)
    enhanced = _ENHANCED.match(code)
    if enhanced and family == "smtp":
        return ErrorExplanation(code, f"the mail server reported {_ENHANCED_CLASS[enhanced.group(1)]}", True)
    return ErrorExplanation(code, _unknown(family), False)


def _family(provider: str | None, channel: str | None) -> str:
    if provider in ("twilio", "smtp"):
        return provider
    return "smtp" if channel == "email" else "twilio"


def _unknown(family: str) -> str:
    if family == "twilio":
        return (
            "not a code this console knows: look it up in Twilio's error dictionary "
            "(twilio.com/docs/api/errors)"
        )
    return "not a code this console knows: see the mail server's reply (SMTP reply codes, RFC 5321)"
