"""Log output of ``pbx serve``: plain text (default) or one JSON object a line (``--log-format json``,
issue 17), for log shippers that index fields.

A JSON line has ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``, ``call_id``
when the line belongs to a SIP dialog, and ``exception`` (the formatted traceback) when there is one. The
call-id comes from ``CALL_ID``, a context variable that ``with_call_id`` sets around the handling of each
SIP event (the signalling application runs synchronously inside it, so every line it logs for that
message carries the Call-ID), or from a record's own ``call_id`` attribute (``extra={"call_id": ...}``).
The wrapper is installed only with ``--log-format json``: plain text costs nothing more per message.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Final

from engine.sip.events import CancelReceived, Event, RequestReceived, ResponseReceived

LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: the Call-ID of the SIP message being handled, if any
CALL_ID: ContextVar[str | None] = ContextVar("pbx_call_id", default=None)

Handler = Callable[[Event, float], None]


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        out: dict[str, object] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        call_id = getattr(record, "call_id", None) or CALL_ID.get()
        if call_id:
            out["call_id"] = str(call_id)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure(level: str, log_format: str) -> None:
    """Root logging for the process: ``level`` (debug, info, warning) in ``log_format`` (text, json)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler], force=True)


def event_call_id(event: Event) -> str | None:
    """The Call-ID of the message behind ``event`` (None for a timer's event)."""
    if isinstance(event, RequestReceived):
        return event.request.call_id
    if isinstance(event, ResponseReceived):
        return event.response.call_id
    if isinstance(event, CancelReceived):
        return event.cancel.call_id
    return None


def with_call_id(handler: Handler) -> Handler:
    """``handler`` with ``CALL_ID`` set to each event's Call-ID while it runs."""

    def handle(event: Event, now: float) -> None:
        token = CALL_ID.set(event_call_id(event))
        try:
            handler(event, now)
        finally:
            CALL_ID.reset(token)

    return handle
