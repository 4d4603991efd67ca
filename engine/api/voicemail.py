"""A user's own voicemail over the admin API (issue 15's "my settings"): the mailboxes of the logged-in user's
lines, their messages (listed, played, marked heard, deleted), greetings (uploaded, played, removed) and
PIN. Any authenticated user reaches only the mailboxes of their own lines (another extension is a 404,
as a line that does not exist would be).

The mailbox store is the engine's when one runs in this process (``LiveVoicemail``: its cache must see
the change, and its MWI must tell the phones), else a store opened on the data directory (the API without
an engine, as the admins' greeting routes do). The store is thread-safe (its own lock), so handlers call
it from their worker threads; only the MWI notification runs on the engine's loop, handed over by
``LiveVoicemail.changed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio.to_thread
import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.params import FromPath, JSONBody, RawBody

from engine.api.routes import (
    AUTHENTICATED,
    MAX_CLIP_BYTES,
    Admin,
    Auth,
    Id,
    _check_wav_type,
    _greeting_kind,
    _WavUpload,
    read_greeting,
    remove_greeting,
    save_greeting,
    threaded,
)
from engine.api.schemas import GreetingOut
from engine.store.errors import NotFoundError
from engine.voicemail.model import Folder
from engine.voicemail.store import VoicemailStore

_OWN: Final = {"permission": AUTHENTICATED}
Ext = FromPath[str]
Kind = FromPath[str]
Req = Request[Any, Any, Any]


@dataclass(frozen=True, slots=True)
class LiveVoicemail:
    """The engine's mailbox store, and ``changed(mailbox, new, saved)``: thread-safe, it hands new counts
    to the engine's loop (MWI NOTIFY to the mailbox's subscribed phones)."""

    store: VoicemailStore
    changed: Callable[[str, int, int], object]


class MessageOut(msgspec.Struct):
    id: int
    folder: str
    caller: str
    caller_name: str
    received_at: float
    duration_seconds: float


class MailboxOut(msgspec.Struct):
    extension: str
    line_name: str
    new: int
    saved: int
    greetings: list[str]
    temporary_active: bool
    messages: list[MessageOut]


class PinIn(msgspec.Struct, forbid_unknown_fields=True):
    pin: str


class TemporaryIn(msgspec.Struct, forbid_unknown_fields=True):
    active: bool


def _store(request: Req, admin: Admin) -> VoicemailStore:
    live: LiveVoicemail | None = request.app.state.get("voicemail")
    return live.store if live is not None else VoicemailStore.open(admin.store.data_dir, recover=False)


def _changed(request: Req, store: VoicemailStore, mailbox: str) -> None:
    live: LiveVoicemail | None = request.app.state.get("voicemail")
    if live is not None:
        live.changed(mailbox, *store.counts(mailbox))


def _own_lines(admin: Admin, principal: Auth) -> dict[str, str]:
    """The user's lines: extension -> line name."""
    return {line.extension: line.name for line in admin.user(principal.user_id).lines}


def _own(admin: Admin, principal: Auth, extension: str) -> str:
    if extension not in _own_lines(admin, principal):
        raise NotFoundError("mailbox of your line", extension)
    return extension


def _message(store: VoicemailStore, extension: str, message_id: int) -> Path:
    info = next((m for m in store.messages(extension) if m.id == message_id), None)
    if info is None:
        raise NotFoundError(f"message in mailbox {extension}", message_id)
    return Path(info.audio_path)


@get("/api/me/voicemail", opt=_OWN, tags=["voicemail"])
@threaded
def my_mailboxes(request: Req, admin: Admin, principal: Auth) -> list[MailboxOut]:
    """The mailboxes of your lines: new messages first, then heard ones, oldest first in each."""
    store = _store(request, admin)
    out = []
    for extension, name in _own_lines(admin, principal).items():
        box = store.mailbox(extension)
        messages = store.messages(extension)
        new = sum(1 for m in messages if m.folder is Folder.NEW)
        out.append(
            MailboxOut(
                extension,
                name,
                new,
                len(messages) - new,
                sorted(kind.value for kind in (box.greetings if box else {})),
                bool(box and box.temporary_active),
                [
                    MessageOut(m.id, m.folder.value, m.caller, m.caller_name, m.received_at.timestamp(),
                               round(m.duration_s, 1))
                    for m in messages
                ],
            )
        )
    return out


@get("/api/me/voicemail/{extension:str}/messages/{message_id:int}", opt=_OWN, tags=["voicemail"],
     media_type="audio/wav")
