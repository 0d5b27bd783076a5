"""What the receiver gets for one status event.

Plain Python with no import of the host, so ``python -m unittest`` runs it
natively; ``app.py`` wraps it for the host::

    {"event": "message.read", "message": "wamid.HBg...", "to": "5939800000000",
     "at": "2026-04-27T21:35:00Z", "final": true}

A failure adds ``"error": {"code", "text"}``; ``disconnected`` events are
dropped (this receiver only tracks messages); the webhook setting ``prefix``
(default ``message``) changes the event name's first word.
"""

import time
from typing import Any, Dict, Optional

# The statuses that mean the message will not arrive.
FAILURES = {"failed", "number_not_found", "expired"}


def render(event: Any, settings: Dict[str, str]) -> Optional[Dict[str, Any]]:
    """The body for ``event``, or ``None`` to send nothing.

    ``event`` is the generated ``StatusEvent`` (snake_case fields, ``None``
    for an absent option, ``status`` an enum whose name is the canonical
    status in capitals); ``settings`` the webhook's ``settings`` table.
    """
    status = canonical_status(event.status)
    if status == "disconnected":
        return None
    prefix = settings.get("prefix", "message")
    body: Dict[str, Any] = {
        "event": f"{prefix}.{status}",
        "message": event.message_id,
        "to": event.recipient,
        "at": rfc3339_utc(event.timestamp),
        "final": event.final,
    }
    if status in FAILURES:
        code = event.error.code if event.error else None
        body["error"] = {"code": code, "text": failure_text(event, status)}
    return body


def canonical_status(status: Any) -> str:
    """The canonical name of a status: ``Status.NUMBER_NOT_FOUND`` is
    ``number_not_found``."""
    return status.name.lower()


def rfc3339_utc(seconds: int) -> str:
    """Unix seconds as RFC 3339 UTC without fractions: ``2026-04-27T21:35:00Z``.

    Pure arithmetic: a plugin has no clock, and needs none for this."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def failure_text(event: Any, status: str) -> str:
    """``error.message``, else ``error.title``, else a default for the status
    (the same texts as the Rust SDK's ``failure_text``)."""
    if event.error and (event.error.message or event.error.title):
        return event.error.message or event.error.title
    if status == "number_not_found":
        return "Number not found on WhatsApp"
    if status == "expired":
        return "Message expired"
    return "Message failed"
