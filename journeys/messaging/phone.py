"""Phone numbers: a normalised form used to match replies, count sends and address messages.

This is a light normaliser (digits with a leading +, 10-digit numbers taken as North American)
used for matching and counting; the Twilio provider validates and formats numbers to E.164
with `phonenumbers` when it sends (journeys.messaging.providers.twilio.to_e164).
"""

from __future__ import annotations

import re

_NON_DIGITS = re.compile(r"[^0-9]")  # ASCII digits only


def normalise_phone(text: str) -> str | None:
    """'+1 (555) 555-0100', '5555550100' -> '+15555550100'; None when there are too few digits."""
    digits = _NON_DIGITS.sub("", text or "")
    if len(digits) == 10:
        digits = "1" + digits
    if len(digits) < 8 or len(digits) > 15:
        return None
    return "+" + digits