@threaded
def my_message_audio(
    request: Req, admin: Admin, principal: Auth, extension: Ext, message_id: Id
) -> Response[bytes]:
    """A message's audio (8 kHz 16-bit mono WAV); listening does not mark it heard (``.../heard`` does)."""
    store = _store(request, admin)
    path = _message(store, _own(admin, principal, extension), message_id)
    try:
        return Response(path.read_bytes(), media_type="audio/wav")
    except FileNotFoundError:
        raise NotFoundError(f"audio of message in mailbox {extension}", message_id) from None


@post("/api/me/voicemail/{extension:str}/messages/{message_id:int}/heard", opt=_OWN, status_code=204,
      tags=["voicemail"])
@threaded
def my_message_heard(
    request: Req, admin: Admin, principal: Auth, extension: Ext, message_id: Id
) -> None:
    """Mark a new message heard (saved), as pressing 9 in the phone menu does; the lamp follows."""
    store = _store(request, admin)
    box = _own(admin, principal, extension)
    _message(store, box, message_id)
    store.mark_saved(box, message_id)
    _changed(request, store, box)


@delete("/api/me/voicemail/{extension:str}/messages/{message_id:int}", opt=_OWN, tags=["voicemail"])
@threaded
def my_message_delete(
    request: Req, admin: Admin, principal: Auth, extension: Ext, message_id: Id
) -> None:
    """Delete a message (404 when there is none); the phones' message lamp follows."""
    store = _store(request, admin)
    box = _own(admin, principal, extension)
    _message(store, box, message_id)
    store.delete_message(box, message_id)
    admin.record_event(
        principal.actor, "voicemail.message_deleted", f"mailbox:{box}", {"message": message_id}
    )
    _changed(request, store, box)


@put("/api/me/voicemail/{extension:str}/greetings/{kind:str}", opt=_OWN, status_code=200, tags=["voicemail"],
     request_max_body_size=MAX_CLIP_BYTES, operation_class=_WavUpload)
async def my_greeting_upload(
    request: Req, admin: Admin, principal: Auth, extension: Ext, kind: Kind,
    body: RawBody,
) -> GreetingOut:
    """Upload your greeting of that kind (unavailable, busy, temporary): any WAV, converted to 8 kHz mono."""
    _greeting_kind(kind)
    _check_wav_type(request)

    def work() -> GreetingOut:
        box = _own(admin, principal, extension)
        store = _store(request, admin)
        return save_greeting(admin, principal.actor, store, box, kind, body, f"mailbox:{box}")

    return await anyio.to_thread.run_sync(work)


@get("/api/me/voicemail/{extension:str}/greetings/{kind:str}", opt=_OWN, tags=["voicemail"],
     media_type="audio/wav")
@threaded
def my_greeting_audio(
    request: Req, admin: Admin, principal: Auth, extension: Ext, kind: Kind
) -> Response[bytes]:
    """Your greeting of that kind as stored; 404 when there is none."""
    _greeting_kind(kind)
    return read_greeting(_store(request, admin), _own(admin, principal, extension), kind)


@delete("/api/me/voicemail/{extension:str}/greetings/{kind:str}", opt=_OWN, tags=["voicemail"])
@threaded
def my_greeting_delete(
    request: Req, admin: Admin, principal: Auth, extension: Ext, kind: Kind
) -> None:
    """Remove your greeting of that kind: callers hear the next one by precedence."""
    _greeting_kind(kind)
    box = _own(admin, principal, extension)
    remove_greeting(admin, principal.actor, _store(request, admin), box, kind, f"mailbox:{box}")


@put("/api/me/voicemail/{extension:str}/temporary", opt=_OWN, status_code=204, tags=["voicemail"])
@threaded
def my_temporary(
    request: Req, admin: Admin, principal: Auth, extension: Ext,
    data: JSONBody[TemporaryIn],
) -> None:
    """Switch the temporary greeting on (it overrides the others) or off."""
    store = _store(request, admin)
    box = _own(admin, principal, extension)
    store.ensure_mailbox(box)
    store.set_temporary_active(box, data.active)


@put("/api/me/voicemail/{extension:str}/pin", opt=_OWN, status_code=204, tags=["voicemail"])
@threaded
def my_pin(
    request: Req, admin: Admin, principal: Auth, extension: Ext,
    data: JSONBody[PinIn],
) -> None:
    """Set your mailbox PIN (4-10 digits; 422 naming ``pin`` otherwise), asked for by *98 and *99."""
    store = _store(request, admin)
    box = _own(admin, principal, extension)
    store.ensure_mailbox(box)
    store.set_pin(box, data.pin)
    admin.record_event(principal.actor, "voicemail.pin_set", f"mailbox:{box}", {})


VOICEMAIL_ROUTES: Final = [
    my_mailboxes,
    my_message_audio,
    my_message_heard,
    my_message_delete,
    my_greeting_upload,
    my_greeting_audio,
    my_greeting_delete,
    my_temporary,
    my_pin,
]
