"""Virtual fax lines on calls: the engine answers a call routed to a fax line, runs a spandsp fax receiver
(``engine.media.fax``) on the call's audio (``MediaSession.run_terminal``: one frame a media clock tick,
through a playout buffer) and stores what arrived (``engine.store.faxes``): TIFF, PDF and the record.
Then the PDF is e-mailed to the fax line's recipients (the voicemail e-mail path's SMTP settings).

A reception ends when T.30 reaches phase E (the sender's DCN) or when the call ends first (the sender hung
up at page 2): the receiver is terminated then, and the pages that arrived are stored with the failure.
Storing and mailing run in worker threads; the flow gets its ``FaxResult`` once the fax is stored, and
the CDR's path gets the T.30 outcome at the moment it is known (``Reception.step``), which is before the
CDR is written even when the sender's BYE ended the call.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from email.message import EmailMessage
from typing import Final

from engine.call.b2bua import Call
from engine.call.flows import MediaPort
from engine.dialplan.evaluate import DetectFax, FaxDetected, FaxResult, ReceiveFax
from engine.dialplan.plan import FaxLine
from engine.media.cng import CngListener
from engine.media.fax import FaxError, FaxOutcome, FaxTerminal, tiff_to_pdf
from engine.media.session import MediaSession
from engine.store.faxes import FaxRecord, FaxStore
from engine.voicemail.email import EmailError, SmtpConfig, new_email, send_email

logger = logging.getLogger(__name__)

#: pixels per metre to dots per inch (spandsp's statistics give resolutions per metre)
_INCH_M: Final = 0.0254


def build_fax_email(record: FaxRecord, line: FaxLine, to: str, sender: str, pdf: bytes | None,
                    tz: tzinfo) -> EmailMessage:
    """The e-mail of a received fax: a text body with its metadata and the PDF attached when there is one.

    Raises:
        EmailError: ``to`` or ``sender`` is not an address.
    """
    who = record.remote_id or record.caller or "unknown"
    when = datetime.fromtimestamp(record.received_at, tz)
    outcome = "" if record.ok else " (incomplete)"
    subject = f"Fax from {who}, {record.pages} page{'s' if record.pages != 1 else ''}{outcome}"
    msg = new_email(to, sender, subject, when)
    msg.set_content(
        f"A fax arrived on fax line {line.name}.\n\n"
        f"From:       {who} (caller {record.caller or 'unknown'})\n"
        f"Received:   {when.strftime('%Y-%m-%d %H:%M:%S %Z')}\n"
        f"Pages:      {record.pages}\n"
        f"Resolution: {record.x_dpi} x {record.y_dpi} dpi\n"
        f"Speed:      {record.bit_rate} bit/s{' with ECM' if record.ecm else ''}\n"
        f"Result:     {record.text} ({record.code})\n"
        f"Fax:        {record.id}\n" + ("\nThe fax is attached as PDF.\n" if pdf is not None else "")
    )
    if pdf is not None:
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"fax-{record.id}.pdf")
    return msg


class Reception:
    """One fax being received on one call (``engine.call.flows.FaxReception``)."""

    def __init__(self, line: FaxLine, terminal: FaxTerminal | None, failure: str = "") -> None:
        self.line = line
        self.terminal = terminal
        self.failure = failure

    def outcome(self) -> FaxOutcome | None:
        return None if self.terminal is None else self.terminal.result

    def step(self) -> str | None:
        outcome = self.outcome()
        if outcome is None:
            return f"fax:{self.line.name}:{self.failure}" if self.failure else None
        return f"fax:{self.line.name}:{outcome.code} {outcome.text}"


class FaxService:
    """Runs receptions for the flows (``FlowServices.receive_fax``), stores them and mails them.

    Args:
        loop: the event loop.
        store: where received faxes go.
        wall: the wall clock (epoch seconds), for the record's time.
        smtp: where fax e-mails go (``pbx serve --smtp``); None sends none.
        tz: the time zone e-mails write times in (the company's).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, store: FaxStore, wall: Callable[[], float],
                 smtp: SmtpConfig | None = None, tz: tzinfo = UTC) -> None:
        self.loop = loop
        self.store = store
        self.wall = wall
        self.smtp = smtp
        self.tz = tz
        self._tasks: set[asyncio.Task[None]] = set()

    def receive(self, port: MediaPort, action: ReceiveFax, call: Call,
                done: Callable[[FaxResult], None]) -> Reception:
        """Start receiving a fax for ``action.fax_line`` on ``port`` (the call's answered endpoint); ``done``
        gets the result once the fax is stored."""
        assert isinstance(port, MediaSession)
        line = action.fax_line
        fax_id = uuid.uuid4().hex
        started = self.wall()
        try:
            terminal = FaxTerminal(calling=False, station_id=line.station_id, header=line.header,
                                   rx_path=str(self.store.incoming_path(fax_id)))
        except FaxError as exc:
            logger.error("call %s: fax line %s cannot receive: %s", call.id, line.name, exc)
            self.loop.call_soon(done, FaxResult(False, 0, str(exc)))
            return Reception(line, None, "not available")
        reception = Reception(line, terminal)
        task = self.loop.create_task(self._run(port, reception, terminal, call, fax_id, started, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return reception

    def detect(self, port: MediaPort, action: DetectFax, done: Callable[[FaxDetected], None]) -> None:
        """Listen for CNG on ``port`` for ``action.listen_s`` (the Detect Fax node); ``done`` gets whether
        a fax machine called."""
        assert isinstance(port, MediaSession)
        listener = CngListener(action.listen_s)

        async def listen() -> None:
            try:
                await port.run_terminal(listener)
            except Exception:
                logger.exception("fax detection failed")
            finally:
                done(FaxDetected(listener.detector.detected))

        task = self.loop.create_task(listen())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, port: MediaSession, reception: Reception, terminal: FaxTerminal, call: Call,
                   fax_id: str, started: float, done: Callable[[FaxResult], None]) -> None:
        result = FaxResult(False, 0, "fax reception failed")
        try:
            await port.run_terminal(terminal)
            terminal.close()  # the TIFF is complete from here on
            outcome = terminal.result
            assert outcome is not None
            info = call.info
            record = FaxRecord(
                id=fax_id, fax_line=reception.line.name, caller=info.caller, caller_name=info.caller_name,
                called=info.did or info.callee, call_id=call.id, received_at=started,
                remote_id=outcome.remote_id, pages=outcome.pages,
                x_dpi=round(outcome.x_resolution * _INCH_M), y_dpi=round(outcome.y_resolution * _INCH_M),
                bit_rate=outcome.bit_rate, ecm=outcome.ecm, code=outcome.code, text=outcome.text,
                duration_s=round(outcome.duration_s, 2), ok=outcome.ok, pdf=False)
            record, pdf = await asyncio.to_thread(self._store, record)
            logger.info("call %s: fax %s on line %s: %s, %d pages from %r", call.id, fax_id,
                        reception.line.name, outcome.text, outcome.pages, outcome.remote_id)
            result = FaxResult(outcome.ok, outcome.pages, outcome.text)
            if self.smtp is not None and reception.line.email and record.pages > 0:
                self._mail(record, reception.line, pdf)
        except Exception:
            logger.exception("call %s: fax reception %s failed", call.id, fax_id)
        finally:
            terminal.close()
            done(result)

    def _store(self, record: FaxRecord) -> tuple[FaxRecord, bytes | None]:
        """Convert the pages to PDF and commit the fax (a worker thread)."""
        pdf: bytes | None = None
        tiff = self.store.incoming_path(record.id)
        if record.pages > 0 and tiff.exists():
            try:
                pdf = tiff_to_pdf(tiff.read_bytes())
            except FaxError as exc:
                logger.warning("fax %s: no PDF: %s", record.id, exc)
        elif tiff.exists():
            tiff.unlink()  # no page arrived: nothing to keep but the record
        if pdf is not None:
            record = FaxRecord(**{**record.to_json(), "pdf": True})
        self.store.commit(record, pdf)
        return record, pdf

    def _mail(self, record: FaxRecord, line: FaxLine, pdf: bytes | None) -> None:
        smtp = self.smtp
        assert smtp is not None
        tz = self.tz

        def send_all() -> None:
            for to in line.email:
                send_email(smtp, build_fax_email(record, line, to, smtp.sender, pdf, tz))

        async def send() -> None:
            try:
                await asyncio.to_thread(send_all)
                logger.info("fax %s mailed to %s", record.id, ", ".join(line.email))
            except EmailError as exc:
                logger.warning("fax %s: e-mail failed: %s", record.id, exc)

        task = self.loop.create_task(send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
