"""Journey definitions (YAML) that several test modules use."""

from __future__ import annotations


def one_sms(name: str) -> str:
    """One SMS to `phone` (no frequency cap on the step), then the end with outcome "sent"."""
    return f"""
name: {name}
parameters:
  - {{name: key, identifier: true}}
  - {{name: patientName}}
  - {{name: phone, type: phone}}
flows:
  - id: main
    name: Main
    steps:
      - id: 10
        type: send_sms
        to: phone
        frequency_cap: false
        body: "Hi {{{{ patientName }}}}, your appointment is booked."
      - {{id: 20, type: end, outcome: sent}}
"""


def reply_journey(*, phone_required: bool = True) -> str:
    """An SMS asking for C or R, then a wait for the reply (saved to `answer`): confirmed,
    reschedule, other, or no_reply after 2 days."""
    phone = "{name: phone, type: phone}" if phone_required else "{name: phone, type: phone, required: false}"
    return f"""
name: Reply
parameters:
  - {{name: key, identifier: true}}
  - {phone}
  - {{name: answer, required: false}}
frequency_cap: null
flows:
  - id: main
    name: Main
    steps:
      - {{id: 10, type: send_sms, to: phone, body: "Reply C to confirm or R to reschedule"}}
      - id: 20
        type: wait_for_reply
        to: phone
        timeout: 2d
        save_reply_to: answer
        replies:
          - {{outcome: confirmed, next: 30}}
          - {{outcome: reschedule, next: 40}}
        on_other: 50
        on_timeout: 60
      - {{id: 30, type: end, outcome: confirmed}}
      - {{id: 40, type: end, outcome: reschedule}}
      - {{id: 50, type: end, outcome: other}}
      - {{id: 60, type: end, outcome: no_reply}}
"""


def wait_journey(name: str) -> str:
    """Waits a day, then ends: an instance that stays InProgress (to cancel, find, or fire events)."""
    return f"""
name: {name}
parameters:
  - {{name: key, identifier: true}}
flows:
  - id: main
    name: Main
    steps:
      - {{id: 10, type: wait, duration: 1d}}
      - {{id: 20, type: end}}
"""
